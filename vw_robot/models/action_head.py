"""Action head (inverse dynamics): the current frame and the H predicted latent codes ->
a chunk of k actions (docs/models.md).

The same module with ``use_codes=False`` is the behaviour-cloning baseline (pixels -> action
chunk with the same conv trunk), so the two differ only in whether they see the codes. With
``use_next_frame=True`` (and no codes) it is the no-LDM ablation's head: the same trunk reads
the current frame and the predicted next frame, and their features are concatenated.
Actions are predicted in normalised units; the normaliser's statistics are buffers, so they
travel with the weights and ``predict`` returns actions in the env's units.

Two optional inputs, recorded in the config (so in every checkpoint): the task (``num_tasks >
0``: a learned embedding of the task index, as multi-task policies have; without it a BC head
must tell reach from push from a pixel or two) and the proprio state (``state_dim > 0``,
normalised by statistics kept as buffers like the actions').

``conditioning="film"`` also lets the condition (the task embedding and, for VideoWorld heads,
the codes' embeddings) modulate the trunk's feature map channel by channel (FiLM:
``features * (1 + gamma) + beta``), besides reaching the MLP as inputs. Its layer starts at
zero, so at initialisation the conditioned trunk is the unconditioned one.

``predict_codes=True`` is the same network with another output layer: for each of the chunk's k
steps, logits over the latent dynamics model's code vocabulary (the code of the change from
x_{t+j} to x_{t+j+1}) instead of an action. Latent-action pretraining trains it on every video
(:mod:`vw_robot.training.latent_pretrain`); a head fine-tuned from it takes every weight but
that output layer.

Two switches change how the frame is seen, both recorded in the config (off: the network and
its checkpoints are as before). ``view_trunks=True`` reads a frame of ``num_views`` camera
views stacked top to bottom (``camera=front+top``: view i fills rows [i*S/N, (i+1)*S/N)) with
one trunk per view, each of the same architecture with its own weights, so no convolution or
normalisation reads across the seam between two cameras; their feature maps are stacked back
in the same rows. ``pool="spatial_softmax"`` turns each feature channel into the expected
(x, y) position of its softmax over the map (a learned temperature; Levine et al. 2016,
robomimic's visual policies), per view with ``view_trunks``: 2 numbers per channel locate a
small object better than thousands of flattened activations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from vw_robot.models.augment import random_shift
from vw_robot.models.fsq import validate_levels
from vw_robot.models.tokenizer import Encoder, frames_to_float, validate_conv_stack

POOLS = ("flatten", "spatial_softmax")


def pooled_size(feature_dim: int, grid: int, pool: str, trunks: int) -> int:
    """Features of one frame after pooling: the trunks' (feature_dim, grid, grid) map (bands
    stacked) flattened, or 2 coordinates per channel per trunk."""
    if pool == "spatial_softmax":
        return feature_dim * 2 * trunks
    return feature_dim * grid * grid


class SpatialSoftmax(nn.Module):
    """Feature maps (B, C, h, w) -> (B, C, 2): each channel's expected (x, y) position under
    the softmax of its activations over the h*w cells, divided by a learned temperature.

    Coordinates are those of the cells' centres in the map's [-1, 1] frame (x left to right, y
    top to bottom; cell j of w at (2j + 1) / w - 1, as ``grid_sample`` with
    ``align_corners=False`` reads them), so a uniform map gives (0, 0), the centre, and a
    single-row band's y is 0. The temperature starts at 1 (stored as its log, so it stays
    positive); the softmax runs in float32 whatever the autocast.
    """

    def __init__(self) -> None:
        super().__init__()
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = features.shape
        logits = features.float().flatten(2) / self.log_temperature.exp()  # (B, C, h*w)
        weights = logits.softmax(-1).view(batch, channels, height, width)  # (B, C, h, w)
        ys = (2 * torch.arange(height, device=features.device) + 1) / height - 1  # (h,)
        xs = (2 * torch.arange(width, device=features.device) + 1) / width - 1  # (w,)
        x = (weights.sum(2) * xs).sum(-1)  # (B, C): the column marginal's mean
        y = (weights.sum(3) * ys).sum(-1)  # (B, C): the row marginal's mean
        return torch.stack([x, y], dim=-1)  # (B, C, 2)


class ViewTrunks(nn.Module):
    """(B, 3, S, S) pixels of ``num_views`` views stacked top to bottom -> (B, F, g, g): each
    view's band of S/N rows read by its own trunk (``trunk_config`` as ``Encoder`` takes it),
    the N feature maps (B, F, g/N, g) stacked back in the same order."""

    def __init__(self, num_views: int, **trunk_config: object) -> None:
        super().__init__()
        self.views = nn.ModuleList(Encoder(**trunk_config) for _ in range(num_views))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        bands = pixels.chunk(len(self.views), dim=2)  # N x (B, 3, S/N, S)
        maps = [trunk(band) for trunk, band in zip(self.views, bands, strict=True)]
        return torch.cat(maps, dim=2)  # (B, F, g, g)


@dataclass
class ActionHeadConfig:
    """Action head settings; defaults fit 64 px Meta-World (4-D actions)."""

    image_size: int = 64  # square frame side in pixels
    down_factor: int = 8  # conv trunk downsampling: 64 px -> 8x8 feature grid
    channels: list[int] = field(default_factory=lambda: [16, 32, 64])  # trunk width per stage
    num_res_blocks: int = 1  # residual blocks per trunk stage
    feature_dim: int = 64  # trunk output channels before pooling to a vector
    use_codes: bool = True  # False: the behaviour-cloning baseline (frame only)
    use_next_frame: bool = False  # also read a predicted next frame (the no-LDM ablation)
    horizon: int = 4  # H codes it reads (the LDM's horizon)
    code_levels: list[int] = field(default_factory=lambda: [8, 5, 5, 5])  # LDM FSQ levels
    code_embed_dim: int = 32  # learned embedding per (query, code index)
    hidden: int = 256  # MLP width
    action_dim: int = 4  # A: the env's action size
    chunk: int = 4  # k: actions predicted per call
    state_dim: int = 0  # proprio inputs (0 = pixels only, as the paper's head)
    # Pixels in [0, 1] instead of [-1, 1]: a trunk copied from the latent dynamics model's
    # frame encoder (trained on all the video) reads them as it was trained to.
    unit_inputs: bool = False
    num_tasks: int = 0  # > 0: condition on the task index through a learned embedding
    task_embed_dim: int = 16  # size of that embedding
    # concat: task and codes reach the MLP as inputs; film: they also scale and shift the
    # trunk's features per channel (needs num_tasks > 0 or use_codes).
    conditioning: str = "concat"
    # Logits over the LDM's codes (code_levels) per chunk step instead of actions: the
    # latent-action pretraining head, which reads the frame (and task) only.
    predict_codes: bool = False
    # One trunk per camera view (the frame's num_views horizontal bands), features stacked.
    view_trunks: bool = False
    # Views stacked top to bottom in the frame: the training data's recorded layout.
    num_views: int = 1
    # flatten: every feature-map cell an MLP input; spatial_softmax: each channel's expected
    # (x, y) position (per view with view_trunks).
    pool: str = "flatten"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the offending key."""
        validate_conv_stack(self.image_size, self.down_factor, self.channels, self.num_res_blocks)
        validate_levels(self.code_levels, "code_levels")
        for key in ("feature_dim", "code_embed_dim", "hidden", "action_dim", "chunk"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}: expected >= 1, got {getattr(self, key)}")
        if self.use_codes and self.horizon < 1:
            raise ValueError(f"horizon: expected >= 1 when use_codes, got {self.horizon}")
        if self.use_codes and self.use_next_frame:
            raise ValueError("use_next_frame: the head reads codes or a next frame, not both")
        if self.predict_codes and (self.use_codes or self.use_next_frame):
            raise ValueError(
                "predict_codes: the latent-action head reads the frame (and task) only; set "
                "use_codes and use_next_frame false"
            )
        for key in ("state_dim", "num_tasks"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key}: expected >= 0, got {getattr(self, key)}")
        if self.task_embed_dim < 1:
            raise ValueError(f"task_embed_dim: expected >= 1, got {self.task_embed_dim}")
        if self.conditioning not in ("concat", "film"):
            raise ValueError(f"conditioning: {self.conditioning!r}; use concat or film")
        if self.conditioning == "film" and not (self.num_tasks or self.use_codes):
            raise ValueError(
                "conditioning: film needs a condition (num_tasks > 0 or use_codes); this head "
                "reads neither"
            )
        self._validate_views()
        if self.pool not in POOLS:
            raise ValueError(f"pool: {self.pool!r}; use {' or '.join(POOLS)}")

    def _validate_views(self) -> None:
        if isinstance(self.num_views, bool) or not isinstance(self.num_views, int):
            raise ValueError(f"num_views: expected an int >= 1, got {self.num_views!r}")
        if self.num_views < 1:
            raise ValueError(f"num_views: expected >= 1, got {self.num_views}")
        if not self.view_trunks:
            return
        if self.num_views < 2:
            raise ValueError(
                "view_trunks: the frame holds one camera view (num_views=1); a trunk per view "
                "needs frames of two or more views stacked (camera=front+top)"
            )
        band = self.image_size // self.num_views
        if self.image_size % self.num_views or band % self.down_factor:
            raise ValueError(
                f"view_trunks: each of the {self.num_views} views is image_size/{self.num_views}"
                f" rows of {self.image_size} px, which must be a whole multiple of down_factor="
                f"{self.down_factor}"
            )

    @property
    def trunks(self) -> int:
        """Trunks reading the frame: one per view with ``view_trunks``, else one."""
        return self.num_views if self.view_trunks else 1

    @property
    def frame_features(self) -> int:
        """Size of one frame's pooled features (an MLP input block)."""
        return pooled_size(
            self.feature_dim, self.image_size // self.down_factor, self.pool, self.trunks
        )

    @property
    def code_vocab(self) -> int:
        out = 1
        for level in self.code_levels:
            out *= level
        return out


