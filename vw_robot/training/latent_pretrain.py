"""Latent-action pretraining of the head (LAPA, LAWM): the head network first learns, on every
video, to predict the latent dynamics model's codes of the next steps from the current frame
(and task); a head then fine-tunes from it on the few labelled episodes.

The targets reuse the export that feeds the transformer (:func:`vw_robot.data.sequences.
export_sequences`): ``codes[t, 0]`` is the LDM's first code of the clip x_t..x_{t+H}, and the
LDM's causal queries make that code a function of x_t and x_{t+1} alone: the change between
them, a latent action. An item at frame t predicts the chunk's k of them, for x_{t+j} ->
x_{t+j+1} (j < k), as the action head predicts a_t..a_{t+k-1}; steps past the episode's last
frame are masked, never read across episodes.

Fine-tuning (:func:`load_pretrained`) copies every weight of the pretrained network into the
head except the output layer (codes there, actions here): the trunk, the FiLM layer, the MLP's
hidden layers, the task embedding's rows by task id, and of the MLP's first layer the columns
of the inputs both read (the frame's features, the task); the head's other inputs (codes,
proprio state, a next frame) start where a fresh head starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vw_robot import checkpoint as ckpt
from vw_robot.data import format as fmt
from vw_robot.data.dataset import FrameCache
from vw_robot.data.sequences import sequences_dir
from vw_robot.models.action_head import pooled_size

# The stage's name: its ``stage=``, experiment section, run folder and checkpoint parent key.
STAGE = "latent_pretrain"
# ActionHead tensors a fine-tuned head never takes from the pretrained network: the output
# layer and the normalisers' statistics (the head's own labels set them).
_OWN = ("mlp.4.", "action_mean", "action_std", "state_mean", "state_std")
# Settings that must agree for the pretrained trunk's features to mean what the head reads.
_ARCHITECTURE = (
    "image_size",
    "down_factor",
    "channels",
    "num_res_blocks",
    "feature_dim",
    "unit_inputs",
    "hidden",
    "view_trunks",
    "num_views",
    "pool",
)
# What a config without one of those keys means (checkpoints from before the key existed).
_DEFAULTS = {"view_trunks": False, "num_views": 1, "pool": "flatten"}


class LatentActionDataset(Dataset):
    """Every frame of the given episodes (labelled or not: video only) with the LDM's codes
    of the next ``chunk`` steps.

    Item: ``frames`` (3, S, S) uint8 — x_t; ``codes`` (k,) int64 — the LDM's code of
    x_{t+j} -> x_{t+j+1}; ``code_mask`` (k,) bool — false where x_{t+j+1} lies past the
    episode's end; ``task_index`` () int64 into ``task_ids``. Frames stay in the frame cache's
    memory maps (all the video need not fit in memory); :meth:`batch` gathers a batch.

    Args:
        root: dataset folder.
        key: the exported sequences' key (:func:`vw_robot.data.sequences.sequence_key`).
        chunk: k.
        episode_ids: the episodes it serves.
        task_ids: the task list of the network (index order).
        cache_dir: as given to :func:`vw_robot.data.sequences.export_sequences`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        key: str,
        chunk: int,
        episode_ids: list[str],
        *,
        task_ids: list[str],
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.root = Path(root)
        cache = FrameCache(self.root, cache_dir)
        folder = sequences_dir(self.root, key, cache_dir)
        self.frames: list[np.ndarray] = []  # per episode, (F, S, S, 3) uint8 memmaps
        numbers, times, codes, masks, tasks = [], [], [], [], []
        for number, episode_id in enumerate(sorted(episode_ids)):
            meta = fmt.read_meta(self.root, episode_id)
            self.frames.append(cache.frames(meta))
            with np.load(folder / f"{episode_id}.npz", allow_pickle=False) as npz:
                steps = npz["codes"][:, 0].astype(np.int64)  # (F,) code of x_t -> x_{t+1}
            count = len(steps) - 1  # frames with a next frame
            if count < 1:
                continue
            picks = np.arange(count)[:, None] + np.arange(chunk)[None]  # (n, k)
            real = picks < count
            codes.append(np.where(real, steps[np.minimum(picks, count - 1)], 0))
            masks.append(real)
            numbers.append(np.full(count, number))
            times.append(np.arange(count))
            tasks.append(np.full(count, task_ids.index(meta.task_id)))
        if not codes:
            raise fmt.DatasetError(f"{self.root}: no episode has two frames to predict a code.")
        self.numbers = np.concatenate(numbers)  # (N,)
        self.times = np.concatenate(times)  # (N,)
        self.codes = torch.from_numpy(np.concatenate(codes))  # (N, k) int64
        self.code_mask = torch.from_numpy(np.concatenate(masks))  # (N, k) bool
        self.task_index = torch.from_numpy(np.concatenate(tasks).astype(np.int64))  # (N,)

    def __len__(self) -> int:
        return len(self.numbers)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        frame = np.array(self.frames[self.numbers[k]][self.times[k]])  # (S, S, 3)
        return {
            "frames": torch.from_numpy(frame).permute(2, 0, 1),
            "codes": self.codes[k],
            "code_mask": self.code_mask[k],
            "task_index": self.task_index[k],
        }

    def batch(self, indices: list[int] | torch.Tensor) -> dict[str, torch.Tensor]:
        """Items ``indices`` collated (as ``default_collate`` would), frames gathered from the
        memory maps: ``frames`` (B, 3, S, S) uint8, ``codes`` (B, k), ``code_mask`` (B, k),
        ``task_index`` (B,)."""
        index = torch.as_tensor(indices, dtype=torch.int64)  # (B,)
        frames = np.stack([self.frames[self.numbers[k]][self.times[k]] for k in index.tolist()])
        return {
            "frames": torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(),  # (B, 3, S, S)
            "codes": self.codes[index],
            "code_mask": self.code_mask[index],
            "task_index": self.task_index[index],
        }


