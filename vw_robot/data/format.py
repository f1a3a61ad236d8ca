"""On-disk layout of a vw_robot dataset, and the only code that writes or parses it.

::

    <root>/
      dataset.json            format, version, image_size, fps, codec (fixed at creation)
      manifest.json           one row per complete episode; rebuilt from the episodes' meta
                              files by a single writer under a lock, written atomically
      episodes/<id>/
        video.mp4             the camera frames, (T+1) of them for T steps
        steps.npz             per-step arrays (absent for videos without actions):
                              actions (T, A) float32, state (T+1, D) float32,
                              reward (T,) float32, success (T+1,) bool
        meta.json             written last: its presence marks the episode complete
      dropped/<id>.json       failed demonstrations not kept (so a resumed run skips them)
      cache/                  decoded frames (uint8 memmaps) and action statistics

Frame k is the observation before action k; the last frame has no action. Every write is
atomic, and workers write only their own episode folders, so an interrupted or parallel
collection never leaves a half-written episode or manifest.
"""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from vw_robot.io import atomic_write, atomic_write_json, folder_lock, sha256_file

FORMAT = "vw_robot.dataset"
VERSION = 1
DATASET_FILE = "dataset.json"
MANIFEST_FILE = "manifest.json"
EPISODES_DIR = "episodes"
DROPPED_DIR = "dropped"
CACHE_DIR = "cache"
VIDEO_FILE = "video.mp4"
STEPS_FILE = "steps.npz"
META_FILE = "meta.json"
STEP_ARRAYS = {"actions": np.float32, "state": np.float32, "reward": np.float32, "success": bool}


class DatasetError(ValueError):
    """A dataset file is missing, malformed or inconsistent; the message names the file."""


@dataclass
class EpisodeMeta:
    """Everything known about one episode besides its frames and arrays."""

    episode_id: str  # folder name under episodes/
    task_id: str  # registry id, or a user-given label for imported videos
    num_frames: int  # frames in video.mp4 (= steps + 1 when actions exist)
    image_size: int  # square frame side in pixels
    fps: int  # video frame rate
    has_actions: bool  # steps.npz exists with actions
    source: str  # "expert" for collected demos, "import:<path>" for imported videos
    codec: str  # preset used for video.mp4 (vw_robot.data.video.CODECS)
    video_sha256: str  # checksum of video.mp4; the frame cache is keyed by it
    seed: int | None = None  # reset seed of a simulated episode
    success: bool | None = None  # the expert's success flag (None when unknown)
    action_dim: int | None = None
    state_dim: int | None = None
    env_spec: dict[str, Any] | None = None  # make_env arguments that reproduce the episode
    versions: dict[str, str | None] = field(default_factory=dict)  # packages that made it

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, payload: Any, source: str | os.PathLike[str]) -> EpisodeMeta:
        """Parse and type-check a meta payload; ``source`` names the file in errors."""
        if not isinstance(payload, dict):
            raise DatasetError(f"{source}: expected a JSON object, got {type(payload).__name__}.")
        known = {f.name: f for f in fields(cls)}
        required = [n for n, f in known.items() if f.default is f.default_factory is MISSING]
        missing = [n for n in required if n not in payload]
        if missing:
            raise DatasetError(f"{source}: missing key(s) {', '.join(missing)}.")
        unknown = sorted(set(payload) - set(known))
        if unknown:
            raise DatasetError(f"{source}: unknown key(s) {', '.join(unknown)}.")
        checks = {
            "episode_id": str,
            "task_id": str,
            "num_frames": int,
            "image_size": int,
            "fps": int,
            "has_actions": bool,
            "source": str,
            "codec": str,
            "video_sha256": str,
        }
        for key, kind in checks.items():
            value = payload[key]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise DatasetError(
                    f"{source}: key {key!r} should be {kind.__name__}, got {value!r}."
                )
        for key in ("num_frames", "image_size", "fps"):
            if payload[key] < 1:
                raise DatasetError(f"{source}: key {key!r} must be >= 1, got {payload[key]}.")
        return cls(**payload)


def episode_dir(root: str | os.PathLike[str], episode_id: str) -> Path:
    return Path(root) / EPISODES_DIR / episode_id


