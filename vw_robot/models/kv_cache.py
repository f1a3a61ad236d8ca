"""The key/value cache of incremental decoding: what the control loop keeps between steps.

Per layer, the keys and values of the ids fed so far, with each column's id, position and a
per-row valid mask, so envs at different points of their episodes decode in one batch. A new
context reuses what it shares with the cache (a prefix, or with rotary positions the entries
left after sliding the window by whole timesteps) and feeds only the rest.
:class:`KVCache` says exactly what each kind of reuse computes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
      (:meth:`~vw_robot.models.transformer.VideoTransformer.forward` with ``window=W``):
      Transformer-XL / sliding-window attention. Call :meth:`reset_rows` when a row's episode
      restarts, or that history would leak into the new one.
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
