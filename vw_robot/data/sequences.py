"""The step that feeds latent codes to the transformer: label every timestep of every episode
with its frame tokens and its H latent codes, store them beside the dataset, and serve windows
of T timesteps.

``export_sequences`` writes ``<cache>/sequences/<key>/<episode_id>.npz`` (``<cache>``:
:func:`vw_robot.data.format.cache_root`, ``<root>/cache`` for a writable dataset) holding

- ``tokens``: (F, N) int16 — the tokenizer's tokens of each of the episode's F frames;
- ``codes``: (F, H) int16 — ``z_t = LatentDynamicsModel(x_t..x_{t+H})``; near the episode's
  end the clip is padded with the last frame (never with another episode's frames);
- ``codes_valid``: (F,) bool — whether x_t..x_{t+H} all lie inside the episode.

``key`` hashes the tokenizer and latent dynamics checkpoints' weights, so codes from another
model are never mixed in; a finished episode file is reused on the next call.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vw_robot.data import format as fmt
from vw_robot.data.dataset import FrameCache
from vw_robot.io import atomic_write, atomic_write_json

log = logging.getLogger(__name__)

SEQUENCES_DIR = "sequences"


def sequence_key(tokenizer_sha: str, ldm_sha: str | None) -> str:
    """Cache key of a (tokenizer, latent dynamics model) pair (LDM None: tokens only)."""
    return hashlib.sha256(f"{tokenizer_sha}:{ldm_sha or '-'}".encode()).hexdigest()[:16]


def sequences_dir(
    root: str | os.PathLike[str], key: str, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """The folder of the dataset's episodes exported under ``key``."""
    return fmt.cache_root(root, cache_dir) / SEQUENCES_DIR / key


