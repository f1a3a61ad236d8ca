"""Tokens and codes for the data: the export that labels every timestep, the transformer's
own samples that the action head also trains on, and the layout they imply.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vw_robot import checkpoint as ckpt
from vw_robot.data import format as fmt
from vw_robot.data.sequences import export_sequences, sequence_key, sequences_dir
from vw_robot.device import resolve_device
from vw_robot.io import atomic_write
from vw_robot.models.registry import load_model
from vw_robot.models.transformer import SequenceLayout, pad_left


def stage_checkpoint(
    given: str | os.PathLike[str] | None, out: str | os.PathLike[str], stage: str
) -> Path:
    """The checkpoint a stage builds on: ``given`` (a ``<stage>_checkpoint=`` key), else the
    pipeline folder's ``<out>/<stage>`` run.

    Raises:
        CheckpointError: none there, with the command that makes it.
    """
    path = Path(given) if given else Path(out) / stage
    try:
        return ckpt.resolve_checkpoint(path)
    except ckpt.CheckpointError:
        raise ckpt.CheckpointError(
            f"{path}: no trained {stage} checkpoint; produce it with `vw-robot train "
            f"stage={stage} dataset=... out={out}` or pass {stage}_checkpoint=PATH."
        ) from None


def sequence_layout(
    tokenizer_config: dict[str, Any],
    ldm_config: dict[str, Any] | None,
    hide_past_codes: bool = False,
) -> SequenceLayout:
    """The transformer's vocabulary and per-timestep layout implied by the tokenizer's and the
    latent dynamics model's configs (no LDM: the no-code ablation)."""
    grid = tokenizer_config["image_size"] // tokenizer_config["down_factor"]
    return SequenceLayout(
        num_frame_tokens=grid * grid,
        frame_vocab=math.prod(tokenizer_config["levels"]),
        horizon=ldm_config["horizon"] if ldm_config else 0,
        code_vocab=math.prod(ldm_config["levels"]) if ldm_config else 1,
        hide_past_codes=hide_past_codes,
    )


def export(
    dataset: str,
    out: str,
    *,
    tokenizer_checkpoint: str | None = None,
    ldm_checkpoint: str | None = None,
    use_codes: bool = True,
    tasks: list[str] | None = None,
    device: str = "auto",
    cache_dir: str | None = None,
) -> tuple[str, ckpt.CheckpointInfo, ckpt.CheckpointInfo | None]:
    """Export tokens (and codes) for ``dataset`` (``tasks`` only, when given) with the
    pipeline's checkpoints; returns the export key and the checkpoints it used."""
    tokenizer_path = stage_checkpoint(tokenizer_checkpoint, out, "tokenizer")
    tokenizer, tokenizer_info = load_model(tokenizer_path, "tokenizer")
    ldm, ldm_info = (None, None)
    if use_codes:
        ldm, ldm_info = load_model(stage_checkpoint(ldm_checkpoint, out, "ldm"), "ldm")
    key = sequence_key(tokenizer_info.model_sha256, ldm_info.model_sha256 if ldm_info else None)
    export_sequences(
        dataset,
        tokenizer,
        ldm,
        key,
        device=resolve_device(device),
        tasks=tasks,
        cache_dir=cache_dir,
    )
    return key, tokenizer_info, ldm_info


