"""The autoregressive video transformer: a GPT-style decoder over frame tokens and latent codes.

It reads the flat id sequence of :mod:`vw_robot.models.sequence_layout`, per timestep
``[N frame tokens of x_t][SEP][H codes z_t]``, and learns p(x_t) frame by frame and, after each
SEP, the H codes that summarise how the scene changes over the next H frames. Control feeds the
observed frame, then samples the H codes restricted to the code range
(:meth:`VideoTransformer.generate_codes`). The no-LDM ablation is the same model with
``horizon=0``: per timestep ``[x_t][SEP]``, and after a SEP it must predict the next frame's
tokens (:meth:`VideoTransformer.generate_frame_tokens`).

The task conditions every position: its learned embedding is added to each token embedding.
Nothing is prepended, so windows keep their timestep-aligned layout, the KV cache needs no
special first entry, and a window that slides keeps its task.

Positions are either a learned absolute table (``positions="absolute"``, the checkpoints made
before rope) or rotary (``positions="rope"``, :mod:`vw_robot.models.rotary`). With rope
attention sees only offsets, so the control loop's KV cache (:mod:`vw_robot.models.kv_cache`)
slides with its window: each step drops the oldest timestep and feeds only the new frame
(:class:`KVCache` says exactly what that computes). The cache keeps per-row masks and
positions, so envs at different points of their episodes decode in one batch
(:meth:`VideoTransformer.generate_codes` with ``lengths``).

The layout, cache and rotary names are re-exported here, so ``from vw_robot.models.transformer
import SequenceLayout, KVCache, pad_left`` keeps working.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from vw_robot.models.kv_cache import KVCache
from vw_robot.models.rotary import ROPE_BASE, apply_rotary, rotary_tables
from vw_robot.models.sequence_layout import IGNORE_INDEX, SequenceLayout, pad_left

__all__ = [
    "IGNORE_INDEX",
    "POSITIONS",
    "ROPE_BASE",
    "Block",
    "CausalSelfAttention",
    "KVCache",
    "MLP",
    "SequenceLayout",
    "TransformerConfig",
    "VideoTransformer",
    "apply_rotary",
    "pad_left",
    "rotary_tables",
    "sample_next",
]

POSITIONS = ("absolute", "rope")  # the position schemes TransformerConfig.positions accepts


def _check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ValueError(f"{key}: {message}")


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
        mask = self._window_mask(positions[0], window)  # (L, L) or None
        x = self._embed(ids, task, positions)  # (B, L, D)
        rope = self._rotary(positions)
        for block in self.blocks:
            x = block(x, rope, mask)
        logits = self.head(self.ln_final(x))  # (B, L, V)
        if targets is None:
            return logits, None
        return logits, self._loss(logits, targets)

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

    def _window_mask(self, positions: torch.Tensor, window: int | None) -> torch.Tensor | None:
        """(L, L) bool: id i attends to id j <= i of its own timestep or the ``window - 1``
        before it; None (plain causal attention) when ``window`` is None.

        Args:
            positions: (L,) int64 positions of a window starting at a timestep boundary.
            window: timesteps each id sees, or None.
        """
        if window is None:
            return None
        _check(window >= 1, "window", f"{window} < 1")
        step = positions // self.layout.step_len  # (L,) timestep of each id
        causal = positions[None, :] <= positions[:, None]  # (L, L)
        return causal & (step[:, None] - step[None, :] < window)  # (L, L)

    @staticmethod
    def _loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross entropy of logits (B, L, V) over the counted targets (B, L); scalar."""
        _check(
            targets.shape == logits.shape[:2],
            "targets",
            f"expected shape {tuple(logits.shape[:2])}, got {tuple(targets.shape)}",
        )
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(),  # (B * L, V)
            targets.reshape(-1),  # (B * L,)
            ignore_index=IGNORE_INDEX,
        )

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
