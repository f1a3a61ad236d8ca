"""Latent dynamics model: compress the change x_0 -> x_{i+1} into one discrete code per step.

Every frame of a clip x_0..x_H is encoded on its own by a conv encoder
(spatial downsampling only, never across time) into a grid of P feature vectors. H
learnable queries read those features through transformer layers whose attention masks
make the model causal and cumulative: query i sees the features of frames 0..i+1 and
the queries j <= i, nothing later. Frame t's keys also carry its feature difference to
x_0. Each query output is FSQ-quantized to one code, so code i summarises how x_0
became x_{i+1}.

The decoder rebuilds x_{i+1} from x_0 and code i alone: code i's embedding is mapped to
a feature grid added to x_0's, a conv decoder whose residual blocks are also
FiLM-modulated by the embedding upsamples it, and a last full-resolution head sees x_0's
pixels too, so static content can be copied and the code only has to carry what moved.
Frames are decoded independently of each other: changing code k changes reconstruction k
and no other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from vw_robot.models.fsq import FSQ, FSQConfig, validate_levels
from vw_robot.models.tokenizer import (
    Decoder,
    Encoder,
    frames_to_float,
    validate_conv_stack,
)


@dataclass
class LatentDynamicsConfig:
    """Latent dynamics model settings; defaults are the 64 px CPU-sized model."""

    image_size: int = 64  # square frame side in pixels
    horizon: int = 4  # H: codes per clip; a clip holds H + 1 frames
    down_factor: int = 8  # encoder downsampling: 64 px -> 8x8 = 64 features per frame
    channels: list[int] = field(default_factory=lambda: [32, 64, 128])  # conv width per stage
    num_res_blocks: int = 1  # residual blocks per resolution in encoder and decoder
    dim: int = 128  # transformer width, also the code embedding fed to the decoder
    heads: int = 4  # attention heads; dim must divide evenly
    layers: int = 2  # query transformer layers (self-attn + cross-attn + MLP each)
    mlp_ratio: int = 4  # MLP hidden width = mlp_ratio * dim
    dropout: float = 0.0  # attention/MLP dropout; off: one code per step is bottleneck enough
    levels: list[int] = field(default_factory=lambda: [8, 5, 5, 5])  # FSQ levels: 1000 codes
    motion_weight: float = 1.0  # extra L1 on pixels that changed since x_0 (against collapse)
    motion_threshold: float = 0.05  # a pixel "changed" when any channel moved more than this
    code_norm: bool = True  # normalise each query's code channels over the batch before FSQ

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the offending key."""
        if isinstance(self.horizon, bool) or not isinstance(self.horizon, int) or self.horizon < 1:
            raise ValueError(f"horizon: expected an int >= 1, got {self.horizon!r}")
        validate_conv_stack(self.image_size, self.down_factor, self.channels, self.num_res_blocks)
        validate_levels(self.levels, "levels")
        if self.dim < 1 or self.heads < 1 or self.dim % self.heads:
            raise ValueError(f"dim: {self.dim} must be a positive multiple of heads={self.heads}")
        if self.layers < 1:
            raise ValueError(f"layers: expected >= 1, got {self.layers}")
        if self.mlp_ratio < 1:
            raise ValueError(f"mlp_ratio: expected >= 1, got {self.mlp_ratio}")
        if self.motion_weight < 0:
            raise ValueError(f"motion_weight: expected >= 0, got {self.motion_weight}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: expected in [0, 1), got {self.dropout}")

    @property
    def grid_size(self) -> int:
        """Feature positions per side of one frame."""
        return self.image_size // self.down_factor


def query_frame_mask(horizon: int, positions_per_frame: int) -> torch.Tensor:
    """Which frame features each query may read: the causal, cumulative cross-attention mask.

    Args:
        horizon: H, the number of queries; frames are 0..H.
        positions_per_frame: P, feature vectors per frame.

    Returns:
        (H, (H + 1) * P) bool, True where query i may attend: keys of frames 0..i+1.
    """
    frame_of_key = torch.arange(horizon + 1).repeat_interleave(positions_per_frame)  # ((H+1)*P,)
    last_frame = torch.arange(horizon) + 1  # (H,): query i ends at frame i + 1
    return frame_of_key[None, :] <= last_frame[:, None]  # (H, (H+1)*P)


