"""Image augmentation for the heads' training: random shifts (DrQ; Diffusion Policy's crops).

A frame is padded by repeating its border and a window of its own size is cut at a random
offset, so the head cannot key on exact pixel positions of a few dozen demonstrations.
"""

from __future__ import annotations

import torch


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
    batch, channels, height, width = frames.shape
    offsets = torch.randint(0, 2 * pad + 1, (batch, 2), generator=generator)  # (B, 2): dy, dx
    # Padding by repeating the border, then cutting a window at the offset, reads pixel
    # clamp(i + offset - pad) of the frame: gather those pixels directly, in the frames' own
    # dtype, as one index_select over (B*S*S) rows of C values (no padded float copy; the same
    # values, since a gather moves pixels unchanged).
    rows = (torch.arange(height)[None, :] + offsets[:, :1] - pad).clamp_(0, height - 1)  # (B, S)
    cols = (torch.arange(width)[None, :] + offsets[:, 1:] - pad).clamp_(0, width - 1)  # (B, S)
    first = torch.arange(batch)[:, None, None] * height  # (B, 1, 1)
    pixel = (first + rows[:, :, None]) * width + cols[:, None, :]  # (B, S, S) row in hwc
    hwc = frames.permute(0, 2, 3, 1).reshape(-1, channels)  # (B*S*S, C); a view if channels-last
    out = hwc.index_select(0, pixel.view(-1).to(frames.device))  # (B*S*S, C)
    return out.view(batch, height, width, channels).permute(0, 3, 1, 2)  # channels-last memory
