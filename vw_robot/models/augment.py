"""Image augmentation for the heads' training: random shifts (DrQ; Diffusion Policy's crops).

A frame is padded by repeating its border and a window of its own size is cut at a random
offset, so the head cannot key on exact pixel positions of a few dozen demonstrations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_shift(
    frames: torch.Tensor, pad: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Shift each image by up to ``pad`` pixels in x and y (one offset per image).

    Args:
        frames: (B, C, S, S) images, any dtype (uint8 stays uint8).
        pad: largest shift in pixels (0 returns ``frames`` unchanged).
        generator: the RNG for the offsets (None: torch's global RNG, which the training loop
            seeds and restores on resume, so a run is reproducible).

    Returns:
        (B, C, S, S), same dtype and device.
    """
    if pad == 0:
        return frames
    if pad < 0:
        raise ValueError(f"pad: expected >= 0, got {pad}")
    batch, _, height, width = frames.shape
    padded = F.pad(frames.float(), (pad, pad, pad, pad), mode="replicate")  # (B, C, S+2p, S+2p)
    offsets = torch.randint(0, 2 * pad + 1, (batch, 2), generator=generator)  # (B, 2): dy, dx
    rows = torch.arange(height)[None, :] + offsets[:, :1]  # (B, S)
    cols = torch.arange(width)[None, :] + offsets[:, 1:]  # (B, S)
    index = torch.arange(batch)[:, None, None]
    rows, cols = rows.to(frames.device), cols.to(frames.device)
    out = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]  # (B, S, S, C)
    return out.permute(0, 3, 1, 2).to(frames.dtype)
