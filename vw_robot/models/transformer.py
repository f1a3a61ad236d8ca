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

The task conditions every position: its learned embedding is added to each token embedding,
next to the position embedding. Nothing is prepended, so windows keep their timestep-aligned
layout, the KV cache needs no special first entry, and a window that slides keeps its task.
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
    """

    num_frame_tokens: int = 64  # N tokens per frame: the tokenizer's (S/f)^2 grid, 64 for 64px/f8
    frame_vocab: int = 1000  # tokenizer codebook size (FSQ levels [8,5,5,5] give 1000)
    horizon: int = 4  # H codes per timestep; 0 is the no-LDM ablation (no codes at all)
    code_vocab: int = 1000  # latent dynamics model codebook size; unused when horizon is 0

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
    def vocab_size(self) -> int:
        """Size of the flat vocabulary: frame tokens, codes, SEP."""
        return self.sep_id + 1

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
            ids: (B, T * step_len - H) int64, ending with ``[tokens of x_{T-1}][SEP]``.
        """
        self._check_tokens(tokens)
        batch, steps, _ = tokens.shape
        past = self._checked_codes(codes, batch, steps - 1, tokens.device)
        # A placeholder code row for the last step is laid out, then cut off.
        dummy = torch.zeros(batch, 1, self.horizon, dtype=torch.long, device=tokens.device)
        ids = self._lay_out(tokens, torch.cat([past, dummy], dim=1))  # (B, T * step_len)
        return ids[:, : ids.shape[1] - self.horizon]

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
    max_timesteps: int = 4  # T, timesteps per window; fixes the learned position table's size
    num_tasks: int = 1  # rows of the learned task embedding (task ids 0..num_tasks-1)

    def __post_init__(self) -> None:
        self.validate()

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

    @property
    def block_size(self) -> int:
        """Most ids the model attends over: ``max_timesteps * step_len``."""
        return self.layout.seq_len(self.max_timesteps)