def read_json(path: str | os.PathLike[str]) -> Any:
    """Load a JSON file; a missing or malformed file raises DatasetError naming it."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"{path}: file is missing.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: malformed JSON ({exc}).") from None
    except OSError as exc:  # a folder where a file should be, permissions
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc}).") from None


def read_meta(root: str | os.PathLike[str], episode_id: str) -> EpisodeMeta:
    path = episode_dir(root, episode_id) / META_FILE
    return EpisodeMeta.from_json(read_json(path), path)


def is_complete(root: str | os.PathLike[str], episode_id: str) -> bool:
    """Whether the episode was fully written (kept) or recorded as dropped."""
    return (episode_dir(root, episode_id) / META_FILE).exists() or (
        Path(root) / DROPPED_DIR / f"{episode_id}.json"
    ).exists()


def init_dataset(
    root: str | os.PathLike[str], *, image_size: int, fps: int, codec: str
) -> dict[str, Any]:
    """Create ``dataset.json`` or check that an existing dataset has the same settings.

    Raises:
        DatasetError: the folder holds a dataset with another image size, fps or codec
            (both values named), or something that is not a vw_robot dataset.
    """
    root = Path(root)
    wanted = {
        "format": FORMAT,
        "version": VERSION,
        "image_size": image_size,
        "fps": fps,
        "codec": codec,
    }
    with folder_lock(root, ".dataset.lock"):
        path = root / DATASET_FILE
        if not path.exists():
            if root.exists() and any(p for p in root.iterdir() if not p.name.startswith(".")):
                raise DatasetError(
                    f"{root}: folder is not empty and has no {DATASET_FILE}; choose an empty or "
                    "new folder so nothing there is overwritten."
                )
            atomic_write_json(path, wanted)
            return wanted
        have = read_dataset_info(root)
        for key in ("image_size", "fps", "codec"):
            if have[key] != wanted[key]:
                raise DatasetError(
                    f"{path}: dataset has {key}={have[key]!r}, this run asks for "
                    f"{key}={wanted[key]!r}; use another output folder or the same {key}."
                )
        return have


def read_dataset_info(root: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse and check ``dataset.json``."""
    path = Path(root) / DATASET_FILE
    info = read_json(path)
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise DatasetError(f"{path}: not a vw_robot dataset (format should be {FORMAT!r}).")
    if info.get("version") != VERSION:
        raise DatasetError(
            f"{path}: dataset format version {info.get('version')!r}; this vw_robot reads "
            f"version {VERSION}."
        )
    for key in ("image_size", "fps"):
        if not isinstance(info.get(key), int) or info[key] < 1:
            raise DatasetError(
                f"{path}: key {key!r} should be a positive int, got {info.get(key)!r}."
            )
    return info


def write_episode(
    root: str | os.PathLike[str],
    meta: EpisodeMeta,
    frames: np.ndarray,
    steps: dict[str, np.ndarray] | None = None,
) -> EpisodeMeta:
    """Write one episode: video, arrays, then meta (the completion marker), each atomically.

    ``meta.num_frames``, ``image_size``, ``has_actions`` and ``video_sha256`` are filled in
    from what is written.

    Args:
        root: dataset folder.
        meta: the episode's metadata.
        frames: (T+1, H, W, 3) uint8.
        steps: per-step arrays (see module docstring) or None for a video without actions.
    """
    from vw_robot.data.video import write_video

    if frames.ndim != 4 or frames.shape[1] != frames.shape[2]:
        raise ValueError(f"frames must be (T, S, S, 3) with square images, got {frames.shape}.")
    folder = episode_dir(root, meta.episode_id)
    folder.mkdir(parents=True, exist_ok=True)
    # An episode being rewritten must not look complete (old meta, new video) after a crash.
    (folder / META_FILE).unlink(missing_ok=True)
    if steps is None:
        (folder / STEPS_FILE).unlink(missing_ok=True)
    meta.num_frames, meta.image_size = int(len(frames)), int(frames.shape[1])
    if steps is not None:
        steps = _check_steps(steps, len(frames), folder / STEPS_FILE)
        atomic_write(folder / STEPS_FILE, lambda f: np.savez(f, **steps))
        meta.action_dim = int(steps["actions"].shape[1])
        meta.state_dim = int(steps["state"].shape[1]) if "state" in steps else None
    meta.has_actions = steps is not None
    write_video(folder / VIDEO_FILE, frames, meta.fps, meta.codec)
    meta.video_sha256 = sha256_file(folder / VIDEO_FILE)
    atomic_write_json(folder / META_FILE, meta.to_json())
    return meta