def query_causal_mask(horizon: int) -> torch.Tensor:
    """(H, H) bool, True where query i may attend to query j, i.e. j <= i.

    Query j depends on frames 0..j+1, a subset of query i's frames when j <= i, so this
    self-attention keeps the cross-attention's causality.
    """
    return torch.ones(horizon, horizon, dtype=torch.bool).tril()


class Attention(nn.Module):
    """Multi-head attention from queries (B, Nq, D) to a context (B, Nk, D) under a mask."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, Nq, D), context (B, Nk, D), mask (Nq, Nk) bool (True = attend) -> (B, Nq, D)."""
        B, Nq, D = x.shape
        Nk = context.shape[1]
        q = self.to_q(x).view(B, Nq, self.heads, D // self.heads).transpose(1, 2)  # (B, h, Nq, d)
        k, v = self.to_kv(context).chunk(2, dim=-1)  # (B, Nk, D) x2
        k = k.reshape(B, Nk, self.heads, D // self.heads).transpose(1, 2)  # (B, h, Nk, d)
        v = v.reshape(B, Nk, self.heads, D // self.heads).transpose(1, 2)  # (B, h, Nk, d)
        # Masked logits become -inf, so masked keys get exactly zero weight: later frames
        # cannot influence earlier queries even by rounding.
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )  # (B, h, Nq, d)
        y = y.transpose(1, 2).reshape(B, Nq, D)  # (B, Nq, D)
        return self.proj(y)


class QueryBlock(nn.Module):
    """Pre-norm transformer layer for the queries: causal self-attn, masked cross-attn, MLP."""

    def __init__(self, config: LatentDynamicsConfig) -> None:
        super().__init__()
        dim = config.dim
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, config.heads, config.dropout)
        self.norm_cross = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.cross_attn = Attention(dim, config.heads, config.dropout)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, config.mlp_ratio * dim),
            nn.GELU(),
            nn.Linear(config.mlp_ratio * dim, dim),
            nn.Dropout(config.dropout),
        )

    def forward(
        self,
        queries: torch.Tensor,
        features: torch.Tensor,
        self_mask: torch.Tensor,
        cross_mask: torch.Tensor,
    ) -> torch.Tensor:
        """queries (B, H, D), features (B, (H+1)*P, D), masks (H, H) and (H, (H+1)*P)."""
        x = self.norm_self(queries)
        queries = queries + self.self_attn(x, x, self_mask)
        context = self.norm_context(features)
        queries = queries + self.cross_attn(self.norm_cross(queries), context, cross_mask)
        return queries + self.mlp(self.norm_mlp(queries))


