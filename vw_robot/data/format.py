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
                              reward (T,) float32, success (T+1,) bool; episodes of
                              several subtasks (chains, play) add subtask (T+1,) int64,
                              the index into meta's ``subtasks`` of the subtask each
                              frame's action serves; episodes recorded with action noise
                              add executed_actions (T, A) float32, what acted (``actions``
                              holds the expert's clean labels)
        meta.json             written last: its presence marks the episode complete
      dropped/<id>.json       failed demonstrations not kept (so a resumed run skips them)
      cache/                  decoded frames (uint8 memmaps), action statistics and exported
                              tokens; elsewhere when the dataset is not writable
                              (:func:`cache_root`)

Frame k is the observation before action k; the last frame has no action. Every write is
atomic, and workers write only their own episode folders, so an interrupted or parallel
collection never leaves a half-written episode or manifest.

Actions must lie in the episode's action space: ``meta.json``'s ``action_low`` /
``action_high`` when recorded, else :data:`DEFAULT_ACTION_BOUNDS` (every suite of vw_robot
uses Box[-1, 1]); :func:`load_steps` refuses values outside it, and NaN or inf anywhere.

The manifest's consistency with the episode folders (:func:`manifest_problems`) is checked by
:func:`read_manifest`, so every reader (``vw-robot data check``, the loaders, training) refuses
the same manifest with the same lines.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from vw_robot.data.video import CODECS, write_video
from vw_robot.errors import UserError
from vw_robot.io import atomic_write, atomic_write_json, folder_lock, sha256_file

log = logging.getLogger(__name__)

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
STEP_ARRAYS = {
    "actions": np.float32,
    "state": np.float32,
    "reward": np.float32,
    "success": bool,
    "subtask": np.int64,  # optional: chains and play
    "executed_actions": np.float32,  # optional: collected with action noise
}
# The action space assumed when meta.json records none (datasets written before the bounds
# were recorded): every suite of vw_robot has Box[-1, 1] actions.
DEFAULT_ACTION_BOUNDS = (-1.0, 1.0)
# Slack around the action space, as a share of each dimension's width: float32 rounding and
# experts that clip in float64 land within it; 1e30 or a unit mix-up (degrees for radians) do
# not.
ACTION_TOLERANCE = 1e-3
# Names of the temporary files that atomic writes leave behind when interrupted
# (io.atomic_write: ".<name>.<random>.tmp"; video.write_video: ".<stem>.tmp<suffix>").
TEMP_PATTERN = ".*.tmp*"
# Manifest row keys that must equal the episode's meta.
MANIFEST_KEYS = ("task_id", "num_frames", "has_actions", "success", "seed", "source")
_MANIFEST_HINT = "rebuild it with vw_robot.data.format.write_manifest"


class DatasetError(UserError):
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
    # The env's action space (Box low/high per dimension); None: DEFAULT_ACTION_BOUNDS.
    action_low: list[float] | None = None
    action_high: list[float] | None = None
    # Episodes of several subtasks (chains, play): one entry per subtask of the plan, in order,
    # {"subtask", "start" (its first frame), "success_step" (the frame its detector fired;
    # None: not reached or failed)}; steps.npz's ``subtask`` indexes this list per frame.
    subtasks: list[dict[str, Any]] | None = None
    # A segment cut from a multi-subtask episode: {"source_episode", "source_task",
    # "subtask_index", "start", "end" (source frames start..end, inclusive), "success_step"}.
    segment: dict[str, Any] | None = None
    # Std of the Gaussian noise added to the executed actions (DART); None or 0: none.
    action_noise: float | None = None
    # How a single subtask was reset: "home" (None on older episodes) or "random".
    start: str | None = None

    def to_json(self) -> dict[str, Any]:
        payload = asdict(self)
        # Keys added after version 1 are written only when set, so episodes without them
        # read the same as before (and older readers still read those).
        for key in _OPTIONAL_KEYS:
            if payload[key] is None:
                del payload[key]
        return payload

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
        optional = {
            "subtasks": (list, "a list"),
            "segment": (dict, "an object"),
            "action_noise": ((int, float), "a number"),
            "start": (str, "a string"),
        }
        for key, (kind, name) in optional.items():
            value = payload.get(key)
            if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
                raise DatasetError(
                    f"{source}: key {key!r} should be {name} or null, got {value!r}."
                )
        meta = cls(**payload)
        _check_bounds_keys(meta, source)
        return meta


_OPTIONAL_KEYS = ("subtasks", "segment", "action_noise", "start")


def _check_bounds_keys(meta: EpisodeMeta, source: str | os.PathLike[str]) -> None:
    """``action_low``/``action_high``: both absent or both lists of numbers, low <= high."""
    low, high = meta.action_low, meta.action_high
    if low is None and high is None:
        return
    for key, value in (("action_low", low), ("action_high", high)):
        if not isinstance(value, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            raise DatasetError(
                f"{source}: key {key!r} should be a list of numbers (one per action dimension) "
                f"or absent, got {value!r}."
            )
    if len(low) != len(high) or (meta.action_dim is not None and len(low) != meta.action_dim):
        raise DatasetError(
            f"{source}: action_low has {len(low)} value(s), action_high {len(high)}, "
            f"action_dim is {meta.action_dim}; they should agree."
        )
    if any(lo > hi for lo, hi in zip(low, high, strict=True)):
        raise DatasetError(f"{source}: action_low {low} exceeds action_high {high} somewhere.")


def action_bounds(meta: EpisodeMeta, action_dim: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """The episode's action space as (low, high) float64 arrays of ``action_dim`` values, and
    whether meta.json recorded it (False: :data:`DEFAULT_ACTION_BOUNDS`)."""
    if meta.action_low is None or meta.action_high is None:
        low, high = DEFAULT_ACTION_BOUNDS
        return np.full(action_dim, low), np.full(action_dim, high), False
    return np.asarray(meta.action_low, np.float64), np.asarray(meta.action_high, np.float64), True


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


def cache_root(
    root: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """The folder that holds a dataset's derived files (frame cache, action statistics,
    exported tokens); every writer of such files asks here.

    - ``cache_dir`` given: ``<cache_dir>/<dataset key>``, so one cache folder serves many
      datasets without their episode ids colliding.
    - the dataset folder is writable: ``<root>/cache`` (the dataset carries its own cache).
    - otherwise (a read-only or another user's dataset; a folder with no write bit for
      anyone counts as read-only, for root too): the per-user
      ``$XDG_CACHE_HOME/vw_robot/<dataset key>`` (``~/.cache`` when the variable is unset).

    The dataset key is ``<folder name>-<first 16 hex of the SHA-256 of its absolute path>``.
    Nothing is created here; the first writer creates the folder. The choice is logged once
    per process.
    """
    root = Path(root)
    own = root / CACHE_DIR
    if cache_dir is not None:
        folder, why = Path(cache_dir) / _dataset_key(root), "cache_dir given"
    elif _writable(own if own.exists() else root):
        folder, why = own, "inside the dataset"
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        folder = Path(base) / "vw_robot" / _dataset_key(root)
        why = f"{own if own.exists() else root} is not writable"
    if (str(root), str(folder)) not in _LOGGED_CACHES:
        _LOGGED_CACHES.add((str(root), str(folder)))
        log.info("cache of dataset %s: %s (%s)", root, folder, why)
    return folder


_LOGGED_CACHES: set[tuple[str, str]] = set()


def _dataset_key(root: Path) -> str:
    absolute = os.path.abspath(root)
    digest = hashlib.sha256(absolute.encode()).hexdigest()[:16]
    return f"{Path(absolute).name or 'dataset'}-{digest}"


def _writable(folder: Path) -> bool:
    # access() also answers False on a read-only mount, and writes nothing into the dataset.
    # Root passes access() whatever the mode, so a folder without a write bit for anyone (a
    # dataset made read-only with chmod -R a-w) counts as read-only too.
    try:
        mode = folder.stat().st_mode
    except OSError:
        return False
    return bool(mode & 0o222) and os.access(folder, os.W_OK | os.X_OK)


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


def codec_problems(root: str | os.PathLike[str], info: dict[str, Any]) -> list[str]:
    """One line when ``dataset.json`` names a codec preset this vw_robot does not know."""
    if info.get("codec") in CODECS:
        return []
    return [
        f"{Path(root) / DATASET_FILE}: codec {info.get('codec')!r} is not a known preset "
        f"({', '.join(CODECS)})."
    ]


def write_episode(
    root: str | os.PathLike[str],
    meta: EpisodeMeta,
    frames: np.ndarray,
    steps: dict[str, np.ndarray] | None = None,
) -> EpisodeMeta:
    """Write one episode: video, arrays, then meta (the completion marker), each atomically.

    ``meta.num_frames``, ``image_size``, ``has_actions``, ``action_dim``, ``state_dim`` and
    ``video_sha256`` are filled in from what is written. Give the env's action space as
    ``meta.action_low`` / ``meta.action_high`` (``env.action_space.low.tolist()``); without
    them readers assume :data:`DEFAULT_ACTION_BOUNDS`.

    Args:
        root: dataset folder.
        meta: the episode's metadata.
        frames: (T+1, H, W, 3) uint8.
        steps: per-step arrays (see module docstring) or None for a video without actions.

    Raises:
        DatasetError: the arrays do not fit the frames, hold NaN or inf, or actions lie
            outside the action space (nothing of the episode is written then).
    """
    if frames.ndim != 4 or frames.shape[1] != frames.shape[2]:
        raise ValueError(f"frames must be (T, S, S, 3) with square images, got {frames.shape}.")
    folder = episode_dir(root, meta.episode_id)
    meta.num_frames, meta.image_size = int(len(frames)), int(frames.shape[1])
    if steps is not None:
        actions = np.asarray(steps.get("actions"))
        meta.action_dim = int(actions.shape[1]) if actions.ndim == 2 else None
        _check_bounds_keys(meta, folder / META_FILE)
        steps = _check_steps(steps, meta, folder / STEPS_FILE)
        meta.state_dim = int(steps["state"].shape[1]) if "state" in steps else None
    folder.mkdir(parents=True, exist_ok=True)
    # An episode being rewritten must not look complete (old meta, new video) after a crash.
    (folder / META_FILE).unlink(missing_ok=True)
    if steps is None:
        (folder / STEPS_FILE).unlink(missing_ok=True)
    else:
        atomic_write(folder / STEPS_FILE, lambda f: np.savez(f, **steps))
    meta.has_actions = steps is not None
    write_video(folder / VIDEO_FILE, frames, meta.fps, meta.codec)
    meta.video_sha256 = sha256_file(folder / VIDEO_FILE)
    atomic_write_json(folder / META_FILE, meta.to_json())
    return meta


def write_dropped(root: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Record a demonstration that failed and was not kept (resume skips it)."""
    atomic_write_json(Path(root) / DROPPED_DIR / f"{record['episode_id']}.json", record)


def load_steps(root: str | os.PathLike[str], meta: EpisodeMeta) -> dict[str, np.ndarray]:
    """Load and check an episode's per-step arrays (no pickled objects are ever loaded).

    Raises:
        DatasetError: the file is missing or unreadable; an array has the wrong rows, shape
            or dimension; a value is NaN or inf; an action lies outside the action space.
            One line, naming the file, the episode, and for values the step, dimension and
            value.
    """
    path = episode_dir(root, meta.episode_id) / STEPS_FILE
    try:
        with np.load(path, allow_pickle=False) as npz:
            steps = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise DatasetError(f"{path}: file is missing (meta says has_actions=true).") from None
    except Exception as exc:  # zipfile.BadZipFile, ValueError on pickled content, OSError
        raise DatasetError(f"{path}: unreadable arrays ({type(exc).__name__}: {exc}).") from None
    return _check_steps(steps, meta, path)


def _check_steps(steps: dict[str, np.ndarray], meta: EpisodeMeta, path: Path) -> dict[str, Any]:
    """Shapes, finiteness and the action range of one episode's arrays (first fault raised)."""
    num_frames = meta.num_frames
    unknown = sorted(set(steps) - set(STEP_ARRAYS))
    if unknown:
        raise DatasetError(f"{path}: unknown array(s) {', '.join(unknown)}.")
    if "actions" not in steps:
        raise DatasetError(f"{path}: array 'actions' is missing.")
    expected = {
        "actions": num_frames - 1,
        "executed_actions": num_frames - 1,
        "reward": num_frames - 1,
        "state": num_frames,
        "success": num_frames,
        "subtask": num_frames,
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
        if name in ("actions", "executed_actions", "state") and array.ndim != 2:
            raise DatasetError(f"{path}: array {name!r} should be 2-D, got shape {array.shape}.")
        if array.dtype != bool:
            bad = ~np.isfinite(array)
            if bad.any():
                raise DatasetError(
                    f"{path}: array {name!r} contains NaN or inf in episode "
                    f"{meta.episode_id!r}: {_where(name, bad, array)} "
                    f"({int(bad.sum())} non-finite value(s) in all)."
                )
        out[name] = array.astype(STEP_ARRAYS[name], copy=False)
    if "subtask" in out and len(out["subtask"]):
        count = len(meta.subtasks or ())
        bad = (out["subtask"] < 0) | (out["subtask"] >= count)
        if bad.any():
            raise DatasetError(
                f"{path}: array 'subtask' of episode {meta.episode_id!r} holds "
                f"{int(out['subtask'][bad][0])} at frame {int(np.argmax(bad))}; meta.json lists "
                f"{count} subtask(s)."
            )
    _check_action_range(out["actions"], meta, path)
    return out


def _where(name: str, bad: np.ndarray, array: np.ndarray) -> str:
    """'step 3, dimension 1 is nan': the first flagged entry (rows of state/success are frames)."""
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    row = "frame" if name in ("state", "success") else "step"
    place = f"{row} {index[0]}" + (f", dimension {index[1]}" if len(index) > 1 else "")
    return f"{place} is {float(array[index]):g}"


def _check_action_range(actions: np.ndarray, meta: EpisodeMeta, path: Path) -> None:
    if not actions.size:
        return
    if meta.action_low is not None and len(meta.action_low) != actions.shape[1]:
        raise DatasetError(
            f"{path}: array 'actions' has dimension {actions.shape[1]}, meta.json's action_low "
            f"has {len(meta.action_low)} value(s)."
        )
    low, high, recorded = action_bounds(meta, actions.shape[1])
    width = high - low
    slack = ACTION_TOLERANCE * np.where(np.isfinite(width), width, 0.0)
    values = actions.astype(np.float64)
    bad = (values < low - slack) | (values > high + slack)
    if not bad.any():
        return
    step, dim = (int(i) for i in np.argwhere(bad)[0])
    space = (
        "the action space in meta.json"
        if recorded
        else "the default action space Box[-1, 1]; meta.json records none"
    )
    raise DatasetError(
        f"{path}: action out of range in episode {meta.episode_id!r}: step {step}, dimension "
        f"{dim} is {float(actions[step, dim]):g}, outside [{low[dim]:g}, {high[dim]:g}] "
        f"({space}; tolerance {ACTION_TOLERANCE:g} of the width); {int(bad.sum())} value(s) "
        "out of range in all."
    )


def list_episode_folders(root: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """The folder names under ``episodes/`` (sorted; leftovers of interrupted writes left out)
    and one problem line per thing there that is not an episode folder."""
    episodes = Path(root) / EPISODES_DIR
    ids: list[str] = []
    problems: list[str] = []
    if episodes.is_dir():
        for entry in sorted(episodes.iterdir()):
            if fnmatch.fnmatch(entry.name, TEMP_PATTERN):
                continue  # vw_robot.data.check warns about these
            if entry.is_dir():
                ids.append(entry.name)
            else:
                problems.append(f"{entry}: stray file in {EPISODES_DIR}/ (not an episode folder).")
    elif episodes.exists():
        problems.append(f"{episodes}: should be a folder.")
    return ids, problems


def dropped_problems(root: str | os.PathLike[str]) -> list[str]:
    """One line per record under ``dropped/`` that does not parse."""
    problems = []
    for record in sorted((Path(root) / DROPPED_DIR).glob("*.json")):
        try:
            read_json(record)
        except DatasetError as exc:
            problems.append(str(exc))
    return problems


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


def _parse_manifest(root: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The manifest, or None and the line that says why it cannot be used."""
    path = root / MANIFEST_FILE
    try:
        manifest = read_json(path)
    except DatasetError as exc:
        return None, f"{str(exc).rstrip('.')}; {_MANIFEST_HINT}."
    if not isinstance(manifest, dict) or not isinstance(manifest.get("episodes"), list):
        return None, f"{path}: malformed manifest (no 'episodes' list); {_MANIFEST_HINT}."
    return manifest, None


def manifest_problems(root: str | os.PathLike[str], metas: dict[str, EpisodeMeta]) -> list[str]:
    """Every way ``manifest.json`` disagrees with the complete episodes, one line each.

    The manifest must list each complete episode (``metas``: folder name -> parsed meta)
    exactly once, with the values in its meta, and no episode without a ``meta.json``; its
    format, version and totals must add up. A missing manifest is only a problem once there
    are episodes to list. :func:`read_manifest` refuses a manifest with any of these, and
    ``vw-robot data check`` lists them, with the same lines.
    """
    root = Path(root)
    path = root / MANIFEST_FILE
    if not path.exists() and not metas:
        return []  # a fresh dataset has no manifest yet
    manifest, problem = _parse_manifest(root)
    if manifest is None:
        return [problem]
    problems = []
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        problems.append(
            f"{path}: format/version {manifest.get('format')!r}/{manifest.get('version')!r}, "
            f"expected {FORMAT!r}/{VERSION}."
        )
    seen: set[str] = set()
    for index, row in enumerate(manifest["episodes"]):
        if not isinstance(row, dict) or not isinstance(row.get("episode_id"), str):
            problems.append(f"{path}: episodes[{index}] is not a row with an 'episode_id'.")
            continue
        episode_id = row["episode_id"]
        if episode_id in seen:
            problems.append(f"{path}: episode {episode_id!r} is listed more than once.")
            continue
        seen.add(episode_id)
        meta = metas.get(episode_id)
        if meta is None:
            meta_path = episode_dir(root, episode_id) / META_FILE
            if not meta_path.exists():
                problems.append(
                    f"{path}: lists episode {episode_id!r} but {meta_path} does not exist; "
                    f"{_MANIFEST_HINT}."
                )
            continue  # an unparsable meta is the episode's problem (check_episode)
        for key in MANIFEST_KEYS:
            if key in row and row[key] != getattr(meta, key):
                problems.append(
                    f"{path}: episode {episode_id!r} has {key}={row[key]!r}, its meta.json says "
                    f"{getattr(meta, key)!r}; {_MANIFEST_HINT}."
                )
        missing = [k for k in MANIFEST_KEYS if k not in row]
        if missing:
            problems.append(
                f"{path}: episode {episode_id!r} lacks key(s) {', '.join(missing)}; "
                f"{_MANIFEST_HINT}."
            )
    unlisted = sorted(set(metas) - seen)
    if unlisted:
        shown = ", ".join(unlisted[:5]) + (
            f" and {len(unlisted) - 5} more" if len(unlisted) > 5 else ""
        )
        problems.append(f"{path}: complete episode(s) not listed: {shown}; {_MANIFEST_HINT}.")
    rows = [r for r in manifest["episodes"] if isinstance(r, dict)]
    totals = {
        "num_episodes": len(manifest["episodes"]),
        "num_frames": sum(
            r.get("num_frames", 0) for r in rows if isinstance(r.get("num_frames"), int)
        ),
    }
    for key, value in totals.items():
        if key in manifest and manifest[key] != value:
            problems.append(f"{path}: {key} is {manifest[key]!r} but its rows add up to {value}.")
    return problems


def parsed_metas(root: str | os.PathLike[str], episode_ids: list[str]) -> dict[str, EpisodeMeta]:
    """The meta of each of the episodes whose ``meta.json`` exists and parses (the others are
    their episode's problem, reported by ``vw_robot.data.check.check_episode``)."""
    metas = {}
    for episode_id in episode_ids:
        try:
            metas[episode_id] = read_meta(root, episode_id)
        except DatasetError:
            continue
    return metas


def read_manifest(root: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse ``manifest.json`` after checking ``dataset.json`` and the dataset's layout.

    Every dataset-level problem ``vw-robot data check`` reports is refused here with the same
    line: the codec preset, stray files in ``episodes/``, unreadable ``dropped/`` records and
    each disagreement of the manifest with the complete episodes (:func:`manifest_problems`:
    an episode listed twice, a complete episode left out, a listed episode without
    ``meta.json``, values that differ from its meta, totals). Per-episode problems are the
    loaders' to check (``vw_robot.data.check.check_episode``).

    Raises:
        DatasetError: one line for a missing or malformed ``dataset.json`` or manifest; else
            the count and every problem, one per line.
    """
    root = Path(root)
    info = read_dataset_info(root)
    manifest, problem = _parse_manifest(root)
    if manifest is None:
        raise DatasetError(problem)
    ids, problems = list_episode_folders(root)
    problems = codec_problems(root, info) + problems
    problems += manifest_problems(root, parsed_metas(root, ids))
    problems += dropped_problems(root)
    if problems:
        raise DatasetError(
            f"{root}: {len(problems)} problem(s) `vw-robot data check {root}` reports too "
            "(it also checks every episode):\n  " + "\n  ".join(problems)
        )
    return manifest
