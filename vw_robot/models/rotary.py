"""Rotary position embedding (RoFormer): queries and keys rotated by their position.

Rotating channel pairs by an angle proportional to the position makes the attention score of a
query and a key depend only on their offset, not on where they sit. That is what lets the
control loop's KV cache slide with its window (:class:`~vw_robot.models.kv_cache.KVCache`):
kept entries need no recomputation when the oldest timesteps are dropped.
"""

from __future__ import annotations

import torch

ROPE_BASE = 10000.0  # rotary base (RoFormer's): wavelengths from 2*pi to ~2*pi*10^4 ids


def rotary_tables(
    positions: torch.Tensor, head_dim: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines and sines that rotate channel pairs ``(i, i + head_dim/2)`` by position.

    Args:
        positions: (B, l) int64 positions (B may be 1 to broadcast over the batch).
        head_dim: channels per head, even.
        dtype: dtype of the returned tables.

    Returns:
        cos, sin: (B, l, 1, 1, head_dim // 2) each, broadcast over (query/key, head).
    """
    half = head_dim // 2
    exponents = torch.arange(half, dtype=torch.float64, device=positions.device) / half
    inv_freq = ROPE_BASE**-exponents  # (half,)
    # float64: with a sliding cache positions grow along a whole episode, and float32 angles
    # would be off by ~position * 6e-8 rad, enough to break cached == uncached logits.
    angles = positions.to(torch.float64)[..., None] * inv_freq  # (B, l, half)
    angles = angles[:, :, None, None, :]  # (B, l, 1, 1, half)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, l, ..., hd), positions along dim 1, by :func:`rotary_tables`' tables."""
    x1, x2 = x.chunk(2, dim=-1)  # (B, l, ..., hd/2) each
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
