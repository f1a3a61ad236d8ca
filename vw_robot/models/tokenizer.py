"""Frame tokenizer: a convolutional autoencoder with an FSQ bottleneck (docs/models.md).

An S×S RGB frame becomes an (S/f)×(S/f) grid of integer tokens, one FSQ index per
spatial position. The conv building blocks here (``ResBlock``, ``Encoder``,
``Decoder``) are shared with the latent dynamics model, whose decoder adds FiLM
conditioning through ``cond_dim``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from vw_robot.models.fsq import FSQ, FSQConfig, validate_levels


def frames_to_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 pixels in [0, 255] -> float32 in [0, 1]; float input is taken as already scaled.

    Accepting floats lets training code feed augmented images without a uint8 round trip.
    """
    if frames.dtype == torch.uint8:
        return frames.to(torch.float32) / 255.0
    if not frames.is_floating_point():
        raise TypeError(f"frames must be uint8 or float, got {frames.dtype}")
    return frames


def num_downsamplings(down_factor: int, key: str = "down_factor") -> int:
    """log2(down_factor); ValueError naming ``key`` unless it is a power of two >= 2."""
    if isinstance(down_factor, bool) or not isinstance(down_factor, int) or down_factor < 2:
        raise ValueError(f"{key}: expected a power of two >= 2, got {down_factor!r}")
    if down_factor & (down_factor - 1):
        raise ValueError(f"{key}: {down_factor} is not a power of two")
    return down_factor.bit_length() - 1


def validate_conv_stack(
    image_size: int, down_factor: int, channels: list[int], num_res_blocks: int
) -> None:
    """Checks shared by every config that builds an ``Encoder``/``Decoder``."""
    num_down = num_downsamplings(down_factor, "down_factor")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size: expected a positive int, got {image_size!r}")
    if image_size % down_factor:
        raise ValueError(f"image_size: {image_size} is not divisible by down_factor={down_factor}")
    if len(channels) != num_down or any(c < 1 for c in channels):
        raise ValueError(
            f"channels: expected {num_down} positive widths (one per downsampling, "
            f"log2(down_factor={down_factor})), got {list(channels)}"
        )
    if num_res_blocks < 0:
        raise ValueError(f"num_res_blocks: expected >= 0, got {num_res_blocks}")