@torch.no_grad()
def sample_codes(
    root: str,
    key: str,
    episode_ids: list[str],
    transformer: torch.nn.Module,
    info: ckpt.CheckpointInfo,
    task_ids: list[str],
    cache_dir: str | None = None,
) -> dict[str, Any]:
    """The codes the transformer samples (greedy) at every timestep of the given episodes, as
    the policy samples them acting on those frames; cached under the transformer's checksum.

    The context is the policy's: the episode's real frames, up to ``max_timesteps`` ending at
    t, and for the earlier timesteps the codes the transformer itself sampled there (never the
    LDM's codes of the real clip, which the policy cannot have: they summarise frames still to
    come), laid out as HIDDEN when the transformer hides past codes. A rope model's policy
    decodes along a sliding KV cache (the banded forward), so its codes are sampled that way
    too; an absolute model's refills every step (fresh windows).

    For the code-free transformer (the no-LDM ablation) it is the next frame's tokens that are
    sampled, from a context of real frames one timestep shorter (the predicted frame fills the
    window).
    Returns episode id -> (F, H) codes, or (F, N) next-frame tokens.
    """
    layout, window = transformer.config.layout, transformer.config.max_timesteps
    frames_mode = layout.horizon == 0
    if frames_mode:
        window -= 1  # the predicted frame takes the last timestep of the window
        if window < 1:
            raise ckpt.CheckpointError(
                f"{info.path}: max_timesteps={transformer.config.max_timesteps} leaves no room "
                "for a context before the predicted frame; train with max_timesteps >= 2."
            )
    # "acting_codes": along the policy's own codes (the earlier "sampled_codes" cache was
    # sampled along the LDM's codes and must not be read as these); a rope model's along its
    # sliding cache ("acting_codes_sliding": earlier rope caches hold fresh windows' codes).
    sliding = not frames_mode and transformer.config.positions == "rope"
    kind = (
        "sampled_next_tokens"
        if frames_mode
        else ("acting_codes_sliding" if sliding else "acting_codes")
    )
    folder = fmt.cache_root(root, cache_dir) / kind / info.model_sha256[:16]
    device = transformer.head.weight.device
    out: dict[str, Any] = {}
    todo: dict[str, tuple[torch.Tensor, int]] = {}
    for episode_id in episode_ids:
        path = folder / f"{episode_id}.npy"
        if path.exists():
            out[episode_id] = np.load(path, allow_pickle=False)
            continue
        meta = fmt.read_meta(root, episode_id)
        with np.load(
            sequences_dir(root, key, cache_dir) / f"{episode_id}.npz",
            allow_pickle=False,
        ) as npz:
            tokens = torch.from_numpy(npz["tokens"].astype(np.int64))  # (F, N)
        todo[episode_id] = (tokens, task_ids.index(meta.task_id))
    width = layout.num_frame_tokens if frames_mode else layout.horizon
    sampled = {e: torch.zeros(len(tok), width, dtype=torch.int64) for e, (tok, _) in todo.items()}
    if sliding:
        _sample_sliding(transformer, todo, sampled, window, device)
    else:
        _sample_fresh(transformer, todo, sampled, window, device)
    for episode_id, values in sampled.items():
        array = values.numpy().astype(np.int16)
        path = folder / f"{episode_id}.npy"
        atomic_write(path, lambda f, a=array: np.save(f, a))
        out[episode_id] = array
    return out


def _sample_fresh(
    transformer: torch.nn.Module,
    todo: dict[str, tuple[torch.Tensor, int]],
    sampled: dict[str, torch.Tensor],
    window: int,
    device: torch.device,
) -> None:
    """Fill ``sampled`` as an absolute model's control computes it: fresh windows, timestep by
    timestep (a timestep's context holds the codes sampled before it), every episode at that
    timestep in batched calls of 64. The code-free transformer samples next-frame tokens from
    real frames alone."""
    layout = transformer.config.layout
    frames_mode = layout.horizon == 0
    longest = max((len(tokens) for tokens, _ in todo.values()), default=0)
    for t in range(longest):
        rows = [e for e, (tokens, _) in todo.items() if t < len(tokens)]
        history = min(t, window - 1)
        for i in range(0, len(rows), 64):
            group = rows[i : i + 64]
            tok = torch.stack([todo[e][0][t - history : t + 1] for e in group]).to(device)
            tasks = torch.tensor([todo[e][1] for e in group], device=device)
            if frames_mode:
                context = layout.build_context(tok, None)  # (b, L), whole timesteps
                result = transformer.generate_frame_tokens(context, tasks)
            else:
                cod = torch.stack([sampled[e][t - history : t] for e in group]).to(device)
                context = layout.build_context(tok, cod)  # (b, L)
                result = transformer.generate_codes(context, tasks)
            for e, row in zip(group, result.cpu(), strict=True):
                sampled[e][t] = row


def _sample_sliding(
    transformer: torch.nn.Module,
    todo: dict[str, tuple[torch.Tensor, int]],
    sampled: dict[str, torch.Tensor],
    window: int,
    device: torch.device,
) -> None:
    """Fill ``sampled`` as a rope policy samples acting: along a sliding KV cache, so every
    timestep attends to its own and the ``window - 1`` before it at every layer (the banded
    forward), not to a fresh window. Episodes go in fixed groups of 64, longest first; a row
    whose episode has ended repeats its last timestep until its group's longest ends, and what
    it samples then is dropped."""
    layout = transformer.config.layout
    order = sorted(todo, key=lambda e: -len(todo[e][0]))
    for i in range(0, len(order), 64):
        group = order[i : i + 64]
        cache = transformer.make_cache(len(group))
        tasks = torch.tensor([todo[e][1] for e in group], device=device)
        for t in range(len(todo[group[0]][0])):
            contexts = []
            for e in group:
                end = min(t, len(todo[e][0]) - 1)  # an ended row stays at its last timestep
                history = min(end, window - 1)
                tok = todo[e][0][end - history : end + 1][None].to(device)  # (1, t, N)
                cod = sampled[e][end - history : end][None].to(device)  # (1, t-1, H)
                contexts.append(layout.build_context(tok, cod)[0])
            ids, lengths = pad_left(contexts)  # (b, L), (b,)
            result = transformer.generate_codes(ids, tasks, cache=cache, lengths=lengths)
            for e, row in zip(group, result.cpu(), strict=True):
                if t < len(todo[e][0]):
                    sampled[e][t] = row