class ActionHead(nn.Module):
    """frames (B, 3, S, S) uint8 [+ codes (B, H) | next frames (B, 3, S, S)] [+ state (B, D)]
    [+ task (B,)] -> actions (B, k, A), or code logits (B, k, V) with ``predict_codes``."""

    def __init__(self, config: ActionHeadConfig) -> None:
        super().__init__()
        self.config = config
        trunk = {
            "channels": config.channels,
            "num_res_blocks": config.num_res_blocks,
            "out_channels": config.feature_dim,
        }
        self.trunk = (
            ViewTrunks(config.num_views, **trunk) if config.view_trunks else Encoder(**trunk)
        )
        inputs = config.frame_features * (2 if config.use_next_frame else 1)
        if config.use_codes:
            # One table per query position: code i means "x_0 -> x_{i+1}", so the same index
            # at different offsets is a different motion.
            self.code_embedding = nn.Embedding(
                config.horizon * config.code_vocab, config.code_embed_dim
            )
            inputs += config.horizon * config.code_embed_dim
        inputs += config.state_dim
        if config.num_tasks:
            self.task_embedding = nn.Embedding(config.num_tasks, config.task_embed_dim)
            inputs += config.task_embed_dim
        self.mlp = nn.Sequential(
            nn.Linear(inputs, config.hidden),
            nn.SiLU(),
            nn.Linear(config.hidden, config.hidden),
            nn.SiLU(),
            nn.Linear(config.hidden, config.chunk * self.outputs_per_step),
        )
        self.film: nn.Linear | None = None
        if config.conditioning == "film":
            cond_dim = config.num_tasks and config.task_embed_dim
            cond_dim += config.horizon * config.code_embed_dim if config.use_codes else 0
            # Built last, so the other layers draw the same initial weights as a concat head's;
            # zero, so gamma = beta = 0 and the trunk's features pass unchanged at first.
            self.film = nn.Linear(cond_dim, 2 * config.feature_dim)
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)
        # After every layer a flatten head has: those draw their initial weights as before.
        self.pool = SpatialSoftmax() if config.pool == "spatial_softmax" else None
        if not config.predict_codes:  # a code predictor has no actions to normalise
            self.register_buffer("action_mean", torch.zeros(config.action_dim))
            self.register_buffer("action_std", torch.ones(config.action_dim))
        if config.state_dim:  # only then: checkpoints of pixel-only heads keep their tensors
            self.register_buffer("state_mean", torch.zeros(config.state_dim))
            self.register_buffer("state_std", torch.ones(config.state_dim))

    @property
    def outputs_per_step(self) -> int:
        """Outputs per chunk step: the action's size, or the code vocabulary's."""
        return self.config.code_vocab if self.config.predict_codes else self.config.action_dim

    def set_normalizer(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Action statistics of the training labels (std floored to avoid dividing by ~0)."""
        self.action_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.action_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-3))

    def set_state_normalizer(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Proprio statistics of the training data (std floored like the actions')."""
        self.state_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.state_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-3))

    def forward(
        self,
        frames: torch.Tensor,
        codes: torch.Tensor | None = None,
        state: torch.Tensor | None = None,
        next_frames: torch.Tensor | None = None,
        task: torch.Tensor | None = None,
        trunk_output: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Normalised action chunk (B, k, A); code logits (B, k, V) with ``predict_codes``.

        Args:
            frames: (B, 3, S, S) uint8 current frames.
            codes: (B, H) int64 latent codes (``use_codes``).
            state: (B, D) proprio in env units (``state_dim > 0``).
            next_frames: (B, 3, S, S) predicted next frames (``use_next_frame``).
            task: (B,) int64 task indices (``num_tasks > 0``).
            trunk_output: (B, F, g, g) the trunk's output for the frames, computed before (a
                frozen trunk's cached features, :meth:`trunk_output`); ``frames`` is then not
                read and may be None.
        """
        c = self.config
        if trunk_output is not None:
            if c.use_next_frame:
                raise ValueError("trunk_output: the no-LDM head reads two frames through its trunk")
            frames_shape = (trunk_output.shape[0],)
        else:
            frames_shape = tuple(frames.shape)
        if c.use_next_frame and (next_frames is None or next_frames.shape != frames.shape):
            raise ValueError(
                f"next_frames must be shaped like frames {tuple(frames.shape)}, got "
                f"{None if next_frames is None else tuple(next_frames.shape)}"
            )
        codes_embedding = task_embedding = None
        if c.use_codes:
            if codes is None or codes.shape[1:] != (c.horizon,):
                raise ValueError(
                    f"codes must be (B, {c.horizon}), got "
                    f"{None if codes is None else tuple(codes.shape)}"
                )
            offsets = torch.arange(c.horizon, device=codes.device) * c.code_vocab
            codes_embedding = self.code_embedding(codes + offsets).flatten(1)  # (B, H*E)
        if c.num_tasks:
            if task is None or task.shape != frames_shape[:1]:
                raise ValueError(
                    f"task must be ({frames_shape[0]},) task indices, got "
                    f"{None if task is None else tuple(task.shape)}"
                )
            task_embedding = self.task_embedding(task)  # (B, E)
        conditions = [e for e in (codes_embedding, task_embedding) if e is not None]
        parts = [self.features(frames, conditions, trunk_output)]  # (B, F*g*g)
        if c.use_next_frame:
            parts.append(self.features(next_frames, conditions))
        if codes_embedding is not None:
            parts.append(codes_embedding)
        if c.state_dim:
            if state is None or state.shape[1:] != (c.state_dim,):
                raise ValueError(
                    f"state must be (B, {c.state_dim}), got "
                    f"{None if state is None else tuple(state.shape)}"
                )
            parts.append((state.float() - self.state_mean) / self.state_std)
        if task_embedding is not None:
            parts.append(task_embedding)  # (B, E)
        out = self.mlp(torch.cat(parts, dim=1))  # (B, k*A) or (B, k*V)
        return out.view(-1, c.chunk, self.outputs_per_step)  # (B, k, A) or (B, k, V)

    def features(
        self,
        frames: torch.Tensor | None,
        conditions: list[torch.Tensor],
        trunk_output: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The trunk's features of (B, 3, S, S) frames (or its ``trunk_output`` for them,
        computed before), pooled to (B, ``config.frame_features``): flattened (B, F*g*g), or
        each channel's (x, y) keypoint, (B, F*2) or per view (B, N*F*2) in view order. With
        FiLM, each of the F channels of every trunk is scaled and shifted by the condition
        (the ``conditions`` embeddings, concatenated) before pooling."""
        features = self.trunk_output(frames) if trunk_output is None else trunk_output
        if self.film is not None:
            film = self.film(torch.cat(conditions, dim=1))  # (B, 2F)
            gamma, beta = film[:, :, None, None].chunk(2, dim=1)  # (B, F, 1, 1) each
            features = features * (1 + gamma) + beta
        if self.pool is None:
            return features.flatten(1)
        # Each view's band of the map on its own: its keypoints lie in its own camera's frame.
        bands = features.chunk(self.config.trunks, dim=2)  # N x (B, F, g/N, g)
        return torch.cat([self.pool(band).flatten(1) for band in bands], dim=1)  # (B, N*F*2)

    def trunk_output(self, frames: torch.Tensor) -> torch.Tensor:
        """The trunk's output (B, F, g, g) for (B, 3, S, S) uint8 frames, before FiLM: what a
        frozen trunk's feature cache holds (with ``view_trunks``, the views' maps stacked in
        their bands' rows)."""
        return self.trunk(self._pixels(frames))

    def load_trunk(self, state: dict[str, torch.Tensor]) -> None:
        """Start the trunk from a pretrained encoder's weights (``trunk=ldm|tokenizer``): with
        ``view_trunks`` every view's trunk gets a copy."""
        trunks = self.trunk.views if self.config.view_trunks else [self.trunk]
        for trunk in trunks:
            trunk.load_state_dict(state)

    def random_shift(
        self, images: torch.Tensor, pad: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Training's random shift (:func:`~vw_robot.models.augment.random_shift`) of (B, C,
        S, S) images as this head reads them: with ``view_trunks`` each view's band shifts on
        its own (its border repeated, nothing of one camera moved into another's band), else
        the whole image."""
        if not self.config.view_trunks or pad == 0:
            return random_shift(images, pad, generator)
        batch, channels, size, width = images.shape
        views = self.config.num_views
        bands = images.reshape(batch, channels, views, size // views, width).transpose(1, 2)
        shifted = random_shift(
            bands.reshape(batch * views, channels, size // views, width), pad, generator
        )  # (B*N, C, S/N, S)
        out = shifted.reshape(batch, views, channels, size // views, width).transpose(1, 2)
        return out.reshape(batch, channels, size, width)  # (B, C, S, S)

    def _pixels(self, frames: torch.Tensor) -> torch.Tensor:
        """The trunk's input: (B, 3, S, S) float in [0, 1] or [-1, 1] (``unit_inputs``)."""
        pixels = frames_to_float(frames)
        return pixels if self.config.unit_inputs else pixels * 2 - 1

    def loss(
        self,
        frames: torch.Tensor,
        codes: torch.Tensor | None,
        actions: torch.Tensor,
        mask: torch.Tensor,
        state: torch.Tensor | None = None,
        task: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Masked MSE in normalised units (see :meth:`chunk_loss`)."""
        return self.chunk_loss(self(frames, codes, state, task=task), actions, mask)

    def chunk_loss(
        self, predicted: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Masked MSE between a forward pass's output and the labels.

        Split from :meth:`loss` so that DDP training can run the forward through its wrapper
        (gradients are only synchronised for the wrapper's forward).

        Args:
            predicted: (B, k, A) normalised, from ``forward``.
            actions: (B, k, A) in env units; mask: (B, k) bool, which rows are real.
        """
        target = (actions - self.action_mean) / self.action_std
        error = (predicted.float() - target).pow(2).mean(-1)  # (B, k)
        weights = mask.float()
        return (error * weights).sum() / weights.sum().clamp_min(1.0)

    def code_loss(
        self, logits: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Masked cross-entropy of a ``predict_codes`` head's logits against the LDM's codes.

        Args:
            logits: (B, k, V) from ``forward``.
            codes: (B, k) int64 code indices; mask: (B, k) bool, which steps have a code
                (false past the episode's end).
        """
        error = nn.functional.cross_entropy(
            logits.float().flatten(0, 1), codes.flatten(), reduction="none"
        ).view_as(codes)  # (B, k)
        weights = mask.float()
        return (error * weights).sum() / weights.sum().clamp_min(1.0)

    @torch.no_grad()
    def predict(
        self,
        frames: torch.Tensor,
        codes: torch.Tensor | None = None,
        state: torch.Tensor | None = None,
        next_frames: torch.Tensor | None = None,
        task: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Action chunk (B, k, A) in env units, clipped to [-1, 1] (inputs as in forward)."""
        normalised = self(frames, codes, state, next_frames, task)
        return (normalised * self.action_std + self.action_mean).clamp(-1.0, 1.0)