def _group_norm(channels: int) -> nn.GroupNorm:
    # GroupNorm normalises each sample on its own: no statistics leak across the batch,
    # which keeps the LDM's per-frame encoder strictly per frame (and DDP-friendly).
    groups = max(g for g in range(1, 9) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


class ResBlock(nn.Module):
    """Pre-activation residual block, optionally FiLM-conditioned on a vector.

    Args:
        in_channels: input feature channels.
        out_channels: output feature channels (a 1x1 conv matches the skip path).
        cond_dim: size of the conditioning vector; 0 disables conditioning.
    """

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int = 0) -> None:
        super().__init__()
        self.norm1 = _group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip: nn.Module = (
            nn.Conv2d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else nn.Identity()
        )
        self.film: nn.Linear | None = None
        if cond_dim > 0:
            # Default (random) init on purpose: zero FiLM weights would also zero the
            # gradient reaching the condition, and the encoder that produces it would
            # start without a learning signal.
            self.film = nn.Linear(cond_dim, 2 * out_channels)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """(N, C_in, h, w), optional cond (N, cond_dim) -> (N, C_out, h, w)."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if self.film is not None:
            if cond is None:
                raise ValueError("this ResBlock is conditioned; pass cond")
            scale, shift = self.film(cond)[:, :, None, None].chunk(2, dim=1)  # (N, C, 1, 1) x2
            h = h * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class Encoder(nn.Module):
    """Pixels (N, in_channels, S, S) -> features (N, out_channels, S/f, S/f).

    One stride-2 conv per entry of ``channels``; entry i is the width of the stage that
    runs at resolution S/2^i before downsampling.
    """

    def __init__(
        self,
        channels: list[int],
        num_res_blocks: int,
        out_channels: int,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        stages: list[nn.Module] = []
        for i, width in enumerate(channels):
            next_width = channels[min(i + 1, len(channels) - 1)]
            stages += [ResBlock(width, width) for _ in range(num_res_blocks)]
            stages.append(nn.Conv2d(width, next_width, 4, stride=2, padding=1))
        self.stages = nn.Sequential(*stages)
        self.mid = ResBlock(channels[-1], channels[-1])
        self.norm_out = _group_norm(channels[-1])
        self.conv_out = nn.Conv2d(channels[-1], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, S, S) float -> (N, out_channels, S/f, S/f)."""
        h = self.mid(self.stages(self.conv_in(x)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Features (N, in_channels, s, s) -> (N, out_channels, s*f, s*f) unbounded outputs.

    Mirrors ``Encoder``: nearest-neighbour upsampling followed by a conv (no
    checkerboard artefacts from transposed convs). With ``cond_dim`` > 0 every residual
    block is FiLM-modulated by a per-sample vector.
    """

    def __init__(
        self,
        channels: list[int],
        num_res_blocks: int,
        in_channels: int,
        out_channels: int = 3,
        cond_dim: int = 0,
    ) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, channels[-1], 3, padding=1)
        self.mid = ResBlock(channels[-1], channels[-1], cond_dim)
        blocks: list[nn.Module] = []
        for i in reversed(range(len(channels))):
            width = channels[i]
            prev_width = channels[min(i + 1, len(channels) - 1)]
            blocks.append(nn.Conv2d(prev_width, width, 3, padding=1))  # after upsampling
            blocks += [ResBlock(width, width, cond_dim) for _ in range(num_res_blocks)]
        self.blocks = nn.ModuleList(blocks)
        self.norm_out = _group_norm(channels[0])
        self.conv_out = nn.Conv2d(channels[0], out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """(N, in_channels, s, s), optional cond (N, cond_dim) -> (N, out_channels, S, S)."""
        h = self.mid(self.conv_in(z), cond)
        for block in self.blocks:
            if isinstance(block, ResBlock):
                h = block(h, cond)
            else:
                h = block(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


@dataclass
class TokenizerConfig:
    """Frame tokenizer settings; defaults are the 64 px CPU-sized model."""

    image_size: int = 64  # square frame side in pixels
    down_factor: int = 8  # pixels per token side: 64 px -> 8x8 = 64 tokens
    channels: list[int] = field(default_factory=lambda: [32, 64, 128])  # width per downsampling
    num_res_blocks: int = 1  # residual blocks per resolution, in encoder and decoder
    levels: list[int] = field(default_factory=lambda: [8, 5, 5, 5])  # FSQ levels, 1000 tokens
    mse_weight: float = 0.0  # optional L2 term beside L1; helps colour fidelity early on

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the offending key."""
        validate_conv_stack(self.image_size, self.down_factor, self.channels, self.num_res_blocks)
        validate_levels(self.levels, "levels")
        if self.mse_weight < 0:
            raise ValueError(f"mse_weight: expected >= 0, got {self.mse_weight}")


class FrameTokenizer(nn.Module):
    """Conv autoencoder with FSQ: frames (B, 3, S, S) uint8 <-> tokens (B, S/f, S/f) int64."""

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        latent = len(config.levels)
        # The encoder emits exactly one channel per FSQ level, so the quantizer needs no
        # projections and the grid of codes is the decoder's whole input.
        self.encoder = Encoder(config.channels, config.num_res_blocks, out_channels=latent)
        self.quantizer = FSQ(FSQConfig(levels=list(config.levels)))
        self.decoder = Decoder(config.channels, config.num_res_blocks, in_channels=latent)

    @property
    def grid_size(self) -> int:
        """Tokens per side, image_size / down_factor."""
        return self.config.image_size // self.config.down_factor

    @property
    def num_tokens(self) -> int:
        """Tokens per frame, h * w."""
        return self.grid_size**2

    @property
    def vocab_size(self) -> int:
        """Distinct token values, prod(levels)."""
        return self.quantizer.codebook_size

    def _check_frames(self, frames: torch.Tensor) -> None:
        size = self.config.image_size
        if frames.ndim != 4 or tuple(frames.shape[1:]) != (3, size, size):
            raise ValueError(f"frames must be (B, 3, {size}, {size}), got {tuple(frames.shape)}")

    def _quantize(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames (B, 3, S, S) -> quantized latents (B, C, h, w), tokens (B, h, w)."""
        self._check_frames(frames)
        z = self.encoder(frames_to_float(frames))  # (B, C, h, w)
        z_q, tokens = self.quantizer(z.permute(0, 2, 3, 1))  # (B, h, w, C), (B, h, w)
        return z_q.permute(0, 3, 1, 2), tokens  # (B, C, h, w)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames (B, 3, S, S) uint8 (or float in [0, 1]) -> tokens (B, h, w) int64."""
        return self._quantize(frames)[1]

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, h, w) int64 -> frames (B, 3, S, S) float in [0, 1]."""
        z_q = self.quantizer.indices_to_output(tokens).permute(0, 3, 1, 2)  # (B, C, h, w)
        return self._decode_latents(z_q).clamp(0, 1)

    def _decode_latents(self, z_q: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, 3, S, S) unbounded pixels, trained towards [0, 1].

        A linear output (clamped only for the caller) trains faster and more reliably
        than a sigmoid, whose saturated regions stall L1's constant-size gradients.
        """
        return self.decoder(z_q) + 0.5

    def forward(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """Reconstruct frames through the token bottleneck.

        Args:
            frames: (B, 3, S, S) uint8 (or float in [0, 1]).

        Returns:
            recon: (B, 3, S, S) float in [0, 1].
            tokens: (B, h, w) int64.
            loss: scalar, L1 (+ mse_weight * MSE) on the unclamped output.
            l1: scalar, the L1 term alone, for logging.
        """
        target = frames_to_float(frames)
        z_q, tokens = self._quantize(frames)
        raw = self._decode_latents(z_q)  # (B, 3, S, S), unclamped so the loss keeps its gradient
        l1 = F.l1_loss(raw, target)
        loss = l1
        if self.config.mse_weight > 0:
            loss = loss + self.config.mse_weight * F.mse_loss(raw, target)
        recon = raw.clamp(0, 1)
        out = {"recon": recon, "tokens": tokens, "l1": l1.detach()}
        out["loss"] = loss
        return out


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