def mlp_inputs(config: dict[str, Any]) -> list[tuple[str, int]]:
    """The blocks of an ActionHead's MLP input, in ActionHead.forward's order: (name, size)."""
    grid = config["image_size"] // config["down_factor"]
    trunks = config.get("num_views", 1) if config.get("view_trunks") else 1
    frame = pooled_size(config["feature_dim"], grid, config.get("pool", "flatten"), trunks)
    blocks = [("frame", frame)]
    if config.get("use_next_frame"):
        blocks.append(("next_frame", frame))
    if config.get("use_codes", True):
        blocks.append(("codes", config.get("horizon", 4) * config.get("code_embed_dim", 32)))
    if config.get("state_dim"):
        blocks.append(("state", config["state_dim"]))
    if config.get("num_tasks"):
        blocks.append(("task", config.get("task_embed_dim", 16)))
    return blocks


def load_pretrained(
    model: torch.nn.Module,
    model_config: dict[str, Any],
    path: str | os.PathLike[str],
    finetune: str = "all",
) -> ckpt.CheckpointInfo:
    """Start the head ``model`` (built from ``model_config``) from a latent-action pretrained
    network (a ``latent_pretrain`` checkpoint or run folder); with ``finetune="last"`` only
    its MLP trains afterwards (trunk, FiLM layer and task embedding frozen).

    Loads tensors only (no model is built, so the random state the head's training draws from
    is untouched).

    Raises:
        CheckpointError: not a latent_pretrain checkpoint, or one of another shape (naming the
            settings and tensors that differ, with both shapes).
    """
    info = ckpt.read_info(ckpt.resolve_checkpoint(path), stage=STAGE)
    theirs = info.model_config
    differ = []
    for key in _ARCHITECTURE:
        there = theirs.get(key, _DEFAULTS.get(key))
        here = model_config.get(key, _DEFAULTS.get(key))
        if there != here:
            differ.append(f"{key}: {there} there, {here} here")
    if differ:
        raise ckpt.CheckpointError(
            f"{info.path}: was pretrained for a head of another shape ("
            + "; ".join(differ)
            + "); pretrain with the head's model settings (experiment.latent_pretrain.model, "
            "trunk) or fine-tune a head of that shape."
        )
    weights = ckpt.load_weights(info.path)
    own = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    for name, tensor in own.items():
        if name.startswith(_OWN):
            continue
        if name == "task_embedding.weight":
            loaded[name] = _task_rows(tensor, weights, model_config, theirs)
        elif name == "mlp.0.weight":
            loaded[name] = _first_layer(tensor, weights, model_config, theirs, info.path)
        elif name in weights and weights[name].shape == tensor.shape:
            loaded[name] = weights[name]
        elif name.startswith("code_embedding"):
            continue  # the VideoWorld head's own input, which pretraining never reads
        else:
            there = tuple(weights[name].shape) if name in weights else "absent"
            raise ckpt.CheckpointError(
                f"{info.path}: was pretrained for a head of another shape: {name} is {there} "
                f"there, {tuple(tensor.shape)} here."
            )
    model.load_state_dict({**own, **loaded})
    if finetune == "last":
        for part in ("trunk", "film", "pool", "task_embedding"):
            module = getattr(model, part, None)
            if module is not None:
                module.requires_grad_(False)
    return info


def _task_rows(
    tensor: torch.Tensor,
    weights: dict[str, torch.Tensor],
    mine: dict[str, Any],
    theirs: dict[str, Any],
) -> torch.Tensor:
    """The head's task embedding with the pretrained rows of the tasks both know."""
    out = tensor.clone()
    if "task_embedding.weight" not in weights:
        return out  # pretrained without the task: the head's embedding starts fresh
    table = weights["task_embedding.weight"]
    if table.shape[1] != tensor.shape[1]:
        return out  # sized differently: _first_layer refuses the mismatch
    known = theirs.get("task_ids", [])
    for row, task in enumerate(mine.get("task_ids", [])[: len(out)]):
        if task in known:
            out[row] = table[known.index(task)]
    return out


def _first_layer(
    tensor: torch.Tensor,
    weights: dict[str, torch.Tensor],
    mine: dict[str, Any],
    theirs: dict[str, Any],
    where: Path,
) -> torch.Tensor:
    """The MLP's first layer (hidden, inputs) with the pretrained columns of the input blocks
    both networks read; the head's other blocks keep their fresh initialisation."""
    out = tensor.clone()
    source = weights["mlp.0.weight"]  # (hidden, their inputs)

    def offsets(blocks: list[tuple[str, int]]) -> dict[str, tuple[int, int]]:
        starts = np.cumsum([0] + [size for _, size in blocks])
        return {name: (int(starts[i]), size) for i, (name, size) in enumerate(blocks)}

    ours, other = offsets(mlp_inputs(mine)), offsets(mlp_inputs(theirs))
    for name, (start, size) in ours.items():
        if name not in other:
            continue
        their_start, their_size = other[name]
        if their_size != size:
            raise ckpt.CheckpointError(
                f"{where}: was pretrained for a head of another shape: its MLP's {name} input "
                f"has {their_size} features there, {size} here."
            )
        out[:, start : start + size] = source[:, their_start : their_start + size]
    return out
