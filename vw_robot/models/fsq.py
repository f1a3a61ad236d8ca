"""Finite scalar quantization (FSQ; Mentzer et al., 2023, arXiv 2309.15505).

Each latent channel is squashed into a bounded range with tanh and rounded to one of a
few integer levels; gradients pass the rounding straight through. The implicit codebook
is the grid of all level combinations, so there is no codebook to learn, no commitment
loss and no dead codes. A vector of per-channel levels maps to a single integer index
in mixed radix (channel 0 is the least significant digit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional  # noqa: UP035 - OmegaConf needs typing.Optional on Python 3.10

import torch
from torch import nn


def validate_levels(levels: list[int], key: str = "levels") -> None:
    """Raise ValueError naming ``key`` unless ``levels`` is a non-empty list of ints >= 2.

    Args:
        levels: quantization levels per channel.
        key: config key reported in the error message.
    """
    if isinstance(levels, (str, bytes)) or not hasattr(levels, "__len__") or len(levels) == 0:
        raise ValueError(f"{key}: expected a non-empty list of ints >= 2, got {levels!r}")
    for level in levels:
        # bool is an int subclass, but True as a level count is a typo, not a choice.
        if isinstance(level, bool) or not isinstance(level, int) or level < 2:
            raise ValueError(f"{key}: every level must be an int >= 2, got {level!r} in {levels}")


@dataclass
class FSQConfig:
    """Finite scalar quantizer settings."""

    levels: list[int] = field(default_factory=lambda: [8, 5, 5, 5])  # 1000 codes, paper's choice
    dim: Optional[int] = None  # noqa: UP045 - feature size in/out; None: len(levels), no projection

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the offending key."""
        validate_levels(self.levels, "levels")
        if self.dim is not None and (isinstance(self.dim, bool) or self.dim < 1):
            raise ValueError(f"dim: expected None or an int >= 1, got {self.dim!r}")


class FSQ(nn.Module):
    """Finite scalar quantizer with optional linear projections around the code grid.

    Codes are the normalised per-channel levels in [-1, 1], shape (..., len(levels));
    indices are their mixed-radix integers in [0, codebook_size), shape (...).
    """

    def __init__(self, config: FSQConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        num_channels = len(config.levels)
        dim = num_channels if config.dim is None else config.dim
        self.dim = dim
        # Projections only when the caller's feature size differs from the number of
        # quantized channels; identities keep the code grid untouched otherwise.
        self.project_in: nn.Module = (
            nn.Linear(dim, num_channels) if dim != num_channels else nn.Identity()
        )
        self.project_out: nn.Module = (
            nn.Linear(num_channels, dim) if dim != num_channels else nn.Identity()
        )

        levels = torch.tensor(config.levels, dtype=torch.int64)
        # Mixed-radix place values: channel c is worth prod(levels[:c]).
        basis = torch.cumprod(torch.cat([torch.ones(1, dtype=torch.int64), levels[:-1]]), dim=0)
        # Buffers follow .to(device) but are derived from the config, so they stay out of
        # the state dict: checkpoints hold only learned weights.
        self.register_buffer("_levels", levels, persistent=False)
        self.register_buffer("_basis", basis, persistent=False)
        self.register_buffer("_half_width", levels // 2, persistent=False)

    @property
    def codebook_size(self) -> int:
        """Number of distinct codes, prod(levels)."""
        return math.prod(self.config.levels)

    @property
    def num_channels(self) -> int:
        """Number of quantized channels, len(levels)."""
        return len(self.config.levels)

    def _bound(self, z: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
        """Squash (..., C) into each channel's level range, before rounding.

        Odd L rounds (-(L-1)/2, (L-1)/2) to L integers centred on 0. Even L has no
        centred grid, so the range is shifted by half a step to (-L/2, L/2 - 1) and the
        tanh input is shifted so that z = 0 still maps to 0. ``eps`` widens the range a
        little so that the extreme levels are reachable, not just asymptotes.
        """
        levels = self._levels.to(z.dtype)
        half_range = (levels - 1) * (1 + eps) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0).to(z.dtype)
        shift = torch.atanh(offset / half_range)
        return torch.tanh(z + shift) * half_range - offset

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Map unbounded (..., len(levels)) values to normalised codes (..., len(levels)).

        Rounding passes gradients straight through (identity), so the bounding tanh is
        what the gradient sees.
        """
        bounded = self._bound(z)
        rounded = bounded + (torch.round(bounded) - bounded).detach()
        return rounded / self._half_width.to(z.dtype)

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """Normalised codes (..., len(levels)) -> indices (...) int64."""
        half_width = self._half_width.to(codes.dtype)
        # Rounding guards against float error; digits are exact level numbers 0..L-1.
        digits = torch.round(codes * half_width + half_width).to(torch.int64)
        return (digits * self._basis).sum(dim=-1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices (...) int64 -> normalised codes (..., len(levels)) float32."""
        digits = (indices.to(torch.int64).unsqueeze(-1) // self._basis) % self._levels
        half_width = self._half_width.to(torch.float32)
        return (digits.to(torch.float32) - half_width) / half_width

    def indices_to_output(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices (...) -> quantized features (..., dim), as ``forward`` returns them."""
        codes = self.indices_to_codes(indices)
        weight = getattr(self.project_out, "weight", None)
        if weight is not None:
            codes = codes.to(weight.dtype)
        return self.project_out(codes)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantize features.

        Args:
            z: (..., dim) float features.

        Returns:
            z_q: (..., dim) quantized features (projected back when dim != len(levels)).
            indices: (...) int64 code indices in [0, codebook_size).
        """
        if z.shape[-1] != self.dim:
            raise ValueError(f"FSQ expects (..., {self.dim}) features, got {tuple(z.shape)}")
        return self.quantize_projected(self.project_in(z))

    def quantize_projected(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` after ``project_in``: (..., len(levels)) -> z_q (..., dim), indices (...).

        For callers that transform the projected values before rounding (the latent
        dynamics model normalises them over the batch).
        """
        # Rounding in half precision can land on the wrong level; quantize in float32.
        codes = self.quantize(z.float())
        indices = self.codes_to_indices(codes.detach())
        weight = getattr(self.project_out, "weight", None)
        z_q = self.project_out(codes.to(z.dtype if weight is None else weight.dtype))
        return z_q, indices
