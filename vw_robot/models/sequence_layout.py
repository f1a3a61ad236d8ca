"""How frames and codes are laid out as one flat id sequence: the transformer's vocabulary.

One flat vocabulary holds three kinds of ids::

    [0, frame_vocab)                          frame tokens (the tokenizer's FSQ indices)
    [frame_vocab, frame_vocab + code_vocab)   latent codes (the latent dynamics model's indices)
    frame_vocab + code_vocab                  SEP, which ends every frame

and every timestep t of a window of T timesteps is laid out as::

    [N frame tokens of x_t][SEP][H codes z_t]

so the model learns p(x_t) frame by frame and, after each SEP, the H codes that summarise how
the scene changes over the next H frames. The no-LDM ablation is the same layout with
``horizon=0``: per timestep ``[x_t][SEP]``.

Data preparation, training and control all go through :class:`SequenceLayout` (build a window,
its loss targets, a control context) and :func:`pad_left` (stack contexts of different lengths
for batched generation), so the three never disagree about where an id sits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

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
        """Next-token targets for :meth:`~vw_robot.models.transformer.VideoTransformer.forward`.

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


def pad_left(rows: list[torch.Tensor], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack id rows of different lengths right-aligned, for batched generation.

    Args:
        rows: B tensors of shape (L_b,) int64, e.g. each env's :meth:`SequenceLayout.
            build_context` row.
        pad_id: filler on the left of shorter rows (never attended to).

    Returns:
        ids: (B, max L_b) int64, and lengths: (B,) int64, the ``lengths`` argument of
        :meth:`~vw_robot.models.transformer.VideoTransformer.generate_codes`.
    """
    _check(len(rows) >= 1 and all(r.dim() == 1 for r in rows), "rows", "expected 1-D id rows")
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long, device=rows[0].device)
    ids = torch.full((len(rows), int(lengths.max())), pad_id, dtype=torch.long)
    ids = ids.to(rows[0].device)
    for b, row in enumerate(rows):
        ids[b, ids.shape[1] - len(row) :] = row
    return ids, lengths