class LatentDynamicsModel(nn.Module):
    """Clips (B, H+1, 3, S, S) uint8 -> codes (B, H) int64, and x_0 + codes -> x_1..x_H."""

    def __init__(self, config: LatentDynamicsConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        H, D = config.horizon, config.dim
        P = config.grid_size**2
        # One encoder for both paths: the queries read its features of every frame, the
        # decoder starts from its features of x_0.
        self.encoder = Encoder(config.channels, config.num_res_blocks, out_channels=D)
        # Position within the frame and index of the frame: the conv features carry
        # neither, and the queries need both to tell where and when things changed.
        self.position_embedding = nn.Parameter(torch.randn(P, D) * 0.02)
        self.frame_embedding = nn.Parameter(torch.randn(H + 1, D) * 0.02)
        self.change_proj = nn.Linear(D, D)
        self.queries = nn.Parameter(torch.randn(H, D) * 0.02)
        self.blocks = nn.ModuleList(QueryBlock(config) for _ in range(config.layers))
        self.norm_out = nn.LayerNorm(D)
        self.quantizer = FSQ(FSQConfig(levels=list(config.levels), dim=D))
        # Against code collapse. At initialisation the queries' outputs differ very little
        # between clips (they average hundreds of near-identical scene features), so every
        # clip rounds to the same code; the decoder then learns to copy x_0 and the codes
        # never recover (measured: 1-5 distinct codes per batch from step 20 on). Batch
        # normalisation of each (query, channel) before the tanh bound spreads the codes
        # over the levels by construction, so differences between clips always reach the
        # decoder. Statistics are per query index, so query i's normalisation still sees
        # only frames 0..i+1 of any clip; evaluation uses the running statistics.
        self.code_norm: nn.Module = (
            nn.BatchNorm1d(H * self.quantizer.num_channels, affine=False)
            if config.code_norm
            else nn.Identity()
        )
        # A code says what moved where, which is a spatial statement: each code also
        # writes its own feature grid onto x_0's. FiLM alone (one scale/shift per
        # channel) learned to use the codes far more slowly in tests.
        self.code_to_map = nn.Linear(D, D * P)
        self.decoder = Decoder(
            config.channels,
            config.num_res_blocks,
            in_channels=D,
            out_channels=config.channels[0],
            cond_dim=D,
        )
        # Full-resolution head over decoder features and x_0's pixels; it predicts the
        # change from x_0. Its last layer starts at zero, so an untrained model already
        # predicts "nothing moves" (copy x_0) and training spends itself on what moved,
        # which only the codes can tell. (Predicting the frame itself, the decoder spent
        # hundreds of steps learning to copy x_0, below the copy baseline all the while.)
        width = config.channels[0]
        self.head = nn.Sequential(
            nn.Conv2d(width + 3, width, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, 3, 3, padding=1),
        )
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        self.register_buffer("self_mask", query_causal_mask(H), persistent=False)
        self.register_buffer("cross_mask", query_frame_mask(H, P), persistent=False)

    @property
    def codebook_size(self) -> int:
        """Distinct code values, prod(levels)."""
        return self.quantizer.codebook_size

    def _check_clip(self, frames: torch.Tensor) -> None:
        c = self.config
        expected = (c.horizon + 1, 3, c.image_size, c.image_size)
        if frames.ndim != 5 or tuple(frames.shape[1:]) != expected:
            raise ValueError(
                f"frames must be (B, {', '.join(map(str, expected))}), got {tuple(frames.shape)}"
            )

    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """Per-frame encoder features.

        Args:
            frames: (B, T, 3, S, S) uint8 (or float in [0, 1]), any number of frames T.

        Returns:
            (B, T, D, h, w); frame t's features depend on frame t alone.
        """
        B, T = frames.shape[:2]
        x = frames_to_float(frames).flatten(0, 1)  # (B*T, 3, S, S)
        features = self.encoder(x)  # (B*T, D, h, w)
        return features.view(B, T, *features.shape[1:])  # (B, T, D, h, w)

    def query_outputs(self, feature_maps: torch.Tensor) -> torch.Tensor:
        """Continuous query outputs before quantization.

        Args:
            feature_maps: (B, H+1, D, h, w) from the per-frame encoder.

        Returns:
            (B, H, D); row i depends only on frames 0..i+1.
        """
        B, T, D = feature_maps.shape[:3]
        features = feature_maps.flatten(3).transpose(2, 3)  # (B, T, P, D)
        # Each frame's keys also carry its difference to x_0: the codes are about change,
        # and differencing in feature space mixes only frames t and 0, both visible to
        # every query that may read frame t.
        change = self.change_proj(features - features[:, :1])  # (B, T, P, D)
        features = features + change + self.position_embedding + self.frame_embedding[:, None, :]
        features = features.reshape(B, -1, D)  # (B, T*P, D), frame-major like the mask
        queries = self.queries.expand(B, -1, -1)  # (B, H, D)
        for block in self.blocks:
            queries = block(queries, features, self.self_mask, self.cross_mask)
        return self.norm_out(queries)

    def _quantize(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """frames (B, H+1, 3, S, S) -> x_0 features (B, D, h, w), z_q (B, H, D), codes (B, H)."""
        self._check_clip(frames)
        feature_maps = self.frame_features(frames)  # (B, H+1, D, h, w)
        z = self.quantizer.project_in(self.query_outputs(feature_maps))  # (B, H, C)
        z = self.code_norm(z.flatten(1).float()).view_as(z)  # (B, H, C)
        z_q, codes = self.quantizer.quantize_projected(z)  # (B, H, D), (B, H)
        return feature_maps[:, 0], z_q, codes

    def _decode(
        self, first_features: torch.Tensor, first_pixels: torch.Tensor, z_q: torch.Tensor
    ) -> torch.Tensor:
        """x_0 features (B, D, h, w), x_0 pixels (B, 3, S, S), z_q (B, H, D) -> (B, H, 3, S, S).

        Returns unclamped pixels, trained towards [0, 1]. All H frames decode as one batch
        of B*H independent samples, so frame i sees code i and x_0 only.
        """
        B, H, D = z_q.shape
        cond = z_q.reshape(B * H, D)  # (B*H, D)
        g = self.config.grid_size
        code_map = self.code_to_map(cond).view(B * H, D, g, g)  # (B*H, D, h, w)
        features = first_features.repeat_interleave(H, dim=0) + code_map  # (B*H, D, h, w)
        pixels = first_pixels.repeat_interleave(H, dim=0)  # (B*H, 3, S, S)
        h = self.decoder(features, cond=cond)  # (B*H, C0, S, S)
        # Linear output, clamped by the callers: as in the tokenizer, a sigmoid's flat
        # tails stall the L1 gradient.
        raw = pixels + self.head(torch.cat([h, pixels], dim=1))  # (B*H, 3, S, S)
        return raw.view(B, H, *raw.shape[1:])  # (B, H, 3, S, S)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Clip frames (B, H+1, 3, S, S) uint8 -> codes (B, H) int64 in [0, codebook_size)."""
        return self._quantize(frames)[2]

    def decode(self, first_frame: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Rebuild x_1..x_H from x_0 and the codes.

        Args:
            first_frame: (B, 3, S, S) uint8 (or float in [0, 1]), x_0.
            codes: (B, H) int64.

        Returns:
            (B, H, 3, S, S) float in [0, 1]; frame i depends on x_0 and codes[:, i] only.
        """
        if codes.ndim != 2 or codes.shape[1] != self.config.horizon:
            raise ValueError(f"codes must be (B, {self.config.horizon}), got {tuple(codes.shape)}")
        first_features = self.frame_features(first_frame[:, None])[:, 0]  # (B, D, h, w)
        z_q = self.quantizer.indices_to_output(codes)  # (B, H, D)
        return self._decode(first_features, frames_to_float(first_frame), z_q).clamp(0, 1)

    def forward(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encode a clip to codes and reconstruct its future frames from x_0 and the codes.

        Args:
            frames: (B, H+1, 3, S, S) uint8 (or float in [0, 1]), x_0..x_H.

        Returns:
            recon: (B, H, 3, S, S) float in [0, 1], predictions of x_1..x_H.
            codes: (B, H) int64.
            loss: scalar L1 between the (unclamped) predictions and x_1..x_H.
        """
        first_features, z_q, codes = self._quantize(frames)
        pixels = frames_to_float(frames)  # (B, H+1, 3, S, S)
        raw = self._decode(first_features, pixels[:, 0], z_q)  # (B, H, 3, S, S), unclamped
        target = pixels[:, 1:]
        error = (raw - target).abs()  # (B, H, 3, S, S)
        loss = error.mean()
        if self.config.motion_weight > 0:
            # Robot frames barely change between steps, so "copy x_0" is a low-loss solution
            # that needs no codes. The moving pixels carry what the codes must encode: an L1
            # averaged over them alone keeps that signal from drowning in the static pixels.
            # (It is not enough on its own: on the 3-task 64 px demo the codes still collapsed
            # within 500 steps; `distinct_codes` in metrics.csv shows it.)
            moved = (target - pixels[:, :1]).abs().amax(dim=2, keepdim=True)  # (B, H, 1, S, S)
            mask = (moved > self.config.motion_threshold).to(error.dtype)
            motion = (error * mask).sum() / (mask.sum() * 3).clamp_min(1.0)
            loss = loss + self.config.motion_weight * motion
        return {"recon": raw.clamp(0, 1), "codes": codes, "loss": loss}
