"""Training-time access to a dataset: a frame cache and a torch Dataset of clips.

Training never decodes mp4 in its loop: each episode's frames are decoded once into a uint8
memory-mapped file under the dataset's cache folder (:func:`vw_robot.data.format.cache_root`:
``<root>/cache/`` when the dataset is writable, a per-user folder otherwise) and read from
there. A cache file is keyed by the SHA-256 of the video it was decoded from, so a video that
changes is decoded again; a cache file whose size or checksum is not what was recorded when it
was built is decoded again too (with a warning); a video whose checksum no longer matches its
own meta file is refused (the episode was altered after it was written).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vw_robot.data import format as fmt
from vw_robot.data.check import check_episode
from vw_robot.data.video import read_video
from vw_robot.io import atomic_write, atomic_write_json, sha256_file

log = logging.getLogger(__name__)


class FrameCache:
    """Decoded frames of a dataset's episodes as read-only uint8 memmaps.

    Args:
        root: dataset folder.
        cache_dir: where derived files go (:func:`vw_robot.data.format.cache_root`; None:
            inside the dataset when it is writable, else a per-user cache).
    """

    def __init__(
        self, root: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None
    ) -> None:
        self.root = Path(root)
        self.folder = fmt.cache_root(self.root, cache_dir) / "frames"

    def frames(self, meta: fmt.EpisodeMeta, video_sha256: str | None = None) -> np.ndarray:
        """(num_frames, H, W, 3) uint8 memmap of the episode, decoding the video on a miss.

        A cache file that is missing, decoded from another version of the video, or damaged
        (size or SHA-256 not the ones recorded when it was built) is decoded again.

        Args:
            meta: the episode's metadata.
            video_sha256: the video's current checksum, if the caller already computed it.

        Raises:
            DatasetError: the video does not decode to what its meta describes.
        """
        video = fmt.episode_dir(self.root, meta.episode_id) / fmt.VIDEO_FILE
        sha = video_sha256 or sha256_file(video)
        shape = (meta.num_frames, meta.image_size, meta.image_size, 3)
        data, key = self.folder / f"{meta.episode_id}.u8", self.folder / f"{meta.episode_id}.json"
        damage = _cache_damage(data, key, sha, shape)
        if damage is None:
            return np.memmap(data, dtype=np.uint8, mode="r", shape=shape)
        if damage:
            log.warning("frame cache %s: %s; decoding %s again", data, damage, video)
        try:
            frames = read_video(video)
        except ValueError as exc:
            raise fmt.DatasetError(str(exc)) from None
        if frames.shape != shape:
            raise fmt.DatasetError(
                f"{video}: decodes to frames of shape {frames.shape}, meta.json says {shape}."
            )
        payload = np.ascontiguousarray(frames).tobytes()
        # Data first, key last: a crash in between leaves a key-less file that is rebuilt.
        key.unlink(missing_ok=True)
        atomic_write(data, lambda f: f.write(payload))
        atomic_write_json(
            key,
            {
                "video_sha256": sha,
                "shape": list(shape),
                "frames_sha256": hashlib.sha256(payload).hexdigest(),
            },
        )
        return np.memmap(data, dtype=np.uint8, mode="r", shape=shape)


def _cache_damage(data: Path, key: Path, video_sha256: str, shape: tuple[int, ...]) -> str | None:
    """None when the cache file can be used; else why not ("" for a plain miss: not built
    yet, or built from another version of the video)."""
    if not (key.exists() and data.exists()):
        return ""
    try:
        cached = json.loads(key.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return f"its key file {key.name} is unreadable"
    if not isinstance(cached, dict):
        return f"its key file {key.name} is malformed"
    if cached.get("video_sha256") != video_sha256 or tuple(cached.get("shape", ())) != shape:
        return ""
    expected = int(np.prod(shape))
    size = data.stat().st_size
    if size != expected:
        return f"{size} bytes where {expected} were written"
    if "frames_sha256" not in cached:
        return "built by an older vw_robot without a checksum"
    if sha256_file(data) != cached["frames_sha256"]:
        return "its SHA-256 differs from the one recorded when it was built"
    return None


@dataclass
class _Episode:
    meta: fmt.EpisodeMeta
    frames: np.ndarray  # (N, H, W, 3) uint8 memmap
    steps: dict[str, np.ndarray] | None  # None when unlabelled or outside the labelled subset
    task_index: int


def split_validation(
    episode_ids: list[str], task_of: Mapping[str, str], fraction: float, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Hold out a share of each task's episodes for validation: (train, validation), disjoint.

    Each task with n >= 2 episodes gives ``round(fraction * n)`` of them, at least one and at
    most n - 1, drawn by ``seed``; a task with one episode keeps it for training. A head's
    checkpoint is chosen on these episodes' loss, never on evaluation success.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"val_fraction={fraction} must be in [0, 1).")
    if fraction == 0:
        return sorted(episode_ids), []
    by_task: dict[str, list[str]] = {}
    for episode_id in sorted(episode_ids):
        by_task.setdefault(task_of[episode_id], []).append(episode_id)
    held: list[str] = []
    for task, ids in sorted(by_task.items()):
        if len(ids) < 2:
            continue
        count = min(len(ids) - 1, max(1, round(fraction * len(ids))))
        rng = np.random.default_rng([seed, zlib.crc32(task.encode())])
        held.extend(ids[i] for i in rng.permutation(len(ids))[:count])
    return sorted(set(episode_ids) - set(held)), sorted(held)


def select_labelled(
    episode_ids: list[str],
    *,
    label_fraction: float | None = None,
    labelled_episodes: int | None = None,
    seed: int = 0,
    task_of: Mapping[str, str] | None = None,
) -> set[str]:
    """A deterministic subset of the episodes with actions whose labels training may use.

    With ``task_of`` (episode id -> task id) the subset is stratified by task, as a
    multi-task label-efficiency experiment needs: ``label_fraction`` keeps
    ``round(fraction * n)`` of each task's ``n`` episodes (halves round up, and at least one
    when the fraction is above zero), and ``labelled_episodes`` deals its count out one task
    at a time in task-id order. Without it the episodes form one group.

    The subset depends only on the ids, their tasks and the seed (not on their order), and a
    smaller share's subset is contained in a larger one's for the same seed, so
    label-efficiency curves compare nested sets.

    Raises:
        ValueError: both or invalid limits, or an id ``task_of`` does not name.
    """
    if label_fraction is not None and labelled_episodes is not None:
        raise ValueError("Give label_fraction or labelled_episodes, not both.")
    if label_fraction is None and labelled_episodes is None:
        return set(episode_ids)
    if label_fraction is not None and not 0.0 <= label_fraction <= 1.0:
        raise ValueError(f"label_fraction={label_fraction} must be in [0, 1].")
    if labelled_episodes is not None and labelled_episodes < 0:
        raise ValueError(f"labelled_episodes={labelled_episodes} must be >= 0.")
    groups: dict[str, list[str]] = {}
    for episode in sorted(set(episode_ids)):
        if task_of is not None and episode not in task_of:
            raise ValueError(f"select_labelled: episode {episode!r} has no task in task_of.")
        groups.setdefault(task_of[episode] if task_of is not None else "", []).append(episode)
    # Each task's own seeded order: adding or removing another task's episodes leaves it alone.
    orders = {}
    for task, ids in groups.items():
        task_seed = int.from_bytes(hashlib.sha256(task.encode()).digest()[:4], "little")
        rng = np.random.default_rng([seed, task_seed])
        orders[task] = [ids[k] for k in rng.permutation(len(ids))]
    if label_fraction is not None:
        chosen = set()
        for order in orders.values():
            count = int(np.floor(label_fraction * len(order) + 0.5))
            if label_fraction > 0:
                count = max(count, 1)
            chosen.update(order[:count])
        return chosen
    dealt: list[str] = []
    for rank in range(max(len(order) for order in orders.values()) if orders else 0):
        dealt.extend(orders[task][rank] for task in sorted(orders) if rank < len(orders[task]))
    return set(dealt[:labelled_episodes])


def labelled_per_task(episodes: list[str], task_of: Mapping[str, str]) -> str:
    """``"49 (4-5 per task over 10 tasks)"``: how a labelled subset spreads over the tasks."""
    counts = Counter(task_of.get(episode, "?") for episode in episodes)
    if not counts:
        return "0"
    low, high = min(counts.values()), max(counts.values())
    spread = str(low) if low == high else f"{low}-{high}"
    return f"{len(episodes)} ({spread} per task over {len(counts)} tasks)"


class ClipDataset(Dataset):
    """Fixed-length clips of T frames that never cross an episode boundary.

    Item ``k`` is a dict:

    - ``frames``: (T, 3, H, W) uint8
    - ``task_index``: () int64, index into :attr:`task_ids`
    - ``actions``: (T, A) float32 — action taken at each frame (zeros where there is none:
      after an episode's last frame, or for episodes without usable labels)
    - ``action_mask``: (T,) bool — which rows of ``actions`` are real
    - ``state``: (T, D) float32 proprio (zeros when absent)
    - ``has_actions``: () bool — the episode's labels are in the usable subset

    Args:
        root: dataset folder.
        clip_len: frames per clip (T).
        stride: step between the start frames of consecutive clips of an episode.
        frame_step: temporal subsampling inside a clip (1 = consecutive frames).
        tasks: keep only these task ids (None: all).
        label_fraction / labelled_episodes / label_seed: which labelled episodes' actions are
            usable (:func:`select_labelled`); the others act as videos without actions.
        on_bad_episode: ``"error"`` refuses a dataset with a broken episode (the message
            lists each problem), ``"skip"`` leaves such episodes out and logs which.
        verify: ``"fast"`` checks files, checksums and the arrays' values (full decode on
            cache misses), ``"full"`` runs every check of ``vw-robot data check`` on every
            episode.
        cache_dir: where the frame cache and action statistics go
            (:func:`vw_robot.data.format.cache_root`; None: inside the dataset when it is
            writable, else a per-user cache).

    Raises:
        DatasetError: a problem ``vw-robot data check`` reports, with the same line: the
            dataset-level ones (:func:`vw_robot.data.format.read_manifest`: e.g. an episode
            listed twice or a complete one left out) always; those of the episodes it would
            use, and of episode folders the manifest does not list (incomplete or unreadable
            meta), unless ``on_bad_episode="skip"``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        clip_len: int,
        *,
        stride: int = 1,
        frame_step: int = 1,
        tasks: list[str] | None = None,
        label_fraction: float | None = None,
        labelled_episodes: int | None = None,
        label_seed: int = 0,
        on_bad_episode: str = "error",
        verify: str = "fast",
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        for name, value in (("clip_len", clip_len), ("stride", stride), ("frame_step", frame_step)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive int.")
        if on_bad_episode not in ("error", "skip"):
            raise ValueError(f"on_bad_episode={on_bad_episode!r}; use 'error' or 'skip'.")
        if verify not in ("fast", "full"):
            raise ValueError(f"verify={verify!r}; use 'fast' or 'full'.")
        self.root = Path(root)
        self.cache_dir = cache_dir
        self.clip_len, self.stride, self.frame_step = clip_len, stride, frame_step
        metas = self._usable_metas(tasks, verify, on_bad_episode)
        if not metas:
            raise fmt.DatasetError(f"{self.root}: no usable episodes.")
        self.task_ids = sorted({m.task_id for m in metas})
        labelled = [m.episode_id for m in metas if m.has_actions]
        self.labelled_ids = select_labelled(
            labelled,
            label_fraction=label_fraction,
            labelled_episodes=labelled_episodes,
            seed=label_seed,
            task_of={m.episode_id: m.task_id for m in metas},
        )
        dims = {m.action_dim for m in metas if m.episode_id in self.labelled_ids}
        if len(dims) > 1:
            raise fmt.DatasetError(
                f"{self.root}: labelled episodes have different action sizes {sorted(dims)}; "
                "select tasks of one suite with tasks=[...]."
            )
        self.action_dim = dims.pop() if dims else 0
        self.state_dim = max((m.state_dim or 0) for m in metas)
        self._index_clips(metas, FrameCache(self.root, cache_dir))

    def _usable_metas(
        self, tasks: list[str] | None, verify: str, on_bad_episode: str
    ) -> list[fmt.EpisodeMeta]:
        """The metas of the listed episodes of ``tasks`` that pass their checks; the ids of
        those that fail (and of unlisted episode folders) go to :attr:`skipped`."""
        manifest = fmt.read_manifest(self.root)  # refuses what data check reports dataset-wide
        rows = manifest["episodes"]
        listed = {r["episode_id"] for r in rows}
        # Folders the manifest leaves out: read_manifest refused complete ones, so these are
        # incomplete or have an unreadable meta.json; data check reports them, so do we.
        unlisted = [e for e in fmt.list_episode_folders(self.root)[0] if e not in listed]
        if tasks is not None:
            known = {r["task_id"] for r in rows}
            unknown = sorted(set(tasks) - known)
            if unknown:
                raise ValueError(
                    f"{self.root}: no episodes of task(s) {', '.join(unknown)}; the dataset "
                    f"has {', '.join(sorted(known))}."
                )
            rows = [r for r in rows if r["task_id"] in tasks]
        problems, self.skipped = [], []
        metas = []
        for episode_id in [r["episode_id"] for r in rows] + unlisted:
            issues = check_episode(self.root, episode_id, decode=verify == "full")
            if issues:
                problems.extend(issues)
                self.skipped.append(episode_id)
            elif episode_id in listed:
                metas.append(fmt.read_meta(self.root, episode_id))
        if problems and on_bad_episode == "error":
            raise fmt.DatasetError(
                f"{self.root}: {len(self.skipped)} episode(s) failed their checks "
                "(on_bad_episode='skip' leaves them out):\n  " + "\n  ".join(problems)
            )
        for line in problems:
            log.warning("skipping episode: %s", line)
        return metas

    def _index_clips(self, metas: list[fmt.EpisodeMeta], cache: FrameCache) -> None:
        """Load each episode (frames from ``cache``, steps if labelled) into :attr:`episodes`
        and list the clips it gives in :attr:`index`."""
        clip_len, frame_step, stride = self.clip_len, self.frame_step, self.stride
        self.episodes: list[_Episode] = []
        self.index: list[tuple[int, int]] = []  # (episode, first frame)
        span = (clip_len - 1) * frame_step + 1  # frames a clip covers
        too_short = 0
        for meta in metas:
            steps = (
                fmt.load_steps(self.root, meta) if meta.episode_id in self.labelled_ids else None
            )
            number = len(self.episodes)
            self.episodes.append(
                _Episode(meta, cache.frames(meta), steps, self.task_ids.index(meta.task_id))
            )
            starts = range(0, meta.num_frames - span + 1, stride)
            too_short += not starts
            self.index.extend((number, s) for s in starts)
        if too_short:
            log.info("%d episode(s) shorter than a clip (%d frames) give no clip", too_short, span)
        if not self.index:
            raise fmt.DatasetError(
                f"{self.root}: no episode is long enough for a clip of {span} frames."
            )

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        number, start = self.index[k]
        episode = self.episodes[number]
        picks = np.arange(start, start + self.clip_len * self.frame_step, self.frame_step)
        frames = torch.from_numpy(np.ascontiguousarray(episode.frames[picks]))  # (T, H, W, 3)
        actions = np.zeros((self.clip_len, self.action_dim), np.float32)
        mask = np.zeros(self.clip_len, bool)
        state = np.zeros((self.clip_len, self.state_dim), np.float32)
        if episode.steps is not None:
            real = picks < len(episode.steps["actions"])  # the last frame has no action
            actions[real] = episode.steps["actions"][picks[real]]
            mask[real] = True
        if episode.steps is not None and "state" in episode.steps:
            state[:, : episode.steps["state"].shape[1]] = episode.steps["state"][picks]
        return {
            "frames": frames.permute(0, 3, 1, 2),  # (T, 3, H, W) uint8
            "task_index": torch.tensor(episode.task_index, dtype=torch.int64),
            "actions": torch.from_numpy(actions),
            "action_mask": torch.from_numpy(mask),
            "state": torch.from_numpy(state),
            "has_actions": torch.tensor(episode.steps is not None),
        }

    def action_stats(self) -> dict[str, list[float]]:
        """Per-dimension mean/std/min/max of the usable actions (:func:`action_statistics`),
        computed once and stored in ``<cache>/action_stats/<key>.json`` (the key hashes the
        episodes used); a stored file that is unreadable or not finite is computed again.

        Raises:
            DatasetError: no labelled episode, or statistics that are not finite.
        """
        ids = sorted(self.labelled_ids)
        if not ids:
            raise fmt.DatasetError(f"{self.root}: no labelled episodes to compute action stats.")
        by_id = {e.meta.episode_id: e for e in self.episodes}
        key = hashlib.sha256(
            "\n".join(f"{i}:{by_id[i].meta.video_sha256}" for i in ids).encode()
        ).hexdigest()[:16]
        path = fmt.cache_root(self.root, self.cache_dir) / "action_stats" / f"{key}.json"
        if path.exists():
            try:
                stats = json.loads(path.read_text())["stats"]
                _check_statistics(stats, self.action_dim, str(path))
                return stats
            except (KeyError, TypeError, ValueError, OSError) as exc:  # DatasetError too
                log.warning("%s: not usable (%s); computing the action statistics again", path, exc)
        actions = np.concatenate([by_id[i].steps["actions"] for i in ids])  # (N, A)
        stats = action_statistics(actions, f"{self.root} ({len(ids)} labelled episode(s))")
        atomic_write_json(path, {"episodes": ids, "stats": stats})
        return stats


def action_statistics(actions: np.ndarray, where: str) -> dict[str, Any]:
    """Per-dimension ``mean``, ``std``, ``min``, ``max`` (lists) and ``count`` of (N, A)
    actions, for a policy's action normaliser; computed in float64 so large values do not
    overflow.

    Args:
        actions: (N, A) actions.
        where: names the data in errors (e.g. the dataset folder).

    Raises:
        DatasetError: no actions, or a statistic that is not finite (names the statistic,
            the dimension and the value) — training would store it in the checkpoint.
    """
    values = np.asarray(actions, dtype=np.float64)  # (N, A)
    if values.ndim != 2 or not len(values):
        raise fmt.DatasetError(f"{where}: no actions to compute statistics from ({values.shape}).")
    with np.errstate(over="ignore", invalid="ignore"):  # reported below, naming the dimension
        stats = {
            "mean": values.mean(0).tolist(),
            "std": values.std(0).tolist(),
            "min": values.min(0).tolist(),
            "max": values.max(0).tolist(),
            "count": int(len(values)),
        }
    _check_statistics(stats, values.shape[1], where)
    return stats


def _check_statistics(stats: Any, action_dim: int, where: str) -> None:
    """Refuse normaliser statistics that are malformed or not finite."""
    for name in ("mean", "std", "min", "max"):
        values = np.asarray(stats[name], dtype=np.float64)
        if values.shape != (action_dim,):
            raise fmt.DatasetError(
                f"{where}: action {name} has shape {values.shape}, expected ({action_dim},)."
            )
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise fmt.DatasetError(
                f"{where}: action {name} of dimension {bad[0]} is {values[bad[0]]:g}; "
                "normaliser statistics must be finite (run `vw-robot data check`)."
            )


def describe(dataset: ClipDataset) -> dict[str, Any]:
    """Counts a user wants to see before training."""
    return {
        "episodes": len(dataset.episodes),
        "labelled_episodes": len(dataset.labelled_ids),
        "clips": len(dataset),
        "tasks": dataset.task_ids,
        "skipped_episodes": dataset.skipped,
    }