class KVCache:
    """Per-layer keys and values of the ids fed so far, for incremental decoding.

    The cache also remembers the ids and the task it was filled with, so generation can reuse
    the longest prefix it shares with a new context and recompute only the rest. It never
    grows past ``capacity``: a full window must be slid by the caller (drop the oldest
    timesteps and generate again; the prefix then no longer matches and the window is
    re-prefilled, because positions are absolute within a window).
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
    ) -> None:
        shape = (batch_size, num_heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.ids = torch.zeros(batch_size, capacity, dtype=torch.long, device=device)
        self.task: torch.Tensor | None = None  # (B,) task ids of the cached entries
        self.batch_size = batch_size
        self.capacity = capacity
        self.length = 0  # ids cached so far, the same for every row

    def reset(self) -> None:
        """Forget everything (start of an episode or a subtask)."""
        self.length = 0
        self.task = None

    def truncate(self, length: int) -> None:
        """Keep only the first ``length`` cached ids (older entries stay valid)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"length: {length} is outside [0, {self.length}]")
        self.length = length
        if length == 0:
            self.task = None

    def common_prefix(self, ids: torch.Tensor) -> int:
        """Length of the longest prefix that every row of ``ids`` (B, L) shares with the cache."""
        n = min(self.length, ids.shape[1])
        same = (self.ids[:, :n] == ids[:, :n].to(self.ids.device)).all(dim=0)  # (n,)
        mismatch = (~same).nonzero()
        return int(mismatch[0]) if len(mismatch) else n

    def write(
        self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store one layer's new keys/values at ``start`` and return all keys/values so far.

        Args:
            layer: block index.
            start: position of the first new entry (the cache length before this step).
            k: (B, heads, l, head_dim) new keys; v: the same shape, new values.

        Returns:
            keys, values: (B, heads, start + l, head_dim) each.
        """
        end = start + k.shape[2]
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self, ids: torch.Tensor, task: torch.Tensor) -> None:
        """Record the ids (B, l) just written by every layer, and their task (B,)."""
        end = self.length + ids.shape[1]
        self.ids[:, self.length : end] = ids
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
        self, x: torch.Tensor, cache: KVCache | None = None, start: int = 0
    ) -> torch.Tensor:
        """Attend causally.

        Args:
            x: (B, l, D) the new positions' activations.
            cache: keys/values of positions ``0..start-1``; None for a full-sequence pass.
            start: position of x's first row (0 without a cache).

        Returns:
            (B, l, D).
        """
        batch, length, dim = x.shape
        head_dim = dim // self.num_heads
        q, k, v = self.qkv(x).split(dim, dim=2)
        q = q.view(batch, length, self.num_heads, head_dim).transpose(1, 2)  # (B, h, l, hd)
        k = k.view(batch, length, self.num_heads, head_dim).transpose(1, 2)  # (B, h, l, hd)
        v = v.view(batch, length, self.num_heads, head_dim).transpose(1, 2)  # (B, h, l, hd)
        mask = None
        is_causal = length > 1  # a single new position may see every cached one
        if cache is not None:
            k, v = cache.write(self.layer, start, k, v)  # (B, h, start + l, hd)
            if start > 0 and length > 1:
                # SDPA's is_causal aligns the square mask top-left; new rows sit bottom-right.
                rows = torch.arange(start, start + length, device=x.device)
                cols = torch.arange(start + length, device=x.device)
                mask = cols[None, :] <= rows[:, None]  # (l, start + l)
                is_causal = False
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal,
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
        self, x: torch.Tensor, cache: KVCache | None = None, start: int = 0
    ) -> torch.Tensor:
        """Map (B, l, D) to (B, l, D); see :meth:`CausalSelfAttention.forward`."""
        x = x + self.attn(self.ln_attn(x), cache, start)
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

    Input embedding = token embedding + learned position embedding + task embedding (added at
    every position). Position embeddings are absolute within a window of up to
    ``max_timesteps`` timesteps; training windows and control contexts both start at a
    timestep boundary. The output head is not tied to the token embedding, so the state dict
    holds no shared tensors and ``safetensors.torch.save_file`` accepts it as is.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.layout = config.layout
        vocab = self.layout.vocab_size
        self.token_embedding = nn.Embedding(vocab, config.dim)
        self.position_embedding = nn.Embedding(config.block_size, config.dim)
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
                total -= table.weight.numel()
        return total

    # ---- full-sequence pass (training) ----

    def forward(
        self, ids: torch.Tensor, task: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Next-token logits for a window starting at a timestep boundary.

        Args:
            ids: (B, L) int64 flat ids, L <= block_size.
            task: (B,) int64 task ids in ``[0, num_tasks)``.
            targets: (B, L) int64 next-token targets with :data:`IGNORE_INDEX` where the loss
                skips (see :meth:`SequenceLayout.targets`); None to skip the loss.

        Returns:
            logits: (B, L, V), and loss: scalar mean cross entropy over counted targets, or None.
        """
        self._check_inputs(ids, task, start=0)
        x = self._embed(ids, task, start=0)  # (B, L, D)
        for block in self.blocks:
            x = block(x)
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
        self, batch_size: int, capacity: int | None = None, dtype: torch.dtype | None = None
    ) -> KVCache:
        """An empty KV cache on the model's device.

        Args:
            batch_size: rows decoded together.
            capacity: most ids it holds; defaults to (and may not exceed) ``block_size``.
            dtype: storage dtype; defaults to the parameters' dtype.
        """
        capacity = self.config.block_size if capacity is None else capacity
        _check(
            1 <= capacity <= self.config.block_size,
            "capacity",
            f"{capacity} is outside [1, block_size={self.config.block_size}]",
        )
        param = self.head.weight
        return KVCache(
            num_layers=self.config.num_layers,
            batch_size=batch_size,
            num_heads=self.config.num_heads,
            head_dim=self.config.dim // self.config.num_heads,
            capacity=capacity,
            device=param.device,
            dtype=param.dtype if dtype is None else dtype,
        )

    @torch.no_grad()
    def forward_incremental(
        self, ids_new: torch.Tensor, task: torch.Tensor, cache: KVCache
    ) -> torch.Tensor:
        """Feed new ids after those already cached, and append their keys/values to the cache.

        Inference only (no gradients; call ``eval()`` first so dropout is off).

        Args:
            ids_new: (B, l) int64 ids at positions ``cache.length .. cache.length + l - 1``.
            task: (B,) int64 task ids; must equal the cached entries' task.
            cache: from :meth:`make_cache`; updated in place.

        Returns:
            logits: (B, l, V) for the new positions, equal to those of a full :meth:`forward`.
        """
        start = cache.length
        self._check_inputs(ids_new, task, start=start)
        _check(
            ids_new.shape[0] == cache.batch_size,
            "ids_new",
            f"batch {ids_new.shape[0]} differs from the cache's {cache.batch_size}",
        )
        _check(
            start + ids_new.shape[1] <= cache.capacity,
            "cache",
            f"full: {start} cached + {ids_new.shape[1]} new ids exceed capacity "
            f"{cache.capacity}; slide the window (drop the oldest timesteps) or reset it",
        )
        _check(
            cache.task is None or torch.equal(cache.task, task.to(cache.task.device)),
            "task",
            "differs from the task the cache was filled with; reset the cache first",
        )
        x = self._embed(ids_new, task, start=start)  # (B, l, D)
        for block in self.blocks:
            x = block(x, cache, start)
        cache.advance(ids_new, task)
        return self.head(self.ln_final(x))  # (B, l, V)

    @torch.no_grad()
    def generate_codes(
        self,
        context_ids: torch.Tensor,
        task: torch.Tensor,
        horizon: int | None = None,
        *,
        cache: KVCache | None = None,
        temperature: float = 0.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample the current timestep's codes, restricted to the code range.

        Args:
            context_ids: (B, L) int64, whole timesteps then ``[frame tokens of x_t][SEP]``
                (see :meth:`SequenceLayout.build_context`).
            task: (B,) int64 task ids.
            horizon: codes to sample, 1..layout.horizon; None for all of them.
            cache: reused where its cached ids are a prefix of ``context_ids`` (the rest is
                fed and appended); None decodes with a temporary cache.
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
        _check(
            context_ids.shape[1] % layout.step_len == layout.num_frame_tokens + 1
            and bool((context_ids[:, -1] == layout.sep_id).all()),
            "context_ids",
            "must be whole timesteps then [frame tokens][SEP]",
        )
        ids = self._generate(
            context_ids, task, horizon, layout.code_range, cache, temperature, top_k, generator
        )
        return ids - layout.code_range[0]

    @torch.no_grad()
    def generate_frame_tokens(
        self,
        context_ids: torch.Tensor,
        task: torch.Tensor,
        *,
        cache: KVCache | None = None,
        temperature: float = 0.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample the next frame's tokens, restricted to the frame range.

        For the no-LDM ablation (``horizon=0``) the context ends with ``[tokens of x_t][SEP]``;
        with codes it ends with ``z_t`` (the plan to show). Either way it is whole timesteps.

        Args:
            context_ids: (B, L) int64, whole timesteps (L a multiple of step_len).
            task: (B,) int64 task ids.
            cache: reused as in :meth:`generate_codes`; None decodes with a temporary cache.
            temperature: 0 for greedy, else the sampling temperature.
            top_k: sample among the k most likely tokens; None for all.
            generator: random source for reproducible sampling.

        Returns:
            tokens: (B, N) int64 frame tokens in ``[0, frame_vocab)``.
        """
        layout = self.layout
        _check(context_ids.dim() == 2, "context_ids", "expected (B, L)")
        _check(
            context_ids.shape[1] > 0 and context_ids.shape[1] % layout.step_len == 0,
            "context_ids",
            f"must be whole timesteps (a positive multiple of step_len={layout.step_len})",
        )
        return self._generate(
            context_ids,
            task,
            layout.num_frame_tokens,
            layout.frame_range,
            cache,
            temperature,
            top_k,
            generator,
        )

    # ---- internals ----

    def _generate(
        self,
        context_ids: torch.Tensor,
        task: torch.Tensor,
        count: int,
        vocab_range: tuple[int, int],
        cache: KVCache | None,
        temperature: float,
        top_k: int | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """Sample ``count`` ids in ``vocab_range`` after ``context_ids`` (B, L); (B, count)."""
        batch, length = context_ids.shape
        # The last sampled id is never fed, so the window must hold L + count - 1 ids.
        needed = length + count - 1
        _check(
            needed <= self.config.block_size,
            "context_ids",
            f"{length} ids + {count} to sample exceed block_size={self.config.block_size}; "
            "drop the oldest timesteps",
        )
        if cache is None:
            cache = self.make_cache(batch, capacity=needed)
        _check(
            cache.batch_size == batch,
            "cache",
            f"batch {cache.batch_size} differs from the context's {batch}",
        )
        _check(
            needed <= cache.capacity,
            "cache",
            f"capacity {cache.capacity} < {needed} ids needed; make a larger cache",
        )
        if cache.task is not None and not torch.equal(cache.task, task.to(cache.task.device)):
            cache.reset()
        # Reuse what the cache shares with the context; at least the last id must be fed again
        # to get the logits that follow it.
        keep = min(cache.common_prefix(context_ids), length - 1)
        cache.truncate(keep)
        logits = self.forward_incremental(context_ids[:, keep:], task, cache)[:, -1]  # (B, V)
        sampled = []
        for i in range(count):
            next_ids = sample_next(logits, vocab_range, temperature, top_k, generator)  # (B,)
            sampled.append(next_ids)
            if i + 1 < count:
                logits = self.forward_incremental(next_ids[:, None], task, cache)[:, -1]
        return torch.stack(sampled, dim=1)  # (B, count)

    def _check_inputs(self, ids: torch.Tensor, task: torch.Tensor, start: int) -> None:
        _check(ids.dim() == 2, "ids", f"expected (B, L), got shape {tuple(ids.shape)}")
        _check(
            ids.shape[1] >= 1 and start + ids.shape[1] <= self.config.block_size,
            "ids",
            f"positions {start}..{start + ids.shape[1] - 1} exceed "
            f"block_size={self.config.block_size} (max_timesteps={self.config.max_timesteps})",
        )
        _check(
            tuple(task.shape) == (ids.shape[0],),
            "task",
            f"expected shape ({ids.shape[0]},), got {tuple(task.shape)}",
        )

    def _embed(self, ids: torch.Tensor, task: torch.Tensor, start: int) -> torch.Tensor:
        """Token + position + task embeddings of ids (B, l) at positions start..; (B, l, D)."""
        positions = torch.arange(start, start + ids.shape[1], device=ids.device)  # (l,)
        x = self.token_embedding(ids) + self.position_embedding(positions)  # (B, l, D)
        x = x + self.task_embedding(task.to(ids.device))[:, None, :]  # (B, 1, D) broadcast
        return self.dropout(x)