def write_dropped(root: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Record a demonstration that failed and was not kept (resume skips it)."""
    atomic_write_json(Path(root) / DROPPED_DIR / f"{record['episode_id']}.json", record)


def load_steps(root: str | os.PathLike[str], meta: EpisodeMeta) -> dict[str, np.ndarray]:
    """Load and check an episode's per-step arrays (no pickled objects are ever loaded)."""
    path = episode_dir(root, meta.episode_id) / STEPS_FILE
    try:
        with np.load(path, allow_pickle=False) as npz:
            steps = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise DatasetError(f"{path}: file is missing (meta says has_actions=true).") from None
    except Exception as exc:  # zipfile.BadZipFile, ValueError on pickled content, OSError
        raise DatasetError(f"{path}: unreadable arrays ({type(exc).__name__}: {exc}).") from None
    return _check_steps(steps, meta.num_frames, path)


def _check_steps(steps: dict[str, np.ndarray], num_frames: int, path: Path) -> dict[str, Any]:
    unknown = sorted(set(steps) - set(STEP_ARRAYS))
    if unknown:
        raise DatasetError(f"{path}: unknown array(s) {', '.join(unknown)}.")
    if "actions" not in steps:
        raise DatasetError(f"{path}: array 'actions' is missing.")
    expected = {
        "actions": num_frames - 1,
        "reward": num_frames - 1,
        "state": num_frames,
        "success": num_frames,
    }
    out = {}
    for name, array in steps.items():
        array = np.asarray(array)
        if array.dtype == object:
            raise DatasetError(f"{path}: array {name!r} holds Python objects.")
        if len(array) != expected[name]:
            raise DatasetError(
                f"{path}: array {name!r} has {len(array)} rows; the video has {num_frames} "
                f"frames, so {expected[name]} were expected."
            )
        if name in ("actions", "state") and array.ndim != 2:
            raise DatasetError(f"{path}: array {name!r} should be 2-D, got shape {array.shape}.")
        if array.dtype != bool and not np.all(np.isfinite(array)):
            raise DatasetError(f"{path}: array {name!r} contains NaN or inf.")
        out[name] = array.astype(STEP_ARRAYS[name], copy=False)
    return out


def write_manifest(root: str | os.PathLike[str]) -> dict[str, Any]:
    """Rebuild ``manifest.json`` from the complete episodes' meta files (single writer).

    Episodes whose meta does not parse are left out and listed under ``"unreadable"``; run
    ``vw-robot data check`` for details.
    """
    root = Path(root)
    with folder_lock(root, ".manifest.lock"):
        rows, unreadable = [], []
        for meta_path in sorted((root / EPISODES_DIR).glob(f"*/{META_FILE}")):
            try:
                meta = EpisodeMeta.from_json(read_json(meta_path), meta_path)
            except DatasetError as exc:
                unreadable.append(str(exc))
                continue
            rows.append(
                {
                    "episode_id": meta.episode_id,
                    "task_id": meta.task_id,
                    "num_frames": meta.num_frames,
                    "has_actions": meta.has_actions,
                    "success": meta.success,
                    "seed": meta.seed,
                    "source": meta.source,
                }
            )
        dropped = sorted(p.stem for p in (root / DROPPED_DIR).glob("*.json"))
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "episodes": rows,
            "dropped": dropped,
            "num_episodes": len(rows),
            "num_frames": sum(r["num_frames"] for r in rows),
            "unreadable": unreadable,
        }
        atomic_write_json(root / MANIFEST_FILE, manifest)
    return manifest


def read_manifest(root: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse ``manifest.json`` (after checking ``dataset.json``)."""
    read_dataset_info(root)
    path = Path(root) / MANIFEST_FILE
    manifest = read_json(path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("episodes"), list):
        raise DatasetError(f"{path}: malformed manifest (no 'episodes' list).")
    return manifest
