"""The autoregressive video transformer: a GPT-style decoder over frame tokens and latent codes.

One flat vocabulary holds three kinds of ids (see :class:`SequenceLayout`)::

    [0, frame_vocab)                          frame tokens (the tokenizer's FSQ indices)
    [frame_vocab, frame_vocab + code_vocab)   latent codes (the latent dynamics model's indices)
    frame_vocab + code_vocab                  SEP, which ends every frame

and every timestep t of a window of T timesteps is laid out as::

    [N frame tokens of x_t][SEP][H codes z_t]

so the model learns p(x_t) frame by frame and, after each SEP, the H codes that summarise how
the scene changes over the next H frames. Control feeds the observed frame, then samples the H
codes restricted to the code range (:meth:`VideoTransformer.generate_codes`). The no-LDM ablation
is the same model with ``horizon=0``: per timestep ``[x_t][SEP]``, and after a SEP it must
predict the next frame's tokens (:meth:`VideoTransformer.generate_frame_tokens`).

The task conditions every position: its learned embedding is added to each token embedding.
Nothing is prepended, so windows keep their timestep-aligned layout, the KV cache needs no
special first entry, and a window that slides keeps its task.

Positions are either a learned absolute table (``positions="absolute"``, the checkpoints made
before rope) or rotary (``positions="rope"``). With rope attention sees only offsets, so the
control loop's KV cache slides with its window: each step drops the oldest timestep and feeds
only the new frame (:class:`KVCache` says exactly what that computes). The cache keeps
per-row masks and positions, so envs at different points of their episodes decode in one
batch (:meth:`VideoTransformer.generate_codes` with ``lengths``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100  # target value that cross entropy skips (PyTorch's default ignore_index)


def _check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ValueError(f"{key}: {message}")


@dataclass
class SequenceLayout:
    """Flat vocabulary and per-timestep layout shared by data preparation, training and control.

    A timestep is ``[N frame tokens][SEP][H codes]``, so ``step_len = N + 1 + H``. With
    ``horizon=0`` (the no-LDM ablation) the SEP stays and ``step_len = N + 1``: every frame still
    ends with the same marker, a context for generation always ends with SEP whatever the
    variant, and the model never has to infer a frame boundary from positions alone. Codes take
    no ids when ``horizon=0``, so the ablation's vocabulary is ``frame_vocab + 1``.

    ``hide_past_codes``: the codes of earlier timesteps are shown to the model as one HIDDEN id
    each (one more id in the vocabulary), in training and in control alike. An earlier code
    z_{t-1} is the LDM's summary of frames up to x_{t+H-1}, so in a teacher-forced window it
    tells the model much of what z_t must say; at control time the past codes are the model's
    own samples, which carry none of that future, and a model that learned to lean on them
    drifts (measured: code agreement with the LDM 37% per code on real past codes, 9% along its
    own). Hidden, the codes are predicted from the frames alone, and sampling them offline
    from recorded frames gives exactly what the policy samples acting on those frames.
    """

    num_frame_tokens: int = 64  # N tokens per frame: the tokenizer's (S/f)^2 grid, 64 for 64px/f8
    frame_vocab: int = 1000  # tokenizer codebook size (FSQ levels [8,5,5,5] give 1000)
    horizon: int = 4  # H codes per timestep; 0 is the no-LDM ablation (no codes at all)
    code_vocab: int = 1000  # latent dynamics model codebook size; unused when horizon is 0
    hide_past_codes: bool = False  # earlier timesteps' codes shown as HIDDEN (see the class doc)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, prefix: str = "") -> None:
        """Raise ValueError naming the first field that does not fit."""
        _check(self.num_frame_tokens >= 1, f"{prefix}num_frame_tokens", "must be >= 1")
        _check(self.frame_vocab >= 1, f"{prefix}frame_vocab", "must be >= 1")
        _check(self.horizon >= 0, f"{prefix}horizon", "must be >= 0 (0 disables codes)")
        _check(
            self.horizon == 0 or self.code_vocab >= 1,
            f"{prefix}code_vocab",
            f"must be >= 1 when horizon={self.horizon} > 0",
        )
        _check(
            not self.hide_past_codes or self.horizon > 0,
            f"{prefix}hide_past_codes",
            "needs codes (horizon > 0); the no-LDM layout has none to hide",
        )

    # ---- vocabulary ----

    @property
    def frame_range(self) -> tuple[int, int]:
        """Half-open id range ``(lo, hi)`` of frame tokens."""
        return 0, self.frame_vocab

    @property
    def code_range(self) -> tuple[int, int]:
        """Half-open id range ``(lo, hi)`` of codes; empty when ``horizon`` is 0."""
        return self.frame_vocab, self.frame_vocab + (self.code_vocab if self.horizon > 0 else 0)

    @property
    def sep_id(self) -> int:
        """Id of SEP, the marker that ends every frame."""
        return self.code_range[1]

    @property
    def hidden_id(self) -> int | None:
        """Id that stands for an earlier timestep's code with ``hide_past_codes``, else None."""
        return self.sep_id + 1 if self.hide_past_codes else None

    @property
    def vocab_size(self) -> int:
        """Size of the flat vocabulary: frame tokens, codes, SEP (and HIDDEN)."""
        return self.sep_id + 1 + int(self.hide_past_codes)

    # ---- layout ----

    @property
    def step_len(self) -> int:
        """Ids per timestep: ``N + 1 + H`` (SEP is kept when ``H`` is 0)."""
        return self.num_frame_tokens + 1 + self.horizon

    def seq_len(self, num_steps: int) -> int:
        """Ids in a window of ``num_steps`` complete timesteps."""
        return num_steps * self.step_len

    def build(self, tokens: torch.Tensor, codes: torch.Tensor | None) -> torch.Tensor:
        """Lay out complete timesteps as flat ids.

        Args:
            tokens: (B, T, N) int64 frame tokens in ``[0, frame_vocab)``.
            codes: (B, T, H) int64 code indices in ``[0, code_vocab)``; None (or an empty last
                dimension) when ``horizon`` is 0.

        Returns:
            ids: (B, T * step_len) int64, per timestep ``[tokens][SEP][codes + frame_vocab]``.
        """
        self._check_tokens(tokens)
        batch, steps, _ = tokens.shape
        return self._lay_out(tokens, self._checked_codes(codes, batch, steps, tokens.device))

    def build_context(self, tokens: torch.Tensor, codes: torch.Tensor | None) -> torch.Tensor:
        """Lay out the context from which the last timestep's codes are generated.

        Args:
            tokens: (B, T, N) int64 frame tokens; the last frame is the current observation.
            codes: (B, T-1, H) int64 codes of the earlier timesteps; None when ``horizon`` is 0
                or T is 1.

        Returns:
            ids: (B, T * step_len - H) int64, ending with ``[tokens of x_{T-1}][SEP]``; with
            ``hide_past_codes`` the earlier codes are laid out as HIDDEN (``codes`` may then be
            None).
        """
        self._check_tokens(tokens)
        batch, steps, _ = tokens.shape
        if self.hide_past_codes and codes is None:
            codes = torch.zeros(batch, steps - 1, self.horizon, dtype=torch.long)
        past = self._checked_codes(codes, batch, steps - 1, tokens.device)
        # A placeholder code row for the last step is laid out, then cut off.
        dummy = torch.zeros(batch, 1, self.horizon, dtype=torch.long, device=tokens.device)
        ids = self._lay_out(tokens, torch.cat([past, dummy], dim=1))  # (B, T * step_len)
        return self.model_inputs(ids[:, : ids.shape[1] - self.horizon])

    def model_inputs(self, ids: torch.Tensor) -> torch.Tensor:
        """What the model reads for ``ids`` (from :meth:`build`, or a context): unchanged, or
        with ``hide_past_codes`` every code of a timestep before the last one replaced by
        HIDDEN. The last timestep's codes stay: they are generated one after another, each
        reading the ones before it. Targets still come from the real ``ids``."""
        if not self.hide_past_codes:
            return ids
        length = ids.shape[-1]
        position = torch.arange(length, device=ids.device)
        # The last timestep starts at the last multiple of step_len at or before length - 1
        # (a context ends with [x][SEP], a full window with [x][SEP][codes]).
        last_start = (length - 1) // self.step_len * self.step_len
        hide = (position % self.step_len > self.num_frame_tokens) & (position < last_start)
        return torch.where(hide, torch.full_like(ids, self.sep_id + 1), ids)  # the HIDDEN id

    def split(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Invert :meth:`build`.

        Args:
            ids: (B, T * step_len) int64 flat ids of complete timesteps.

        Returns:
            tokens: (B, T, N) int64, and codes: (B, T, H) int64 code indices (not flat ids),
            or None when ``horizon`` is 0.
        """
        _check(ids.dim() == 2, "ids", f"expected (B, L), got shape {tuple(ids.shape)}")
        batch, length = ids.shape
        _check(
            length % self.step_len == 0,
            "ids",
            f"length {length} is not a multiple of step_len={self.step_len}",
        )
        steps = ids.view(batch, length // self.step_len, self.step_len)  # (B, T, step_len)
        n = self.num_frame_tokens
        _check(bool((steps[:, :, n] == self.sep_id).all()), "ids", "SEP missing after a frame")
        tokens = steps[:, :, :n]  # (B, T, N)
        lo, hi = self.frame_range
        _check(_in_range(tokens, lo, hi), "ids", "a frame position holds a non-frame id")
        if self.horizon == 0:
            return tokens.contiguous(), None
        codes = steps[:, :, n + 1 :]  # (B, T, H)
        lo, hi = self.code_range
        _check(_in_range(codes, lo, hi), "ids", "a code position holds a non-code id")
        return tokens.contiguous(), (codes - lo).contiguous()

    # ---- loss targets ----

    def target_mask(self, num_steps: int, frames: bool = True, codes: bool = True) -> torch.Tensor:
        """Which positions' next-token targets count in the loss.

        Position i predicts id i+1. By default both kinds of content count: frame tokens (the
        model learns the video, as in VideoWorld) and codes (what control samples). SEP targets
        never count (their place is fixed by the layout, so they teach nothing), nor does the
        last position (it has no target), so the first frame token of a window is never a
        target either.

        Args:
            num_steps: T, timesteps in the window.
            frames: count targets that are frame tokens.
            codes: count targets that are codes.

        Returns:
            mask: (T * step_len,) bool, True where position i's target counts.
        """
        n = self.num_frame_tokens
        offset = torch.arange(self.step_len)
        kinds = torch.zeros(self.step_len, dtype=torch.bool)
        kinds |= (offset < n) & frames
        kinds |= (offset > n) & codes
        target_counts = kinds.repeat(num_steps)  # (T * step_len,) indexed by target position
        mask = torch.zeros_like(target_counts)
        mask[:-1] = target_counts[1:]
        return mask

    def targets(
        self,
        ids: torch.Tensor,
        valid: torch.Tensor | None = None,
        frames: bool = True,
        codes: bool = True,
    ) -> torch.Tensor:
        """Next-token targets for :meth:`VideoTransformer.forward`.

        Args:
            ids: (B, T * step_len) int64 flat ids of complete timesteps.
            valid: (B, T) bool, False for padded timesteps (past an episode's end) whose ids
                must not be learned; None when every timestep is real.
            frames: count targets that are frame tokens.
            codes: count targets that are codes.

        Returns:
            targets: (B, T * step_len) int64, ``ids`` shifted left by one with
            :data:`IGNORE_INDEX` where the target does not count.
        """
        _check(ids.dim() == 2, "ids", f"expected (B, L), got shape {tuple(ids.shape)}")
        batch, length = ids.shape
        _check(
            length % self.step_len == 0,
            "ids",
            f"length {length} is not a multiple of step_len={self.step_len}",
        )
        num_steps = length // self.step_len
        mask = self.target_mask(num_steps, frames, codes).to(ids.device)  # (L,)
        mask = mask.unsqueeze(0).expand(batch, length)  # (B, L)
        if valid is not None:
            _check(
                tuple(valid.shape) == (batch, num_steps),
                "valid",
                f"expected shape {(batch, num_steps)}, got {tuple(valid.shape)}",
            )
            # The target of position i lives in timestep (i + 1) // step_len.
            per_id = valid.bool().repeat_interleave(self.step_len, dim=1)  # (B, L)
            mask = mask.clone()
            mask[:, :-1] &= per_id[:, 1:]
        shifted = torch.full_like(ids, IGNORE_INDEX)
        shifted[:, :-1] = ids[:, 1:]
        return torch.where(mask, shifted, torch.full_like(ids, IGNORE_INDEX))

    # ---- helpers ----

    def _check_tokens(self, tokens: torch.Tensor) -> None:
        _check(
            tokens.dim() == 3 and tokens.shape[2] == self.num_frame_tokens,
            "tokens",
            f"expected (B, T, num_frame_tokens={self.num_frame_tokens}), "
            f"got shape {tuple(tokens.shape)}",
        )
        _check(not tokens.is_floating_point(), "tokens", f"expected integers, got {tokens.dtype}")
        _check(
            _in_range(tokens, 0, self.frame_vocab),
            "tokens",
            f"values must lie in [0, frame_vocab={self.frame_vocab})",
        )

    def _checked_codes(
        self, codes: torch.Tensor | None, batch: int, steps: int, device: torch.device
    ) -> torch.Tensor:
        """Return (B, steps, H) int64 codes on ``device``, an empty tensor when horizon is 0."""
        if codes is None:
            _check(
                self.horizon == 0 or steps == 0,
                "codes",
                f"required when horizon={self.horizon} > 0",
            )
            return torch.zeros(batch, steps, self.horizon, dtype=torch.long, device=device)
        _check(
            tuple(codes.shape) == (batch, steps, self.horizon),
            "codes",
            f"expected shape {(batch, steps, self.horizon)} (B, T, horizon), "
            f"got {tuple(codes.shape)}",
        )
        _check(not codes.is_floating_point(), "codes", f"expected integers, got {codes.dtype}")
        _check(
            _in_range(codes, 0, self.code_vocab),
            "codes",
            f"values must lie in [0, code_vocab={self.code_vocab})",
        )
        return codes.long().to(device)

    def _lay_out(self, tokens: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        batch, steps, _ = tokens.shape
        sep = torch.full((batch, steps, 1), self.sep_id, dtype=torch.long, device=tokens.device)
        codes = codes.to(tokens.device) + self.code_range[0]
        ids = torch.cat([tokens.long(), sep, codes], dim=2)  # (B, T, step_len)
        return ids.reshape(batch, steps * self.step_len)  # (B, T * step_len)


def _in_range(values: torch.Tensor, lo: int, hi: int) -> bool:
    return values.numel() == 0 or bool(((values >= lo) & (values < hi)).all())


POSITIONS = ("absolute", "rope")  # the position schemes TransformerConfig.positions accepts
ROPE_BASE = 10000.0  # rotary base (RoFormer's): wavelengths from 2*pi to ~2*pi*10^4 ids


@dataclass
class TransformerConfig:
    """Size and conditioning of :class:`VideoTransformer`."""

    layout: SequenceLayout = field(default_factory=SequenceLayout)  # vocabulary and timestep
    num_layers: int = 4  # transformer blocks; depth buys longer-range reasoning over frames
    num_heads: int = 4  # attention heads; dim must divide evenly among them
    dim: int = 128  # residual stream width
    mlp_ratio: int = 4  # MLP hidden width as a multiple of dim (GPT's 4x)
    dropout: float = 0.0  # attention and residual dropout; 0 for small data that must be fit
    bias: bool = False  # biases in Linear/LayerNorm; without them GPTs train as well, a bit faster
    max_timesteps: int = 4  # T, timesteps per training window (and the learned table's size)
    num_tasks: int = 1  # rows of the learned task embedding (task ids 0..num_tasks-1)
    # "absolute": learned table over the window (what checkpoints without this key used);
    # "rope": rotary q/k, attention sees only offsets, so a KV cache survives a sliding window.
    positions: str = "absolute"
    # Timesteps per training sequence (None: max_timesteps). Longer needs rope and trains
    # banded (:attr:`training_window`), so the sliding control cache computes what training did.
    train_timesteps: int | None = None

    def __post_init__(self) -> None:
        self.validate()

    @property
    def training_window(self) -> int | None:
        """The ``window=`` of :meth:`VideoTransformer.forward` in training: rope models attend
        over ``max_timesteps`` timesteps at every layer (the sliding control cache's band; on
        sequences of ``max_timesteps`` it is plain causal attention), absolute ones None."""
        return self.max_timesteps if self.positions == "rope" else None

    @property
    def sequence_timesteps(self) -> int:
        """Timesteps per training sequence."""
        return self.train_timesteps or self.max_timesteps

    def validate(self) -> None:
        """Raise ValueError naming the first key that does not fit."""
        _check(
            isinstance(self.layout, SequenceLayout),
            "layout",
            f"expected a SequenceLayout, got {type(self.layout).__name__}",
        )
        self.layout.validate(prefix="layout.")
        _check(self.num_layers >= 1, "num_layers", "must be >= 1")
        _check(self.num_heads >= 1, "num_heads", "must be >= 1")
        _check(self.dim >= 1, "dim", "must be >= 1")
        _check(
            self.dim % self.num_heads == 0,
            "dim",
            f"{self.dim} is not divisible by num_heads={self.num_heads}",
        )
        _check(self.mlp_ratio >= 1, "mlp_ratio", "must be >= 1")
        _check(0.0 <= self.dropout < 1.0, "dropout", f"{self.dropout} is outside [0, 1)")
        _check(self.max_timesteps >= 1, "max_timesteps", "must be >= 1")
        _check(self.num_tasks >= 1, "num_tasks", "must be >= 1")
        _check(
            self.positions in POSITIONS,
            "positions",
            f"{self.positions!r} is not one of {', '.join(POSITIONS)}",
        )
        _check(
            self.train_timesteps is None or self.train_timesteps >= self.max_timesteps,
            "train_timesteps",
            f"{self.train_timesteps} is shorter than max_timesteps={self.max_timesteps}",
        )
        _check(
            self.sequence_timesteps == self.max_timesteps or self.positions == "rope",
            "train_timesteps",
            f"{self.train_timesteps} timesteps need positions='rope' (the absolute table holds "
            f"max_timesteps={self.max_timesteps})",
        )
        _check(
            self.positions != "rope" or (self.dim // self.num_heads) % 2 == 0,
            "dim",
            f"rope rotates pairs of channels: head width dim/num_heads = "
            f"{self.dim // self.num_heads} must be even",
        )

    @property
    def block_size(self) -> int:
        """Ids per training window, ``max_timesteps * step_len``.

        With absolute positions it is also the most the model can attend over (the table's
        size); rope has no such limit, but windows longer than training's are extrapolation.
        """
        return self.layout.seq_len(self.max_timesteps)


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


def pad_left(rows: list[torch.Tensor], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack id rows of different lengths right-aligned, for batched generation.

    Args:
        rows: B tensors of shape (L_b,) int64, e.g. each env's :meth:`SequenceLayout.
            build_context` row.
        pad_id: filler on the left of shorter rows (never attended to).

    Returns:
        ids: (B, max L_b) int64, and lengths: (B,) int64, the ``lengths`` argument of
        :meth:`VideoTransformer.generate_codes`.
    """
    _check(len(rows) >= 1 and all(r.dim() == 1 for r in rows), "rows", "expected 1-D id rows")
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long, device=rows[0].device)
    ids = torch.full((len(rows), int(lengths.max())), pad_id, dtype=torch.long)
    ids = ids.to(rows[0].device)
    for b, row in enumerate(rows):
        ids[b, ids.shape[1] - len(row) :] = row
    return ids, lengths


class KVCache:
    """Per-layer keys and values of the ids fed so far, for incremental decoding.

    Entries live in columns shared by the batch: every feed writes each row's new entries into
    the same columns, and a per-row ``valid`` mask marks the columns that hold an entry of that
    row (rows at different points of their episodes leave padding where they have fewer new
    ids; attention skips it). Each column also records its id and position, so generation can
    find what a new context shares with the cache (:meth:`reuse`) and continue the positions.

    Reuse comes in two kinds:

    * prefix (``slide=False``; the only kind for absolute positions): a row keeps the cached
      entries its new context starts with. Recomputing them would give the same keys and
      values, so cached decoding equals uncached decoding.
    * slide (``slide=True``, rope only): a row may first drop its oldest whole timesteps, keep
      the next ones and feed only the new ids, at positions that continue the cached ones
      (rotary attention sees only offsets). Caveat: a kept entry's keys and values in layers
      after the first were computed while the dropped timesteps were still in view, so a
      multi-layer model no longer equals a fresh forward of the window. What it equals exactly
      is a forward of the whole episode with each timestep seeing itself and the ``W - 1``
      timesteps before it, W being the contexts' timesteps
      (``VideoTransformer.forward(..., window=W)``): Transformer-XL / sliding-window
      attention. Call :meth:`reset_rows` when a row's episode restarts, or that history would
      leak into the new one.
    """

    def __init__(
        self,
        num_layers: int,
        batch_size: int,
        num_heads: int,
        head_dim: int,
        capacity: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        slide: bool = False,
    ) -> None:
        # One tensor for all layers: sliding moves every layer's entries in one gather.
        shape = (num_layers, batch_size, num_heads, capacity, head_dim)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.ids = torch.zeros(batch_size, capacity, dtype=torch.long, device=device)
        self.positions = torch.zeros(batch_size, capacity, dtype=torch.long, device=device)
        self.valid = torch.zeros(batch_size, capacity, dtype=torch.bool, device=device)
        self.task: torch.Tensor | None = None  # (B,) task ids of the cached entries
        self.batch_size = batch_size
        self.capacity = capacity
        self.length = 0  # columns in use; a row's entries are its valid columns among them
        self.slide = slide  # reuse may drop a row's oldest timesteps (rope only)

    def reset(self) -> None:
        """Forget everything (start of an episode or a subtask)."""
        self.length = 0
        self.task = None

    def reset_rows(self, rows: torch.Tensor | list[int]) -> None:
        """Forget some rows' entries (their envs started a new episode); others keep theirs.

        Args:
            rows: row indices, or a (B,) bool mask.
        """
        if not isinstance(rows, torch.Tensor):
            rows = torch.tensor(rows, dtype=torch.long)
        self.valid[rows.to(self.valid.device)] = False
        if not bool(self.valid[:, : self.length].any()):
            self.reset()

    def truncate(self, length: int) -> None:
        """Keep only the first ``length`` columns (older entries stay valid)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"length: {length} is outside [0, {self.length}]")
        self.length = length
        if length == 0:
            self.task = None

    def row_lengths(self) -> torch.Tensor:
        """(B,) int64 entries each row holds."""
        return self.valid[:, : self.length].sum(dim=1)

    def next_positions(self) -> torch.Tensor:
        """(B,) int64 position of each row's next id: one past its last entry, 0 when empty."""
        if self.length == 0:
            return torch.zeros(self.batch_size, dtype=torch.long, device=self.ids.device)
        cached = self.positions[:, : self.length].masked_fill(~self.valid[:, : self.length], -1)
        return cached.amax(dim=1) + 1

    def ensure_capacity(self, columns: int) -> None:
        """Grow the storage to hold ``columns`` columns (copies; rare, see :meth:`reuse`)."""
        extra = columns - self.capacity
        if extra <= 0:
            return

        def grown(t: torch.Tensor, dim: int) -> torch.Tensor:
            shape = list(t.shape)
            shape[dim] = extra
            return torch.cat([t, t.new_zeros(shape)], dim=dim)

        self.keys, self.values = grown(self.keys, 3), grown(self.values, 3)
        self.ids, self.positions, self.valid = (
            grown(t, 1) for t in (self.ids, self.positions, self.valid)
        )
        self.capacity = columns

    def reuse(
        self, context_ids: torch.Tensor, lengths: torch.Tensor, stride: int | None
    ) -> torch.Tensor:
        """Keep, per row, the cached entries that the row's new context starts with.

        A row's candidates are its entries from rank ``d`` on, where ``d`` is 0 (prefix reuse)
        or, with ``stride``, any multiple of it (dropping whole timesteps). A candidate whose
        entries all match (the context continues the cache: the control loop's slide) beats
        one that matches only in part, and the smallest such ``d`` wins, so a static scene
        whose frames repeat still drops exactly the timesteps that left the window. Otherwise
        the longest partial match wins (the smallest ``d`` on ties). Every row keeps at most
        ``L_b - 1`` entries, so its last id is fed again for the logits after it. The kept
        entries are moved to end at a common column (``length`` afterwards), everything else
        is forgotten.

        Args:
            context_ids: (B, L) int64, row b's ids right-aligned: ``context_ids[b, L - L_b:]``.
            lengths: (B,) int64 ``L_b``.
            stride: ids per timestep when sliding is allowed, None for prefix reuse only.

        Returns:
            kept: (B,) int64 entries kept per row; its next ids are ``context_ids[b, L - L_b +
            kept_b:]``.
        """
        batch, width = context_ids.shape
        device = self.ids.device
        counts = self.row_lengths()  # (B,)
        most = int(counts.max()) if self.length else 0
        if most == 0:
            self.reset()
            return torch.zeros(batch, dtype=torch.long, device=device)
        # Each row's entries in order, left-aligned; -1 where it has fewer than `most`.
        entries = self._entry_columns(most)  # (B, C)
        rank = torch.arange(most, device=device)  # (C,)
        cached = self.ids.gather(1, entries).masked_fill(rank >= counts[:, None], -1)  # (B, C)
        # The contexts left-aligned too; -2 past a row's end, so padding never matches.
        cols = torch.arange(width, device=device)  # (L,)
        lengths = lengths.to(device)
        start = (width - lengths)[:, None]  # (B, 1)
        context = context_ids.to(device).gather(1, (start + cols).clamp(max=width - 1))
        context = context.masked_fill(cols >= lengths[:, None], -2)  # (B, L)
        # All candidate drops at once: windows[b, j] holds row b's entries from rank j * step on.
        step = stride or most
        padded = F.pad(cached, (0, width), value=-1)  # (B, C + L)
        windows = padded.unfold(1, width, step)[:, : -(-most // step)]  # (B, D, L)
        drops = torch.arange(windows.shape[1], device=device) * step  # (D,)
        same = (windows == context[:, None, :]).long()  # (B, D, L)
        runs = same.cumprod(dim=2).sum(dim=2)  # (B, D) leading matches
        whole = (runs == counts[:, None] - drops) & (runs > 0)  # every entry from d on matches
        score = runs + whole * (width + 1)  # (B, D) whole matches outrank partial ones
        best = score.argmax(dim=1, keepdim=True)  # (B, 1) the first best: the smallest d
        drop = drops[best[:, 0]]  # (B,)
        shared = runs.gather(1, best)[:, 0]  # (B,)
        kept = torch.minimum(shared, lengths - 1)  # (B,)
        self._compact(entries, drop, kept)
        return kept

    def _entry_columns(self, most: int) -> torch.Tensor:
        """(B, most) int64 column of each row's i-th entry (0 past the row's last entry)."""
        valid = self.valid[:, : self.length]  # (B, S)
        rank = valid.long().cumsum(dim=1) - 1  # (B, S) rank of each valid column
        columns = torch.zeros(self.batch_size, most + 1, dtype=torch.long, device=valid.device)
        source = torch.arange(self.length, device=valid.device).expand_as(rank)  # (B, S)
        # Invalid columns all land in the spare slot `most`, which is cut off.
        columns.scatter_(1, torch.where(valid, rank, most), source)
        return columns[:, :most]

    def _compact(self, entries: torch.Tensor, drop: torch.Tensor, kept: torch.Tensor) -> None:
        """Move entries ``drop_b .. drop_b + kept_b - 1`` of each row to end at column K."""
        last = int(kept.max())  # K
        if last == 0:
            self.reset()
            return
        target = torch.arange(last, device=kept.device)  # (K,)
        first = (last - kept)[:, None]  # (B, 1) column of each row's first kept entry
        lands = target >= first  # (B, K)
        rank = (drop[:, None] + target - first).clamp(0, entries.shape[1] - 1)  # (B, K)
        source = entries.gather(1, rank)  # (B, K) column each target column takes
        if bool(((source != target) & lands).any()):
            layers, _, heads, _, head_dim = self.keys.shape
            index = source[None, :, None, :, None].expand(layers, -1, heads, -1, head_dim)
            self.keys[:, :, :, :last] = self.keys.gather(3, index)  # (layers, B, h, K, hd)
            self.values[:, :, :, :last] = self.values.gather(3, index)
            self.ids[:, :last] = self.ids.gather(1, source)
            self.positions[:, :last] = self.positions.gather(1, source)
        self.valid[:, :last] = lands
        self.length = last

    def attention_mask(self, new_valid: torch.Tensor) -> torch.Tensor | None:
        """Which cached and new columns each new row attends to.

        Args:
            new_valid: (B, l) bool, False where a row has padding among the new columns.

        Returns:
            (B, 1, l, length + l) bool, or None where plain causal attention is exact (nothing
            cached and no padding, or a single new column and no padding).
        """
        start, new = self.length, new_valid.shape[1]
        keys_valid = torch.cat([self.valid[:, :start], new_valid], dim=1)  # (B, S)
        if (start == 0 or new == 1) and bool(keys_valid.all()):
            return None
        rows = torch.arange(start, start + new, device=new_valid.device)  # (l,)
        cols = torch.arange(start + new, device=new_valid.device)  # (S,)
        causal = cols[None, :] <= rows[:, None]  # (l, S)
        # A padding row attends to itself only: a softmax over nothing would give NaN, and NaN
        # values would leak into real rows through their zero attention weights.
        own = cols[None, :] == rows[:, None]  # (l, S)
        return (causal & (keys_valid[:, None, :] | own))[:, None]  # (B, 1, l, S)

    def write(
        self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store one layer's new keys/values at column ``start`` and return all columns so far.

        Args:
            layer: block index.
            start: column of the first new entry (the cache length before this step).
            k: (B, heads, l, head_dim) new keys (already rotated with rope); v: the same shape.

        Returns:
            keys, values: (B, heads, start + l, head_dim) each.
        """
        end = start + k.shape[2]
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def append(
        self, ids: torch.Tensor, valid: torch.Tensor, positions: torch.Tensor, task: torch.Tensor
    ) -> None:
        """Record the columns just written by every layer: ids, valid, positions (B, l), task."""
        end = self.length + ids.shape[1]
        self.ids[:, self.length : end] = ids
        self.valid[:, self.length : end] = valid
        self.positions[:, self.length : end] = positions
        self.length = end
        self.task = task.detach().clone()


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention through ``scaled_dot_product_attention``."""

    def __init__(self, config: TransformerConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer  # index into a KVCache
        self.num_heads = config.num_heads
        self.qkv = nn.Linear(config.dim, 3 * config.dim, bias=config.bias)
        self.proj = nn.Linear(config.dim, config.dim, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        start: int = 0,
    ) -> torch.Tensor:
        """Attend causally.

        Args:
            x: (B, l, D) the new columns' activations.
            rope: (cos, sin) from :func:`rotary_tables` for the new columns; None without rope.
            mask: (B or 1, 1, l, start + l) bool, True where attention is allowed; None for
                plain causal attention (required when several new columns follow cached ones).
            cache: keys/values of columns ``0..start-1``; None for a full-sequence pass.
            start: column of x's first row (0 without a cache).

        Returns:
            (B, l, D).
        """
        batch, length, dim = x.shape
        head_dim = dim // self.num_heads
        qkv = self.qkv(x).view(batch, length, 3, self.num_heads, head_dim)  # (B, l, 3, h, hd)
        qk = qkv[:, :, :2]  # (B, l, 2, h, hd)
        if rope is not None:
            # One rotation for queries and keys together: per-op overhead dominates decoding.
            qk = apply_rotary(qk, *rope).type_as(qkv)
        q, k, v = (t.transpose(1, 2) for t in (qk[:, :, 0], qk[:, :, 1], qkv[:, :, 2]))
        if cache is not None:
            k, v = cache.write(self.layer, start, k, v)  # (B, h, start + l, hd)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=mask is None and length > 1,  # a single new column sees every cached one
        )  # (B, h, l, hd)
        y = y.transpose(1, 2).contiguous().view(batch, length, dim)  # (B, l, D)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward block."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        hidden = config.mlp_ratio * config.dim
        self.fc = nn.Linear(config.dim, hidden, bias=config.bias)
        self.proj = nn.Linear(hidden, config.dim, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, l, D) to (B, l, D)."""
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: TransformerConfig, layer: int) -> None:
        super().__init__()
        self.ln_attn = nn.LayerNorm(config.dim, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_mlp = nn.LayerNorm(config.dim, bias=config.bias)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        start: int = 0,
    ) -> torch.Tensor:
        """Map (B, l, D) to (B, l, D); see :meth:`CausalSelfAttention.forward`."""
        x = x + self.attn(self.ln_attn(x), rope, mask, cache, start)
        return x + self.mlp(self.ln_mlp(x))


def sample_next(
    logits: torch.Tensor,
    vocab_range: tuple[int, int],
    temperature: float = 0.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample one id per row, only from the half-open range ``vocab_range``.

    Ids outside the range are never returned: the logits are cut to the range before sampling,
    so no masking value can leak probability mass.

    Args:
        logits: (B, V) next-token logits.
        vocab_range: ``(lo, hi)`` with ``0 <= lo < hi <= V``.
        temperature: 0 picks the most likely id (greedy); otherwise softmax(logits / temperature).
        top_k: sample only among the k most likely ids of the range; None for all of them.
        generator: random source for reproducible sampling.

    Returns:
        ids: (B,) int64 flat ids in ``[lo, hi)``.
    """
    lo, hi = vocab_range
    _check(logits.dim() == 2, "logits", f"expected (B, V), got shape {tuple(logits.shape)}")
    _check(
        0 <= lo < hi <= logits.shape[1],
        "vocab_range",
        f"({lo}, {hi}) is empty or outside [0, {logits.shape[1]}]",
    )
    _check(temperature >= 0.0, "temperature", f"{temperature} < 0")
    _check(top_k is None or top_k >= 1, "top_k", f"{top_k} < 1")
    scores = logits[:, lo:hi].float()  # (B, hi - lo)
    if temperature == 0.0:
        return scores.argmax(dim=1) + lo
    scores = scores / temperature
    if top_k is not None and top_k < scores.shape[1]:
        kth = torch.topk(scores, top_k, dim=1).values[:, -1:]  # (B, 1)
        scores = scores.masked_fill(scores < kth, float("-inf"))
    probs = F.softmax(scores, dim=1)  # (B, hi - lo)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1) + lo


class VideoTransformer(nn.Module):
    """GPT-style decoder over the flat vocabulary, conditioned on a learned task embedding.

    Input embedding = token embedding + task embedding (added at every position), plus, with
    ``positions="absolute"``, a learned position embedding absolute within a window of up to
    ``max_timesteps`` timesteps (training windows and control contexts both start at a timestep
    boundary). With ``positions="rope"`` there is no position table: queries and keys are
    rotated by their position, so attention depends only on offsets and a KV cache can slide
    with the control window (:class:`KVCache`). The output head is not tied to the token
    embedding, so the state dict holds no shared tensors and ``safetensors.torch.save_file``
    accepts it as is.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.layout = config.layout
        self.rope = config.positions == "rope"
        vocab = self.layout.vocab_size
        self.token_embedding = nn.Embedding(vocab, config.dim)
        self.position_embedding = None if self.rope else nn.Embedding(config.block_size, config.dim)
        self.task_embedding = nn.Embedding(config.num_tasks, config.dim)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.num_layers))
        self.ln_final = nn.LayerNorm(config.dim, bias=config.bias)
        self.head = nn.Linear(config.dim, vocab, bias=False)
        self.apply(self._init_weights)
        # GPT-2: scale residual projections so the residual stream's variance does not grow
        # with depth.
        for name, param in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.num_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Parameter count; optionally without the token/position/task embedding tables."""
        total = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            for table in (self.token_embedding, self.position_embedding, self.task_embedding):
                total -= table.weight.numel() if table is not None else 0
        return total

    # ---- full-sequence pass (training) ----

    def forward(
        self,
        ids: torch.Tensor,
        task: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        window: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Next-token logits for a window starting at a timestep boundary.

        Args:
            ids: (B, L) int64 flat ids; L <= block_size with absolute positions.
            task: (B,) int64 task ids in ``[0, num_tasks)``.
            targets: (B, L) int64 next-token targets with :data:`IGNORE_INDEX` where the loss
                skips (see :meth:`SequenceLayout.targets`); None to skip the loss.
            window: None for plain causal attention; else each id attends only to the ids of
                its own timestep and the ``window - 1`` before it, at every layer. That is what
                control with a sliding rope cache computes (:class:`KVCache`), so training on
                sequences longer than ``window`` timesteps with it makes control match training.

        Returns:
            logits: (B, L, V), and loss: scalar mean cross entropy over counted targets, or None.
        """
        self._check_inputs(ids, task)
        length = ids.shape[1]
        positions = torch.arange(length, device=ids.device)[None]  # (1, L)
        self._check_positions(length)
        mask = None
        if window is not None:
            _check(window >= 1, "window", f"{window} < 1")
            step = positions[0] // self.layout.step_len  # (L,) timestep of each id
            causal = positions[0][None, :] <= positions[0][:, None]  # (L, L)
            mask = causal & (step[:, None] - step[None, :] < window)  # (L, L)
        x = self._embed(ids, task, positions)  # (B, L, D)
        rope = self._rotary(positions)
        for block in self.blocks:
            x = block(x, rope, mask)
        logits = self.head(self.ln_final(x))  # (B, L, V)
        if targets is None:
            return logits, None
        _check(
            targets.shape == ids.shape,
            "targets",
            f"expected shape {tuple(ids.shape)}, got {tuple(targets.shape)}",
        )
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(),  # (B * L, V)
            targets.reshape(-1),  # (B * L,)
            ignore_index=IGNORE_INDEX,
        )
        return logits, loss

    # ---- incremental decoding (control) ----

    def make_cache(
        self,
        batch_size: int,
        capacity: int | None = None,
        dtype: torch.dtype | None = None,
        *,
        slide: bool | None = None,
    ) -> KVCache:
        """An empty KV cache on the model's device.

        Args:
            batch_size: rows decoded together.
            capacity: columns it holds; defaults to ``block_size``, which a control window of
                ``max_timesteps`` never outgrows (one row, or rows that advance together).
                Absolute positions refuse more than ``block_size``. Generation grows the cache
                when rows at different points need more columns side by side.
            dtype: storage dtype; defaults to the parameters' dtype.
            slide: let generation drop a row's oldest timesteps and keep the rest (see
                :class:`KVCache` for what that computes); defaults to True with rope. Absolute
                positions cannot slide.
        """
        capacity = self.config.block_size if capacity is None else capacity
        _check(capacity >= 1, "capacity", f"{capacity} < 1")
        _check(
            self.rope or capacity <= self.config.block_size,
            "capacity",
            f"{capacity} exceeds block_size={self.config.block_size} (absolute positions)",
        )
        slide = self.rope if slide is None else slide
        _check(self.rope or not slide, "slide", "needs positions='rope'")
        param = self.head.weight
        return KVCache(
            num_layers=self.config.num_layers,
            batch_size=batch_size,
            num_heads=self.config.num_heads,
            head_dim=self.config.dim // self.config.num_heads,
            capacity=capacity,
            device=param.device,
            dtype=param.dtype if dtype is None else dtype,
            slide=slide,
        )

    @torch.no_grad()
    def forward_incremental(
        self, ids_new: torch.Tensor, task: torch.Tensor, cache: KVCache
    ) -> torch.Tensor:
        """Feed new ids after those already cached, and append their keys/values to the cache.

        Inference only (no gradients; call ``eval()`` first so dropout is off).

        Args:
            ids_new: (B, l) int64 ids, at positions that continue each row's cached ones.
            task: (B,) int64 task ids; must equal the task of rows that hold entries.
            cache: from :meth:`make_cache`; updated in place.

        Returns:
            logits: (B, l, V) for the new ids, equal to those of a full :meth:`forward` of the
            cached ids and these (``window=`` the contexts' timesteps once a cache has slid).
        """
        self._check_inputs(ids_new, task)
        _check(
            ids_new.shape[0] == cache.batch_size,
            "ids_new",
            f"batch {ids_new.shape[0]} differs from the cache's {cache.batch_size}",
        )
        offsets = torch.arange(ids_new.shape[1], device=cache.ids.device)  # (l,)
        positions = cache.next_positions()[:, None] + offsets  # (B, l)
        valid = torch.ones(ids_new.shape, dtype=torch.bool, device=cache.ids.device)
        return self._feed(ids_new, task, cache, valid, positions)

    @torch.no_grad()
    def forward_context(
        self,
        context_ids: torch.Tensor,
        task: torch.Tensor,
        cache: KVCache,
        lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Bring the cache to ``context_ids`` and return the logits after each row's last id.

        Keeps what each row's context shares with its cached entries (:meth:`KVCache.reuse`:
        a prefix, or with a sliding cache the entries left after dropping the oldest whole
        timesteps), forgets the rest and feeds only the ids not kept. Rows whose task differs
        from their cached one start over. Grows the cache when rows need more columns.

        Args:
            context_ids: (B, L) int64, a context starting at a timestep boundary per row,
                right-aligned: row b's ids are ``context_ids[b, L - lengths[b]:]`` and what lies
                left of them is ignored.
            task: (B,) int64 task ids.
            cache: from :meth:`make_cache`, updated in place; row b must always hold row b's
                stream (the same env), and :meth:`KVCache.reset_rows` forgets a row.
            lengths: (B,) int64 ids per row; None when every row fills all L columns.

        Returns:
            logits: (B, V) after each row's last id.
        """
        self._check_inputs(context_ids, task)
        batch, width = context_ids.shape
        _check(
            batch == cache.batch_size,
            "cache",
            f"batch {cache.batch_size} differs from the context's {batch}",
        )
        lengths = self._checked_lengths(context_ids, lengths).to(cache.ids.device)
        task = task.to(cache.ids.device)
        if cache.task is not None:
            cache.reset_rows(cache.task != task)
        stride = self.layout.step_len if cache.slide else None
        kept = cache.reuse(context_ids, lengths, stride)  # (B,)
        fresh = lengths - kept  # (B,) ids each row feeds, at least 1
        count = int(fresh.max())
        cache.ensure_capacity(cache.length + count)
        offsets = torch.arange(count, device=cache.ids.device) - (count - fresh)[:, None]  # (B, n)
        valid = offsets >= 0  # (B, n) rows with fewer new ids are padded on the left
        positions = (cache.next_positions()[:, None] + offsets).clamp(min=0)  # (B, n)
        ids_new = context_ids[:, width - count :].to(cache.ids.device).masked_fill(~valid, 0)
        return self._feed(ids_new, task, cache, valid, positions)[:, -1]  # (B, V)

    @torch.no_grad()
    def generate_codes(
        self,
        context_ids: torch.Tensor,
        task: torch.Tensor,
        horizon: int | None = None,
        *,
        cache: KVCache | None = None,
        lengths: torch.Tensor | None = None,
        temperature: float = 0.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample the current timestep's codes, restricted to the code range.

        Batched control (one call for B envs at different points of their episodes): lay
        each env's context out with :meth:`SequenceLayout.build_context`, stack them with
        :func:`pad_left` and pass ``lengths``; keep one cache for all envs, row b always for env
        b, and call ``cache.reset_rows([b])`` when env b starts a new episode. Each row then
        gets the codes it would get alone with its own cache (up to float rounding).

        Args:
            context_ids: (B, L) int64, per row whole timesteps then ``[frame tokens of x_t][SEP]``
                (see :meth:`SequenceLayout.build_context`), right-aligned when ``lengths`` is
                given.
            task: (B,) int64 task ids.
            horizon: codes to sample, 1..layout.horizon; None for all of them.
            cache: reused as in :meth:`forward_context`; None decodes with a temporary cache.
                A sliding cache is also fed the last sampled code, so it ends every call
                holding whole timesteps and the next context (slid by whole timesteps) adds
                only the new frame.
            lengths: (B,) int64 ids per row (see :meth:`forward_context`); None when every row
                fills all L columns.
            temperature: 0 for greedy, else the sampling temperature.
            top_k: sample among the k most likely codes; None for all.
            generator: random source for reproducible sampling.

        Returns:
            codes: (B, horizon) int64 code indices in ``[0, code_vocab)``.
        """
        layout = self.layout
        _check(layout.horizon > 0, "horizon", "this model was built without codes (horizon=0)")
        horizon = layout.horizon if horizon is None else horizon
        _check(1 <= horizon <= layout.horizon, "horizon", f"must be in [1, {layout.horizon}]")
        _check(context_ids.dim() == 2, "context_ids", "expected (B, L)")
        lengths = self._checked_lengths(context_ids, lengths)
        _check(
            bool((lengths % layout.step_len == layout.num_frame_tokens + 1).all())
            and bool((context_ids[:, -1] == layout.sep_id).all()),
            "context_ids",
            "must be whole timesteps then [frame tokens][SEP]",
        )
        ids = self._generate(
            context_ids,
            lengths,
            task,
            horizon,
            layout.code_range,
            cache,
            temperature,
            top_k,
            generator,
            continues=True,
        )
        return ids - layout.code_range[0]

    @torch.no_grad()
    def generate_frame_tokens(
        self,
        context_ids: torch.Tensor,
        task: torch.Tensor,
        *,
        cache: KVCache | None = None,
        lengths: torch.Tensor | None = None,
        temperature: float = 0.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample the next frame's tokens, restricted to the frame range.

        For the no-LDM ablation (``horizon=0``) the context ends with ``[tokens of x_t][SEP]``;
        with codes it ends with ``z_t`` (the plan to show). Either way it is whole timesteps.

        Args:
            context_ids: (B, L) int64, whole timesteps per row (right-aligned with ``lengths``).
            task: (B,) int64 task ids.
            cache: reused as in :meth:`forward_context`; None decodes with a temporary cache.
                A sliding cache forgets the sampled tokens again (the observed frame that
                follows replaces them), so it ends holding exactly the context.
            lengths: (B,) int64 ids per row; None when every row fills all L columns.
            temperature: 0 for greedy, else the sampling temperature.
            top_k: sample among the k most likely tokens; None for all.
            generator: random source for reproducible sampling.

        Returns:
            tokens: (B, N) int64 frame tokens in ``[0, frame_vocab)``.
        """
        layout = self.layout
        _check(context_ids.dim() == 2, "context_ids", "expected (B, L)")
        lengths = self._checked_lengths(context_ids, lengths)
        _check(
            bool((lengths % layout.step_len == 0).all()),
            "context_ids",
            f"must be whole timesteps (a positive multiple of step_len={layout.step_len})",
        )
        return self._generate(
            context_ids,
            lengths,
            task,
            layout.num_frame_tokens,
            layout.frame_range,
            cache,
            temperature,
            top_k,
            generator,
            continues=False,
        )

    # ---- internals ----

    def _generate(
        self,
        context_ids: torch.Tensor,
        lengths: torch.Tensor,
        task: torch.Tensor,
        count: int,
        vocab_range: tuple[int, int],
        cache: KVCache | None,
        temperature: float,
        top_k: int | None,
        generator: torch.Generator | None,
        continues: bool,
    ) -> torch.Tensor:
        """Sample ``count`` ids in ``vocab_range`` after each row's context; (B, count).

        ``continues``: the sampled ids start the next context (codes do; a predicted frame is
        replaced by the observed one). A sliding cache is then fed the last one too, or else
        forgets them all, so it ends holding exactly what the next context starts with and
        every id it keeps was computed against the window of its own timestep.
        """
        batch = context_ids.shape[0]
        # The last sampled id is never needed for sampling: the window holds L + count - 1.
        needed = int(lengths.max()) + count - 1
        _check(
            self.rope or needed <= self.config.block_size,
            "context_ids",
            f"{needed - count + 1} ids + {count} to sample exceed "
            f"block_size={self.config.block_size}; drop the oldest timesteps",
        )
        slide = cache is not None and cache.slide
        if cache is None:
            cache = self.make_cache(batch, capacity=needed, slide=False)
        logits = self.forward_context(context_ids, task, cache, lengths)  # (B, V)
        context_end = cache.length
        feed_last = slide and continues
        cache.ensure_capacity(context_end + count - 1 + feed_last)
        sampled = []
        for i in range(count):
            next_ids = sample_next(logits, vocab_range, temperature, top_k, generator)  # (B,)
            sampled.append(next_ids)
            if i + 1 < count or feed_last:
                logits = self.forward_incremental(next_ids[:, None], task, cache)[:, -1]
        if slide and not continues:
            cache.truncate(context_end)
        return torch.stack(sampled, dim=1)  # (B, count)

    def _feed(
        self,
        ids: torch.Tensor,
        task: torch.Tensor,
        cache: KVCache,
        valid: torch.Tensor,
        positions: torch.Tensor,
    ) -> torch.Tensor:
        """Run ids (B, l) at positions (B, l), padding where valid (B, l) is False, after the
        cached columns and append them to the cache; logits (B, l, V)."""
        start = cache.length
        _check(
            start + ids.shape[1] <= cache.capacity,
            "cache",
            f"full: {start} cached + {ids.shape[1]} new columns exceed capacity "
            f"{cache.capacity}; slide the window (drop the oldest timesteps) or reset it",
        )
        if not self.rope:
            self._check_positions(int(positions.max()) + 1)
        task = task.to(cache.ids.device)
        if cache.task is not None and not torch.equal(cache.task, task):
            holds = cache.valid[:, :start].any(dim=1)  # (B,) rows with cached entries
            _check(
                not bool((holds & (cache.task != task)).any()),
                "task",
                "differs from the task the cache was filled with; reset the cache first",
            )
        mask = cache.attention_mask(valid)  # (B, 1, l, start + l) or None
        x = self._embed(ids, task, positions)  # (B, l, D)
        rope = self._rotary(positions)
        for block in self.blocks:
            x = block(x, rope, mask, cache, start)
        cache.append(ids, valid, positions, task)
        return self.head(self.ln_final(x))  # (B, l, V)

    def _check_inputs(self, ids: torch.Tensor, task: torch.Tensor) -> None:
        _check(ids.dim() == 2, "ids", f"expected (B, L), got shape {tuple(ids.shape)}")
        _check(ids.shape[1] >= 1, "ids", "is empty")
        _check(
            tuple(task.shape) == (ids.shape[0],),
            "task",
            f"expected shape ({ids.shape[0]},), got {tuple(task.shape)}",
        )

    def _check_positions(self, end: int) -> None:
        """Absolute positions stop at the table's end; rotary ones have no end."""
        _check(
            self.rope or end <= self.config.block_size,
            "ids",
            f"positions up to {end - 1} exceed block_size={self.config.block_size} "
            f"(max_timesteps={self.config.max_timesteps})",
        )

    def _checked_lengths(
        self, context_ids: torch.Tensor, lengths: torch.Tensor | None
    ) -> torch.Tensor:
        """(B,) int64 ids per right-aligned row; the full width when ``lengths`` is None."""
        batch, width = context_ids.shape
        if lengths is None:
            return torch.full((batch,), width, dtype=torch.long, device=context_ids.device)
        lengths = torch.as_tensor(lengths, dtype=torch.long, device=context_ids.device)
        _check(
            tuple(lengths.shape) == (batch,),
            "lengths",
            f"expected shape ({batch},), got {tuple(lengths.shape)}",
        )
        _check(
            bool(((lengths >= 1) & (lengths <= width)).all()),
            "lengths",
            f"values must lie in [1, {width}] (the context's width)",
        )
        return lengths

    def _embed(
        self, ids: torch.Tensor, task: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        """Token (+ absolute position) + task embeddings of ids (B, l) at positions (B or 1, l);
        (B, l, D)."""
        x = self.token_embedding(ids)  # (B, l, D)
        if self.position_embedding is not None:
            x = x + self.position_embedding(positions)  # (B or 1, l, D) broadcast
        x = x + self.task_embedding(task.to(ids.device))[:, None, :]  # (B, 1, D) broadcast
        return self.dropout(x)

    def _rotary(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Rotary tables for positions (B or 1, l), or None with absolute positions."""
        if not self.rope:
            return None
        head_dim = self.config.dim // self.config.num_heads
        return rotary_tables(positions, head_dim, self.head.weight.dtype)