def padded_clips(frames: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Every timestep's clip x_t..x_{t+H}, padded with the episode's last frame.

    Args:
        frames: (F, S, S, 3) uint8 frames of one episode.
        horizon: H.

    Returns:
        clips: (F, H+1, S, S, 3) uint8 and valid: (F,) bool (no padding needed).
    """
    count = len(frames)
    picks = np.minimum(np.arange(count)[:, None] + np.arange(horizon + 1)[None], count - 1)
    return frames[picks], np.arange(count) + horizon <= count - 1


@torch.no_grad()
def export_sequences(
    root: str | os.PathLike[str],
    tokenizer: torch.nn.Module,
    ldm: torch.nn.Module | None,
    key: str,
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    tasks: list[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Label every episode of the dataset ``root`` (of ``tasks`` only, when given); returns
    the folder of the npz files (:func:`sequences_dir`).

    Episodes already exported under ``key`` are skipped (resume).

    Args:
        cache_dir: see :func:`vw_robot.data.format.cache_root` (None: inside the dataset when
            it is writable, else a per-user cache).
    """
    root = Path(root)
    out = sequences_dir(root, key, cache_dir)
    manifest = fmt.read_manifest(root)
    cache = FrameCache(root, cache_dir)
    tokenizer.eval().to(device)
    if ldm is not None:
        ldm.eval().to(device)
    done = 0
    for row in manifest["episodes"]:
        path = out / f"{row['episode_id']}.npz"
        if path.exists() or (tasks and row["task_id"] not in tasks):
            continue
        meta = fmt.read_meta(root, row["episode_id"])
        frames = np.array(cache.frames(meta))  # (F, S, S, 3) uint8, a writable copy
        chw = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (F, 3, S, S)
        tokens = torch.cat(
            [
                tokenizer.encode(chw[i : i + batch_size].to(device)).flatten(1).cpu()  # (b, N)
                for i in range(0, len(chw), batch_size)
            ]
        )
        arrays: dict[str, Any] = {"tokens": tokens.numpy().astype(np.int16)}
        if ldm is not None:
            horizon = ldm.config.horizon
            clips, valid = padded_clips(frames, horizon)  # (F, H+1, S, S, 3)
            clips_t = torch.from_numpy(clips).permute(0, 1, 4, 2, 3)  # (F, H+1, 3, S, S)
            codes = torch.cat(
                [
                    ldm.encode(clips_t[i : i + batch_size].to(device)).cpu()  # (b, H)
                    for i in range(0, len(clips_t), batch_size)
                ]
            )
            arrays["codes"] = codes.numpy().astype(np.int16)
            arrays["codes_valid"] = valid
        atomic_write(path, lambda f, a=arrays: np.savez(f, **a))
        done += 1
    atomic_write_json(out / "info.json", {"key": key, "episodes": manifest["num_episodes"]})
    log.info("exported %d episode(s) to %s", done, out)
    return out


class SequenceDataset(Dataset):
    """Windows of T timesteps of exported tokens (and codes), never crossing episodes.

    Item: ``tokens`` (T, N) int64, ``codes`` (T, H) int64 (absent without an LDM),
    ``codes_valid`` (T,) bool, ``task_index`` () int64 into :attr:`task_ids`. ``cache_dir``
    must be the one :func:`export_sequences` was given.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        key: str,
        timesteps: int,
        *,
        stride: int = 1,
        task_ids: list[str] | None = None,
        tasks: list[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.root = Path(root)
        folder = sequences_dir(self.root, key, cache_dir)
        manifest = fmt.read_manifest(self.root)
        rows = manifest["episodes"]
        if tasks:
            rows = [r for r in rows if r["task_id"] in set(tasks)]
        self.task_ids = task_ids or sorted({r["task_id"] for r in rows})
        self.episodes: list[dict[str, np.ndarray]] = []
        self.task_index: list[int] = []
        self.index: list[tuple[int, int]] = []
        for row in rows:
            path = folder / f"{row['episode_id']}.npz"
            if not path.exists():
                raise fmt.DatasetError(
                    f"{path}: missing; run `vw-robot export-codes` for this dataset and these "
                    "checkpoints first."
                )
            if row["task_id"] not in self.task_ids:
                raise fmt.DatasetError(
                    f"{self.root}: task {row['task_id']!r} is not one the model knows "
                    f"({', '.join(self.task_ids)})."
                )
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            number = len(self.episodes)
            self.episodes.append(arrays)
            self.task_index.append(self.task_ids.index(row["task_id"]))
            count = len(arrays["tokens"])
            self.index.extend((number, s) for s in range(0, count - timesteps + 1, stride))
        self.timesteps = timesteps
        if not self.index:
            raise fmt.DatasetError(f"{self.root}: no episode has {timesteps} timesteps.")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        number, start = self.index[k]
        arrays = self.episodes[number]
        window = slice(start, start + self.timesteps)
        item = {
            "tokens": torch.from_numpy(arrays["tokens"][window].astype(np.int64)),
            "task_index": torch.tensor(self.task_index[number], dtype=torch.int64),
        }
        if "codes" in arrays:
            item["codes"] = torch.from_numpy(arrays["codes"][window].astype(np.int64))
            item["codes_valid"] = torch.from_numpy(arrays["codes_valid"][window])
        return item


class ActionChunkDataset(Dataset):
    """Labelled timesteps for the action head: the frame x_t, its codes, and a_t..a_{t+k-1}.

    Item: ``frames`` (3, S, S) uint8, ``codes`` (H,) int64 — the LDM's codes of the real clip,
    or, with probability ``sampled_fraction`` where available, the codes the transformer
    sampled for that timestep (so the head learns to act on the generator's own mistakes) —
    ``actions`` (k, A) float32, ``action_mask`` (k,) bool (false past the episode's end),
    ``state`` (D,) float32, ``task_index`` () int64. With ``next_tokens`` (the no-LDM
    ablation) items carry ``next_tokens`` (N,) int64 instead of codes: the tokens of the real
    x_{t+1} (x_t's own at the episode's last frame), or with probability ``sampled_fraction``
    the tokens the code-free transformer predicted for it.

    :meth:`batch` serves many items at once, collated, as the training loop draws them.

    Args:
        root: dataset folder.
        key: exported sequences key (None: no codes, for behaviour cloning).
        chunk: k.
        episode_ids: the labelled episodes it may use (actions of others are never read).
        sampled: episode id -> (F, H) codes (or (F, N) next-frame tokens) sampled by the
            transformer.
        sampled_fraction: share of items that use sampled codes when they exist.
        seed: fixes which items use sampled codes.
        task_ids: task list of the policy (index order).
        next_tokens: serve next-frame tokens instead of codes (needs ``key``).
        cache_dir: where the frame cache and exported sequences are
            (:func:`vw_robot.data.format.cache_root`; the one given to
            :func:`export_sequences`).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        key: str | None,
        chunk: int,
        episode_ids: list[str],
        *,
        sampled: dict[str, np.ndarray] | None = None,
        sampled_fraction: float = 0.5,
        seed: int = 0,
        task_ids: list[str],
        next_tokens: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if next_tokens and key is None:
            raise ValueError("next_tokens needs the key of exported tokens")

        self.root = Path(root)
        cache = FrameCache(self.root, cache_dir)
        self.chunk = chunk
        self.target = "next_tokens" if next_tokens else "codes"
        self.items: list[tuple[int, int, bool]] = []  # (episode, t, use sampled codes)
        self.frames, self.codes, self.sampled, self.steps, self.tasks = [], [], [], [], []
        rng = np.random.default_rng(seed)
        for number, episode_id in enumerate(sorted(episode_ids)):
            meta = fmt.read_meta(self.root, episode_id)
            if not meta.has_actions:
                raise fmt.DatasetError(f"{episode_id}: has no actions; it cannot train a head.")
            self.frames.append(cache.frames(meta))
            self.steps.append(fmt.load_steps(self.root, meta))
            self.tasks.append(task_ids.index(meta.task_id))
            codes = None
            if key is not None:
                path = sequences_dir(self.root, key, cache_dir) / f"{episode_id}.npz"
                with np.load(path, allow_pickle=False) as npz:
                    if next_tokens:
                        tokens = npz["tokens"].astype(np.int64)  # (F, N)
                        codes = np.concatenate([tokens[1:], tokens[-1:]])  # x_{t+1}'s tokens
                    else:
                        codes = npz["codes"].astype(np.int64)
            self.codes.append(codes)
            self.sampled.append(None if sampled is None else sampled.get(episode_id))
            use = rng.random(meta.num_frames - 1) < sampled_fraction
            for t in range(meta.num_frames - 1):  # the last frame has no action
                self.items.append((number, t, bool(use[t]) and self.sampled[-1] is not None))
        self._table: dict[str, torch.Tensor] | None = None  # built by the first batch()

    def __len__(self) -> int:
        return len(self.items)

    def batch(self, indices: list[int] | torch.Tensor) -> dict[str, torch.Tensor]:
        """Items ``indices`` collated, as ``default_collate([self[k] for k in indices])``
        returns them (same keys, values and dtypes), gathered from in-memory tables in a few
        tensor ops: no per-item Python, no DataLoader.

        The first call reads every episode's frames once into one uint8 tensor in memory
        (the labelled episodes a head trains on) and lays out each item's action chunk, mask,
        state, task and codes, so a training step costs only the gathers.

        Returns:
            ``frames`` (B, 3, S, S) uint8,
            ``actions`` (B, k, A) float32, ``action_mask`` (B, k) bool, ``state`` (B, D)
            float32, ``task_index`` (B,) int64, and ``codes`` (B, H) or ``next_tokens``
            (B, N) int64 when the dataset has them.
        """
        if self._table is None:
            self._table = self._build_table()
        table = self._table
        index = torch.as_tensor(indices, dtype=torch.int64)  # (B,)
        out = {
            # (B, S, S, 3) -> (B, 3, S, S), laid out as default_collate lays it out
            "frames": table["frames"][table["frame_row"][index]].permute(0, 3, 1, 2).contiguous(),
            "actions": table["actions"][index],
            "action_mask": table["action_mask"][index],
            "state": table["state"][index],
            "task_index": table["task_index"][index],
        }
        if self.target in table:
            out[self.target] = table[self.target][index]
        return out

    def _build_table(self) -> dict[str, torch.Tensor]:
        """Per-item rows of everything :meth:`__getitem__` serves (see :meth:`batch`)."""
        starts = np.cumsum([0] + [len(f) for f in self.frames])  # first row of each episode
        numbers = np.array([n for n, _, _ in self.items], np.int64)  # (N,)
        times = np.array([t for _, t, _ in self.items], np.int64)  # (N,)
        use_sampled = np.array([u for _, _, u in self.items], bool)  # (N,)
        picks = times[:, None] + np.arange(self.chunk)[None]  # (N, k)
        actions, masks, states = [], [], []
        for number, steps in enumerate(self.steps):
            mine = numbers == number
            episode_actions = steps["actions"]  # (F-1, A)
            real = picks[mine] < len(episode_actions)  # (n, k)
            chunk = np.zeros((*real.shape, episode_actions.shape[1]), np.float32)  # (n, k, A)
            chunk[real] = episode_actions[picks[mine][real]]
            actions.append(chunk)
            masks.append(real)
            states.append(steps["state"][times[mine]].astype(np.float32))  # (n, D)
        # Items are listed episode by episode, so the per-episode rows concatenate in order.
        table = {
            "frames": torch.from_numpy(np.concatenate(self.frames)),  # (F_all, S, S, 3) uint8
            "frame_row": torch.from_numpy(starts[numbers] + times),  # (N,)
            "actions": torch.from_numpy(np.concatenate(actions)),  # (N, k, A)
            "action_mask": torch.from_numpy(np.concatenate(masks)),  # (N, k)
            "state": torch.from_numpy(np.concatenate(states)),  # (N, D)
            "task_index": torch.tensor(self.tasks, dtype=torch.int64)[numbers],  # (N,)
        }
        if self.codes[0] is not None:
            rows = [
                np.where(
                    use_sampled[numbers == n, None],
                    self.sampled[n][times[numbers == n]] if self.sampled[n] is not None else 0,
                    codes[times[numbers == n]],
                )
                for n, codes in enumerate(self.codes)
            ]
            # (N, H) codes or (N, N_tokens) next-frame tokens
            table[self.target] = torch.from_numpy(np.concatenate(rows).astype(np.int64))
        return table

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        number, t, use_sampled = self.items[k]
        steps = self.steps[number]
        actions = steps["actions"]
        picks = np.arange(t, t + self.chunk)
        real = picks < len(actions)
        chunk = np.zeros((self.chunk, actions.shape[1]), np.float32)
        chunk[real] = actions[picks[real]]
        item = {
            "frames": torch.from_numpy(np.array(self.frames[number][t])).permute(2, 0, 1),
            "actions": torch.from_numpy(chunk),
            "action_mask": torch.from_numpy(real),
            "state": torch.from_numpy(steps["state"][t].astype(np.float32)),
            "task_index": torch.tensor(self.tasks[number], dtype=torch.int64),
        }
        if self.codes[number] is not None:
            source = self.sampled[number] if use_sampled else self.codes[number]
            item[self.target] = torch.from_numpy(source[t].astype(np.int64))
        return item
