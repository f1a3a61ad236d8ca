"""LeRobotDataset folders in and out: import v3.0 (and v2.x) into our format, export v3.0.

Usage::

    from vw_robot.data.lerobot import export_lerobot, import_lerobot, validate_lerobot

    # our dataset -> LeRobotDataset v3.0; task strings: instructions (task id -> text)
    export_lerobot("data/mt10", "exports/mt10_lerobot", instructions=INSTRUCTIONS)
    assert validate_lerobot("exports/mt10_lerobot") == []
    import_lerobot("~/lerobot/pusht", "data/pusht", image_size=64)  # LeRobot -> our format

(``INSTRUCTIONS`` is :data:`vw_robot.envs.instructions.INSTRUCTIONS`; this layer does not
import the envs, so the caller passes it.)

Written with pyarrow alone (``lerobot`` pins an older torch), after LeRobot's own reader and
writer (``src/lerobot/datasets/``: ``utils.py``, ``dataset_metadata.py``, ``dataset_writer.py``,
``io_utils.py``, ``compute_stats.py``, ``video_utils.py``). A v3.0 folder::

    meta/info.json                              codebase_version "v3.0", fps, features, path
                                                templates, totals, splits, robot_type
    meta/stats.json                             min/max/mean/std/count/q01..q99 per feature
    meta/tasks.parquet                          task_index, and the task strings as the
                                                pandas index ("__index_level_0__" from
                                                LeRobot's writer, "task" from ours)
    meta/episodes/chunk-000/file-000.parquet    one row per episode: tasks, length, data and
                                                video file indices, dataset_from/to_index,
                                                videos/<key>/from/to_timestamp, stats/<f>/<s>
    data/chunk-000/file-000.parquet             one row per frame: features, timestamp,
                                                frame_index, episode_index, index, task_index
    videos/<key>/chunk-000/file-000.mp4         episodes one after another in each file

Frames and actions: a LeRobot row holds an observation and the action taken at it, so an
episode of N rows has N observations and N actions; LeRobot's recorder never stores the
observation that follows the last action. Ours has N frames and N-1 actions: frame k is the
observation before action k, and the last frame (often the one that shows success) is the
outcome of the last action. So

- export writes an episode of N frames as N-1 rows, each a real (frame k, state k, action k),
  and appends frame N-1 to the video right after the rows' frames (LeRobot's readers look
  frames up by the rows' timestamps and never see it; the next episode starts after it) and
  state N-1 to the episodes file (column ``vw_robot/final_state``); ``info.json`` says so
  under the ``vw_robot`` key. No action is invented or repeated.
- import of such a folder reads the N-1 rows and the final frame and state back: the round
  trip is exact.
- import of any other LeRobot folder keeps its N frames and the first N-1 actions: the last
  row's action has no frame showing its outcome, which our format has no place for.

``info.json``'s ``vw_robot`` key (ignored by LeRobot) also records the env's action space
(``action_low`` / ``action_high``, one value per dimension, "inf"/"-inf" for unbounded) and the
task id behind each task string (``task_ids``): exports write a task's natural-language
instruction as LeRobot's task string when the caller passes one (``instructions=``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vw_robot.data.format import (
    VIDEO_FILE,
    DatasetError,
    EpisodeMeta,
    action_bounds,
    episode_dir,
    init_dataset,
    is_complete,
    load_steps,
    read_dataset_info,
    read_json,
    read_manifest,
    read_meta,
    write_episode,
    write_manifest,
)
from vw_robot.data.importer import decode_resized
from vw_robot.data.video import CODECS, read_video, resize_frames
from vw_robot.errors import UserError
from vw_robot.io import atomic_write_json
from vw_robot.provenance import provenance

log = logging.getLogger(__name__)

CODEBASE_VERSION = "v3.0"
READ_VERSIONS = ("v3.0", "v2.1", "v2.0")
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
EPISODES_PATH = f"{EPISODES_DIR}/{CHUNK_FILE}.parquet"
DATA_PATH = f"data/{CHUNK_FILE}.parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE + ".mp4"
LEGACY_EPISODES_PATH = "meta/episodes.jsonl"
LEGACY_TASKS_PATH = "meta/tasks.jsonl"
# info.json's key for what vw_robot's exports add (LeRobot keeps and ignores unknown keys).
OURS_KEY = "vw_robot"
FINAL_STATE_COLUMN = "vw_robot/final_state"  # episodes file: the state after the last row
# LeRobot's defaults (utils.py): files per chunk folder, and the sizes at which a data or
# video file is closed and the next one started.
CHUNKS_SIZE = 1000
DATA_FILES_SIZE_IN_MB = 100
VIDEO_FILES_SIZE_IN_MB = 200
# Columns every frame row has (LeRobot's DEFAULT_FEATURES).
DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)  # written as q01, q10, q50, q90, q99
# Pixel format each of our codec presets produces (probed with ffmpeg).
_PIX_FMT = {"lossless": "gbrp", "high": "yuv444p", "standard": "yuv420p"}
# Seconds: LeRobot's default tolerance between a queried and a decoded frame timestamp.
_TOLERANCE_S = 1e-4
_EPISODE_COLUMNS = {  # v3.0 episodes parquet: column -> arrow type check
    "episode_index": pa.types.is_integer,
    "tasks": lambda t: _is_list(t) and _is_text(t.value_type),
    "length": pa.types.is_integer,
    "data/chunk_index": pa.types.is_integer,
    "data/file_index": pa.types.is_integer,
    "dataset_from_index": pa.types.is_integer,
    "dataset_to_index": pa.types.is_integer,
}


# --------------------------------------------------------------------------------- import


@dataclass
class _SourceEpisode:
    """Where one episode of a LeRobot folder lives."""

    index: int
    length: int
    data_file: Path
    video_file: Path | None  # None: frames are in the parquet rows
    video_from: float  # seconds into video_file at which the episode starts
    tasks: list[str]  # from the episodes metadata (the rows' task_index wins)
    meta_file: Path  # the metadata file that describes it (named in errors)
    final_state: list[float] | None = None  # our exports: the state after the last row


def import_lerobot(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    camera_key: str | None = None,
    image_size: int = 64,
    codec: str = "lossless",
    version: str | None = None,
    task_ids: Mapping[str, str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Import a LeRobotDataset folder (v3.0, or v2.1/v2.0) as episodes of the dataset ``out``.

    One camera becomes the episode video, centre-cropped to a square and resized to
    ``image_size`` like :func:`vw_robot.data.importer.import_videos`; it may be stored as mp4
    videos or inside the parquet rows (encoded image bytes, or arrays). ``action`` becomes
    the actions and ``observation.state`` the proprio state (frames and actions line up as
    the module docstring says: a folder we exported comes back exactly, another keeps its N
    frames and N-1 actions); a dataset without ``action`` gives videos without actions. An
    episode's task id is the task id recorded by our export, else ``task_ids[task string]``,
    else the task string as written (of its first row). The action space is the one recorded
    by our export; LeRobot records none, so for other folders it is the actions' per-dimension
    min/max over the whole source (logged). Episode ids derive from the source folder and the
    episode index, so a rerun skips what is complete and finishes what was interrupted;
    ``manifest.json`` is rebuilt at the end, also when the import stops early.

    Args:
        src: the LeRobot dataset folder (with ``meta/info.json``).
        out: dataset folder (created, or an existing dataset with the same settings).
        camera_key: the image or video feature to import. Default: the only one.
        image_size: side of the square frames stored.
        codec: video preset (:data:`vw_robot.data.video.CODECS`).
        version: the ``codebase_version`` expected (``"v3.0"``, ``"v2.1"``); None reads it
            from ``meta/info.json``.
        task_ids: task string -> task id, for task strings that are instructions of known
            tasks (the CLI passes :data:`vw_robot.envs.instructions.INSTRUCTIONS` reversed).

    Returns:
        ``imported`` (episodes written by this call), ``skipped_existing``, ``episodes`` (in
        the source), ``frames`` and ``bytes`` (of the videos written by this call), ``fps``,
        ``camera_key`` and ``version``.

    Raises:
        DatasetError: a file of ``src`` is missing or malformed, or disagrees with another
            (the message names the file and the field); ``out`` holds a dataset with other
            settings.
        UserError: a bad argument.
    """
    if codec not in CODECS:
        raise UserError(f"codec={codec!r} is unknown; presets: {', '.join(CODECS)}.")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise UserError(f"image_size must be a positive int, got {image_size!r}.")
    src, out = Path(src).expanduser(), Path(out)
    if not src.is_dir():
        raise UserError(f"{src}: LeRobot dataset folder does not exist.")
    info = _read_info(src, version)
    fps = info["fps"]
    camera_key = _choose_camera(src, info["features"], camera_key)
    camera = info["features"][camera_key]
    tasks = _read_tasks(src, info["codebase_version"])
    ours = _read_ours(src / INFO_PATH, info, camera["dtype"])
    task_ids = {**(task_ids or {}), **ours["task_ids"]}
    episodes = _read_episodes(src, info, camera_key, ours["final_frame"])
    has_action = "action" in info["features"]
    has_state = has_action and "observation.state" in info["features"]
    bounds = None
    if has_action:
        bounds = ours["bounds"] or _action_bounds(episodes)
        if ours["bounds"] is None:
            log.info(
                "%s: no action space recorded (LeRobot records none); the actions' range over "
                "the data is used: low %s, high %s.",
                src,
                [round(v, 4) for v in bounds[0]],
                [round(v, 4) for v in bounds[1]],
            )
    if has_action and not ours["final_frame"]:
        log.info(
            "%s: each episode keeps its N frames and the actions of its first N-1 rows (the "
            "last row's action has no frame showing its outcome).",
            src,
        )

    init_dataset(out, image_size=image_size, fps=fps, codec=codec)
    versions = provenance()["packages"]
    prefix = _episode_prefix(src)
    summary: dict[str, Any] = {
        "imported": 0,
        "skipped_existing": 0,
        "episodes": len(episodes),
        "frames": 0,
        "bytes": 0,
        "fps": fps,
        "camera_key": camera_key,
        "version": info["codebase_version"],
    }
    rows = _RowReader()
    videos = _VideoReader(image_size, fps)
    try:
        for done, episode in enumerate(episodes):
            if progress is not None:  # (episodes handled, of all): a progress bar's callback
                progress(done, len(episodes))
            episode_id = f"{prefix}{episode.index:06d}"
            if is_complete(out, episode_id):
                summary["skipped_existing"] += 1
                continue
            table = rows.episode(episode)
            if camera["dtype"] == "image":
                frames = _image_frames(table, camera_key, camera, episode.data_file, src)
                frames = resize_frames(frames, image_size)
            else:
                timestamps = _timestamps(table, fps)
                if ours["final_frame"]:  # the frame after the last row (module docstring)
                    timestamps = np.append(timestamps, timestamps[-1] + 1 / fps)
                frames = videos.episode(episode, timestamps)
            steps = None
            if has_action:
                actions = _numeric(table, "action", episode.data_file, 2)
                steps = {"actions": actions if ours["final_frame"] else actions[:-1]}
                if has_state:
                    state = _numeric(table, "observation.state", episode.data_file, 2)
                    if ours["final_frame"]:
                        state = np.concatenate([state, _final_state(episode, state.shape[1])])
                    steps["state"] = state
            task = _episode_task(table, tasks, episode)
            meta = EpisodeMeta(
                episode_id=episode_id,
                task_id=task_ids.get(task, task),
                num_frames=len(frames),
                image_size=image_size,
                fps=fps,
                has_actions=steps is not None,
                source=f"import:lerobot:{src.name}:episode_{episode.index}",
                codec=codec,
                video_sha256="",  # filled in by write_episode
                versions=dict(versions),
                action_low=None if bounds is None else bounds[0],
                action_high=None if bounds is None else bounds[1],
            )
            write_episode(out, meta, frames, steps)
            summary["imported"] += 1
            summary["frames"] += len(frames)
            summary["bytes"] += (episode_dir(out, episode_id) / VIDEO_FILE).stat().st_size
    finally:
        # Rebuilt from the episodes on disk, so it is right however far the loop got.
        write_manifest(out)
    log.info(
        "import-lerobot: %d imported, %d already there -> %s",
        summary["imported"],
        summary["skipped_existing"],
        out,
    )
    return summary


def _read_info(src: Path, version: str | None) -> dict[str, Any]:
    path = src / INFO_PATH
    info = read_json(path)
    if not isinstance(info, dict):
        raise DatasetError(f"{path}: expected a JSON object, got {type(info).__name__}.")
    found = info.get("codebase_version")
    if found not in READ_VERSIONS:
        raise DatasetError(
            f"{path}: field 'codebase_version' is {found!r}; this reader knows "
            f"{', '.join(READ_VERSIONS)}."
        )
    if version is not None and version != found:
        raise DatasetError(
            f"{path}: field 'codebase_version' is {found!r}, version={version!r} was asked for."
        )
    fps = info.get("fps")
    if isinstance(fps, float) and fps.is_integer():
        fps = int(fps)
    if isinstance(fps, bool) or not isinstance(fps, int) or fps < 1:
        raise DatasetError(f"{path}: field 'fps' should be a positive int, got {fps!r}.")
    info["fps"] = fps
    features = info.get("features")
    if not isinstance(features, dict) or not all(
        isinstance(f, dict) and isinstance(f.get("dtype"), str) for f in features.values()
    ):
        raise DatasetError(
            f"{path}: field 'features' should map each feature name to an object with a 'dtype'."
        )
    for key in ("data_path", *(["video_path"] if _video_keys(features) else [])):
        if not isinstance(info.get(key), str):
            raise DatasetError(f"{path}: field {key!r} should be a path template string.")
    return info


def _video_keys(features: dict[str, Any]) -> list[str]:
    return [k for k, f in features.items() if f["dtype"] == "video"]


def _choose_camera(src: Path, features: dict[str, Any], camera_key: str | None) -> str:
    cameras = [k for k, f in features.items() if f["dtype"] in ("image", "video")]
    path = src / INFO_PATH
    if camera_key is not None:
        if camera_key not in cameras:
            raise DatasetError(
                f"{path}: camera_key={camera_key!r} is not an image or video feature; "
                f"'features' has {', '.join(cameras) or 'none'}."
            )
        return camera_key
    if len(cameras) == 1:
        return cameras[0]
    if not cameras:
        raise DatasetError(f"{path}: 'features' has no image or video feature to import.")
    raise DatasetError(
        f"{path}: 'features' has {len(cameras)} cameras ({', '.join(cameras)}); choose one "
        "with camera_key=..."
    )


def _read_tasks(src: Path, version: str) -> dict[int, str]:
    """task_index -> task string."""
    if version != CODEBASE_VERSION:
        path = src / LEGACY_TASKS_PATH
        rows = _read_jsonl(path)
        try:
            return {int(r["task_index"]): str(r["task"]) for r in rows}
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"{path}: each line should have 'task_index' and 'task'.") from None
    path = src / TASKS_PATH
    table = _read_table(path)
    if "task_index" not in table.column_names:
        raise DatasetError(f"{path}: column 'task_index' is missing.")
    column = _task_column(table.schema, path)
    indices, texts = table.column("task_index").to_pylist(), table.column(column).to_pylist()
    return dict(zip(indices, texts, strict=True))


def _is_text(kind: pa.DataType) -> bool:
    """Arrow string types: pandas 2 writes ``string``, pandas 3 ``large_string``."""
    is_view = getattr(pa.types, "is_string_view", lambda _: False)  # pyarrow >= 16
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or is_view(kind)


def _pandas_index(schema: pa.Schema) -> list[Any] | None:
    """The ``index_columns`` of a parquet file's pandas metadata (None: no pandas metadata)."""
    metadata = schema.metadata or {}
    try:
        index = json.loads(metadata.get(b"pandas", b"null") or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return index.get("index_columns") if isinstance(index, dict) else None


def _task_column(schema: pa.Schema, path: Path) -> str:
    """The column of meta/tasks.parquet that holds the task strings.

    LeRobot builds the file as ``pd.DataFrame({"task_index": ...}, index=tasks)``: pandas
    stores the unnamed index as the column ``__index_level_0__`` (``string`` under pandas 2,
    ``large_string`` under pandas 3) and names it in the pandas metadata; older files and ours
    name the index ``task``. A column the pandas metadata names as the index wins, then one
    called ``task`` or ``__index_level_0__``, then the only string column.
    """
    texts = [f.name for f in schema if f.name != "task_index" and _is_text(f.type)]
    index = [c for c in _pandas_index(schema) or [] if isinstance(c, str)]
    for name in (*index, "task", "__index_level_0__"):
        if name in texts:
            return name
    if len(texts) == 1:
        return texts[0]
    found = ", ".join(f"{f.name}: {f.type}" for f in schema) or "none"
    if not texts:
        raise DatasetError(
            f"{path}: no string column with the task text (expected the pandas index 'task' "
            f"or '__index_level_0__', or a column 'task'); columns: {found}."
        )
    raise DatasetError(
        f"{path}: {len(texts)} string columns ({', '.join(texts)}) and none is the pandas "
        "index, 'task' or '__index_level_0__'; which holds the task text is unclear."
    )


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise DatasetError(f"{path}: file is missing.") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: line {number} is malformed JSON ({exc}).") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{path}: line {number} should be a JSON object.")
        rows.append(row)
    return rows


def _read_episodes(
    src: Path, info: dict[str, Any], camera_key: str, final_frame: bool = False
) -> list[_SourceEpisode]:
    is_video = info["features"][camera_key]["dtype"] == "video"
    if info["codebase_version"] != CODEBASE_VERSION:
        return _read_legacy_episodes(src, info, camera_key if is_video else None)
    files = sorted((src / EPISODES_DIR).glob("*/*.parquet"))
    if not files:
        raise DatasetError(
            f"{src / EPISODES_DIR}: no episodes parquet file (chunk-*/file-*.parquet)."
        )
    needed = ["episode_index", "length", "data/chunk_index", "data/file_index"]
    video_columns = [
        f"videos/{camera_key}/{c}" for c in ("chunk_index", "file_index", "from_timestamp")
    ]
    episodes = []
    for path in files:
        schema = _read_schema(path)
        columns = needed + (video_columns if is_video else [])
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise DatasetError(f"{path}: column(s) {', '.join(missing)} missing.")
        optional = [c for c in ("tasks", FINAL_STATE_COLUMN) if c in schema.names]
        needs_final_state = final_frame and "observation.state" in info["features"]
        if needs_final_state and FINAL_STATE_COLUMN not in optional:
            raise DatasetError(
                f"{path}: column {FINAL_STATE_COLUMN!r} missing; {src / INFO_PATH} says each "
                "episode's final frame follows its rows."
            )
        for row in _read_table(path, columns + optional).to_pylist():
            if any(row[c] is None for c in columns):
                raise DatasetError(
                    f"{path}: episode {row['episode_index']} has an empty field among "
                    f"{', '.join(columns)}."
                )
            video_file = None
            if is_video:
                video_file = src / info["video_path"].format(
                    video_key=camera_key,
                    chunk_index=row[video_columns[0]],
                    file_index=row[video_columns[1]],
                )
            episodes.append(
                _SourceEpisode(
                    index=int(row["episode_index"]),
                    length=int(row["length"]),
                    data_file=src
                    / info["data_path"].format(
                        chunk_index=row["data/chunk_index"], file_index=row["data/file_index"]
                    ),
                    video_file=video_file,
                    video_from=float(row[video_columns[2]]) if is_video else 0.0,
                    tasks=list(row.get("tasks") or []),
                    meta_file=path,
                    final_state=row.get(FINAL_STATE_COLUMN),
                )
            )
    return _checked_order(episodes, src / EPISODES_DIR)


def _read_ours(path: Path, info: dict[str, Any], camera_dtype: str) -> dict[str, Any]:
    """What our export recorded under info.json's ``vw_robot`` key: ``bounds`` ((low, high)
    or None), ``task_ids`` (task string -> id) and ``final_frame`` (bool)."""
    ours = info.get(OURS_KEY)
    if ours is None:
        return {"bounds": None, "task_ids": {}, "final_frame": False}
    where = f"{path}: field {OURS_KEY!r}"
    if not isinstance(ours, dict):
        raise DatasetError(f"{where} should be an object, got {ours!r}.")
    task_ids = ours.get("task_ids", {})
    if not isinstance(task_ids, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in task_ids.items()
    ):
        raise DatasetError(f"{where}.task_ids should map task strings to task ids.")
    final_frame = ours.get("final_frame", False)
    if not isinstance(final_frame, bool) or (final_frame and camera_dtype != "video"):
        raise DatasetError(f"{where}.final_frame should be true (video cameras only) or false.")
    bounds = None
    if "action_low" in ours or "action_high" in ours:
        dim = (info["features"].get("action") or {}).get("shape") or [None]
        try:
            low, high = ([float(v) for v in ours[k]] for k in ("action_low", "action_high"))
        except (KeyError, TypeError, ValueError):
            raise DatasetError(
                f"{where}: action_low and action_high should both be lists of numbers."
            ) from None
        ordered = len(low) == len(high) and all(a <= b for a, b in zip(low, high, strict=True))
        if len(low) != dim[0] or not ordered:
            raise DatasetError(
                f"{where}: action_low / action_high should hold {dim[0]} values each (the "
                "'action' feature's shape) with low <= high."
            )
        bounds = (low, high)
    return {"bounds": bounds, "task_ids": task_ids, "final_frame": final_frame}


def _final_state(episode: _SourceEpisode, dim: int) -> np.ndarray:
    """(1, dim) float32: the state after the episode's last row, from the episodes file."""
    value = np.asarray(episode.final_state or [], np.float32)
    if value.shape != (dim,) or not np.all(np.isfinite(value)):
        raise DatasetError(
            f"{episode.meta_file}: episode {episode.index}: column {FINAL_STATE_COLUMN!r} should "
            f"hold {dim} finite numbers, got {episode.final_state!r}."
        )
    return value[None]


def _read_legacy_episodes(
    src: Path, info: dict[str, Any], video_key: str | None
) -> list[_SourceEpisode]:
    """v2.x: one parquet and one mp4 per episode, listed in meta/episodes.jsonl."""
    path = src / LEGACY_EPISODES_PATH
    chunks_size = info.get("chunks_size", CHUNKS_SIZE)
    episodes = []
    for row in _read_jsonl(path):
        try:
            index, length = int(row["episode_index"]), int(row["length"])
        except (KeyError, TypeError, ValueError):
            raise DatasetError(
                f"{path}: each line should have an int 'episode_index' and 'length'."
            ) from None
        where = {"episode_chunk": index // chunks_size, "episode_index": index}
        episodes.append(
            _SourceEpisode(
                index=index,
                length=length,
                data_file=src / info["data_path"].format(**where),
                video_file=None
                if video_key is None
                else src / info["video_path"].format(video_key=video_key, **where),
                video_from=0.0,
                tasks=[str(t) for t in row.get("tasks") or []],
                meta_file=path,
            )
        )
    return _checked_order(episodes, path)


def _checked_order(episodes: list[_SourceEpisode], where: Path) -> list[_SourceEpisode]:
    episodes = sorted(episodes, key=lambda e: e.index)
    seen = set()
    for episode in episodes:
        if episode.index in seen:
            raise DatasetError(
                f"{episode.meta_file}: field 'episode_index' repeats {episode.index}."
            )
        if episode.length < 1:
            raise DatasetError(
                f"{episode.meta_file}: episode {episode.index} has field 'length' = "
                f"{episode.length}; it should be >= 1."
            )
        seen.add(episode.index)
    if not episodes:
        raise DatasetError(f"{where}: lists no episodes.")
    return episodes


def _action_bounds(episodes: list[_SourceEpisode]) -> tuple[list[float], list[float]]:
    """Per-dimension min and max of the 'action' column over every data file."""
    low = high = None
    for path in sorted({e.data_file for e in episodes}):
        actions = _numeric(_read_table(path, ["action"]), "action", path, 2)
        if not np.all(np.isfinite(actions)):
            raise DatasetError(f"{path}: column 'action' contains NaN or inf.")
        if low is not None and actions.shape[1] != len(low):
            raise DatasetError(
                f"{path}: column 'action' has {actions.shape[1]} dimensions, other files "
                f"{len(low)}."
            )
        lo, hi = actions.min(axis=0), actions.max(axis=0)
        low = lo if low is None else np.minimum(low, lo)
        high = hi if high is None else np.maximum(high, hi)
    return [float(v) for v in low], [float(v) for v in high]


def _episode_prefix(src: Path) -> str:
    """``lerobot__<folder>__<8 hex>__``: readable, and distinct for distinct source folders."""
    absolute = os.path.abspath(src)
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(absolute).name).strip("-_")[:60] or "dataset"
    digest = hashlib.sha256(absolute.encode()).hexdigest()[:8]
    return f"lerobot__{slug}__{digest}__"


class _RowReader:
    """The rows of one episode, reading each data file once while episodes go in order."""

    def __init__(self) -> None:
        self._path: Path | None = None
        self._table: pa.Table | None = None

    def episode(self, episode: _SourceEpisode) -> pa.Table:
        path = episode.data_file
        if path != self._path:
            self._table, self._path = _read_table(path), path
        table = self._table
        if "episode_index" in table.column_names:
            table = table.filter(pc.equal(table.column("episode_index"), episode.index))
        if "frame_index" in table.column_names:
            table = table.sort_by("frame_index")
        if table.num_rows != episode.length:
            raise DatasetError(
                f"{path}: episode {episode.index} has {table.num_rows} rows; "
                f"{episode.meta_file} says field 'length' = {episode.length}."
            )
        return table


class _VideoReader:
    """Frames of one episode out of a video file, decoding (and resizing) each file once."""

    def __init__(self, image_size: int, fps: int) -> None:
        self._size = image_size
        self._fps = fps
        self._path: Path | None = None
        self._frames: np.ndarray | None = None
        self._rate = float(fps)

    def episode(self, episode: _SourceEpisode, timestamps: np.ndarray) -> np.ndarray:
        path = episode.video_file
        if path != self._path:
            try:
                self._frames, rate = decode_resized(path, self._size)
            except ValueError as exc:
                raise DatasetError(f"{path}: {exc}.") from None
            self._path, self._rate = path, rate or float(self._fps)
        # LeRobot seeks frame by time: from_timestamp + the row's timestamp.
        wanted = np.rint((episode.video_from + timestamps) * self._rate).astype(np.int64)
        count = len(self._frames)
        if wanted.min() < 0 or wanted.max() >= count:
            raise DatasetError(
                f"{path}: episode {episode.index} needs frames {wanted.min()}..{wanted.max()} "
                f"(field 'from_timestamp' {episode.video_from:g} s in {episode.meta_file} "
                f"plus the rows' timestamps); the video has {count} frames at "
                f"{self._rate:g} fps."
            )
        return self._frames[wanted]  # (N, S, S, 3)


def _timestamps(table: pa.Table, fps: int) -> np.ndarray:
    if "timestamp" in table.column_names:
        return table.column("timestamp").to_numpy().astype(np.float64)
    if "frame_index" in table.column_names:
        return table.column("frame_index").to_numpy().astype(np.float64) / fps
    return np.arange(table.num_rows, dtype=np.float64) / fps


def _episode_task(table: pa.Table, tasks: dict[int, str], episode: _SourceEpisode) -> str:
    if "task_index" in table.column_names:
        indices = table.column("task_index").to_numpy()
        first = int(indices[0])
        if first not in tasks:
            raise DatasetError(
                f"{episode.data_file}: episode {episode.index} has 'task_index' {first}, which "
                "the tasks file does not list."
            )
        if len(set(indices.tolist())) > 1:
            log.warning(
                "%s: episode %d has %d tasks; its first, %r, is kept as the task id.",
                episode.data_file,
                episode.index,
                len(set(indices.tolist())),
                tasks[first],
            )
        return tasks[first]
    if episode.tasks:
        return episode.tasks[0]
    raise DatasetError(
        f"{episode.data_file}: episode {episode.index} has no 'task_index' column and "
        f"{episode.meta_file} lists no 'tasks' for it."
    )


def _image_frames(
    table: pa.Table, key: str, feature: dict[str, Any], path: Path, src: Path
) -> np.ndarray:
    """(N, H, W, 3) uint8 from an image column: encoded bytes (datasets' Image) or arrays."""
    if key not in table.column_names:
        raise DatasetError(f"{path}: image column {key!r} is missing.")
    column = table.column(key).combine_chunks()
    kind = column.type
    if pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0:
        images = []
        for row, item in enumerate(column.to_pylist()):
            data = (item or {}).get("bytes")
            if data is None and (item or {}).get("path"):
                candidate = Path(item["path"])
                data = (candidate if candidate.is_absolute() else src / candidate).read_bytes()
            if data is None:
                raise DatasetError(f"{path}: column {key!r} row {row} holds no image.")
            images.append(_rgb(imageio.imread(data), path, key))
        return np.stack(images)
    if _is_list(kind):
        values = column
        while _is_list(values.type):
            values = values.flatten()
        shape = [int(s) for s in feature.get("shape") or []]
        array = values.to_numpy(zero_copy_only=False)
        if len(shape) != 3 or array.size != len(column) * math.prod(shape):
            raise DatasetError(
                f"{path}: column {key!r} holds {array.size} values for {len(column)} rows; "
                f"'features' gives shape {shape}."
            )
        array = array.reshape(len(column), *shape)
        if shape[-1] not in (1, 3, 4) and shape[0] in (1, 3, 4):
            array = array.transpose(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
        if np.issubdtype(array.dtype, np.floating) and array.max(initial=0) <= 1.0:
            array = array * 255.0
        return np.stack([_rgb(np.clip(a, 0, 255).astype(np.uint8), path, key) for a in array])
    raise DatasetError(
        f"{path}: column {key!r} has arrow type {kind}; expected an image struct "
        "(bytes, path) or nested lists."
    )


def _rgb(image: np.ndarray, path: Path, key: str) -> np.ndarray:
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise DatasetError(f"{path}: column {key!r} holds an image of shape {image.shape}.")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3].astype(np.uint8, copy=False))


def _numeric(table: pa.Table, name: str, path: Path, ndim: int) -> np.ndarray:
    """A numeric column as (N,) (``ndim=1``) or (N, D) (``ndim=2``) float32/int array."""
    if name not in table.column_names:
        raise DatasetError(f"{path}: column {name!r} is missing.")
    column = table.column(name).combine_chunks()
    if column.null_count:
        raise DatasetError(f"{path}: column {name!r} has {column.null_count} empty row(s).")
    if _is_list(column.type):
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        if len(lengths) and lengths.min() != lengths.max():
            raise DatasetError(
                f"{path}: column {name!r} has rows of {lengths.min()} to {lengths.max()} values."
            )
        values = column.flatten()
        if _is_list(values.type) or not _is_number(values.type):
            raise DatasetError(f"{path}: column {name!r} has arrow type {column.type}.")
        array = values.to_numpy(zero_copy_only=False).reshape(len(column), -1)
    elif _is_number(column.type):
        array = column.to_numpy(zero_copy_only=False).reshape(len(column), 1)
    else:
        raise DatasetError(f"{path}: column {name!r} has arrow type {column.type}, not numbers.")
    array = array if ndim == 2 else array[:, 0]
    if np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32)
        if not np.all(np.isfinite(array)):
            raise DatasetError(f"{path}: column {name!r} contains NaN or inf.")
    return array


def _is_list(kind: pa.DataType) -> bool:
    return (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    )


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)


def _read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    if columns is not None:
        missing = [c for c in columns if c not in _read_schema(path).names]
        if missing:
            raise DatasetError(f"{path}: column(s) {', '.join(map(repr, missing))} missing.")
    try:
        return pq.read_table(path, columns=columns)
    except FileNotFoundError:
        raise DatasetError(f"{path}: file is missing.") from None
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"{path}: unreadable parquet ({_first_line(exc)}).") from None


def _read_schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except FileNotFoundError:
        raise DatasetError(f"{path}: file is missing.") from None
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"{path}: unreadable parquet ({_first_line(exc)}).") from None


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# --------------------------------------------------------------------------------- export


def export_lerobot(
    root: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    fps: int | None = None,
    codec: str = "lossless",
    overwrite: bool = False,
    robot_type: str | None = None,
    chunks_size: int = CHUNKS_SIZE,
    data_files_size_in_mb: float = DATA_FILES_SIZE_IN_MB,
    video_files_size_in_mb: float = VIDEO_FILES_SIZE_IN_MB,
    instructions: Mapping[str, str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write our dataset at ``root`` as a LeRobotDataset v3.0 folder ``dst``.

    Features: the camera as a video feature ``observation.images.<camera>`` (the camera named
    in the episodes' ``env_spec``; ``observation.image`` when they name none or several),
    ``observation.state`` and ``action`` (float32), and LeRobot's ``timestamp``,
    ``frame_index``, ``episode_index``, ``index``, ``task_index``. A task's string is its
    instruction (``instructions[task_id]``), else its id; ``info.json``'s ``vw_robot`` key maps
    the strings back to the ids and records the action space (the episodes' recorded
    ``action_low`` / ``action_high``, else the default [-1, 1]; episodes that disagree give
    their union, with a warning). An episode of N frames with actions becomes N-1 rows and
    one final frame and state (module docstring). Episodes keep the manifest's order. Every
    frame is re-encoded with ``codec`` into one mp4 per chunk file, episodes one after
    another, so that episode e's frame k sits at ``from_timestamp + k / fps``.
    ``meta/stats.json`` and the episodes' ``stats/...`` columns hold min/max/mean/std/count and
    q01..q99 per feature over the rows (per channel, in [0, 1], shape (3, 1, 1) for the
    camera). Episodes without actions are left out when others have them
    (LeRobot rows all have the same features); the count is returned. The folder is built
    beside ``dst`` and renamed into place, so ``dst`` never holds a partial export.

    Args:
        root: our dataset folder.
        dst: the LeRobot folder to write; refused when it exists and is not empty, unless
            ``overwrite``.
        fps: frame rate written to ``info.json`` and the timestamps. Default: the dataset's.
            Frames are not resampled: another rate only changes the clock.
        codec: video preset (:data:`vw_robot.data.video.CODECS`); ``lossless`` keeps the
            exact pixels, ``standard`` (yuv420p) plays in any browser.
        overwrite: replace an existing ``dst``.
        robot_type: written to ``info.json``.
        chunks_size: files per chunk folder (LeRobot's default).
        data_files_size_in_mb: a data parquet file is closed once about this big.
        video_files_size_in_mb: a video file is closed once about this big (estimated from
            our episodes' video sizes).
        instructions: task id -> natural-language instruction, written as LeRobot's task
            string (the CLI passes :data:`vw_robot.envs.instructions.INSTRUCTIONS`).

    Returns:
        ``episodes``, ``frames``, ``tasks``, ``skipped_without_actions``, ``camera_key``,
        ``data_files``, ``video_files`` and ``dst``.

    Raises:
        DatasetError: ``root`` is not a sound dataset (manifest, meta, arrays, videos), or
            its episodes disagree on image size, action or state dimension.
        UserError: ``dst`` is not empty and ``overwrite`` is False; a bad argument.
    """
    if codec not in CODECS:
        raise UserError(f"codec={codec!r} is unknown; presets: {', '.join(CODECS)}.")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, int) or fps < 1):
        raise UserError(f"fps must be a positive int or None, got {fps!r}.")
    if isinstance(chunks_size, bool) or not isinstance(chunks_size, int) or chunks_size < 1:
        raise UserError(f"chunks_size must be a positive int, got {chunks_size!r}.")
    for name, value in (
        ("data_files_size_in_mb", data_files_size_in_mb),
        ("video_files_size_in_mb", video_files_size_in_mb),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise UserError(f"{name} must be a positive number, got {value!r}.")
    root, dst = Path(root), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() and not dst.is_dir():
        raise UserError(f"{dst}: exists and is not a folder.")
    if dst.is_dir() and any(dst.iterdir()) and not overwrite:
        raise UserError(f"{dst}: folder is not empty; pass overwrite=True to replace it.")
    if dst.resolve() == root.resolve() or root.resolve() in dst.resolve().parents:
        raise UserError(f"{dst}: the export cannot go inside the dataset {root}.")

    dataset = read_dataset_info(root)
    fps = fps or int(dataset["fps"])
    if fps != dataset["fps"]:
        log.warning(
            "%s: recorded at %d fps, exported frame for frame at %d fps.", root, dataset["fps"], fps
        )
    metas = [read_meta(root, row["episode_id"]) for row in read_manifest(root)["episodes"]]
    labelled = [m for m in metas if m.has_actions]
    skipped = len(metas) - len(labelled) if labelled else 0
    metas = labelled or metas
    if not metas:
        raise DatasetError(f"{root}: the dataset has no episodes to export.")
    if skipped:
        log.warning("%s: %d episode(s) without actions left out of the export.", root, skipped)
    layout = _export_layout(root, metas)

    tmp = dst.parent / f".{dst.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        written = _write_export(
            root,
            tmp,
            metas,
            layout,
            fps=fps,
            codec=codec,
            robot_type=robot_type,
            chunks_size=chunks_size,
            data_bytes=data_files_size_in_mb * 2**20,
            video_bytes=video_files_size_in_mb * 2**20,
            instructions=instructions or {},
            progress=progress,
        )
        _replace_folder(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = {**written, "skipped_without_actions": skipped, "dst": str(dst)}
    log.info(
        "export-lerobot: %d episodes, %d frames -> %s", summary["episodes"], summary["frames"], dst
    )
    return summary


@dataclass
class _Layout:
    camera_key: str
    image_size: int
    action_dim: int | None
    state_dim: int | None


def _export_layout(root: Path, metas: list[EpisodeMeta]) -> _Layout:
    """The features every exported episode shares (their disagreement is an error)."""
    for name in ("image_size", "action_dim"):
        values = {getattr(m, name) for m in metas}
        if len(values) > 1:
            raise DatasetError(
                f"{root}: episodes disagree on {name} ({sorted(values, key=str)}); a LeRobot "
                "dataset has one shape per feature."
            )
    state_dims = {m.state_dim for m in metas}
    if len(state_dims) > 1:
        raise DatasetError(
            f"{root}: episodes disagree on state_dim ({sorted(state_dims, key=str)}); a "
            "LeRobot dataset has one shape per feature."
        )
    cameras = {(m.env_spec or {}).get("camera") for m in metas}
    camera = cameras.pop() if len(cameras) == 1 else None
    valid = isinstance(camera, str) and re.fullmatch(r"[A-Za-z0-9_-]+", camera)
    return _Layout(
        camera_key=f"observation.images.{camera}" if valid else "observation.image",
        image_size=metas[0].image_size,
        action_dim=metas[0].action_dim if metas[0].has_actions else None,
        state_dim=metas[0].state_dim if metas[0].has_actions else None,
    )


def _features(layout: _Layout, fps: int, codec: str) -> dict[str, dict[str, Any]]:
    size = layout.image_size
    features: dict[str, dict[str, Any]] = {
        layout.camera_key: {
            "dtype": "video",
            "shape": [size, size, 3],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": size,
                "video.width": size,
                "video.codec": "h264",
                "video.pix_fmt": _PIX_FMT.get(codec, "yuv420p"),
                "video.is_depth_map": False,
                "video.fps": fps,
                "video.channels": 3,
                "has_audio": False,
                "is_depth_map": False,
            },
        }
    }
    if layout.state_dim:
        features["observation.state"] = {
            "dtype": "float32",
            "shape": [layout.state_dim],
            "names": [f"state_{i}" for i in range(layout.state_dim)],
        }
    if layout.action_dim:
        features["action"] = {
            "dtype": "float32",
            "shape": [layout.action_dim],
            "names": [f"action_{i}" for i in range(layout.action_dim)],
        }
    return {**features, **copy.deepcopy(DEFAULT_FEATURES)}


def _arrow_type(feature: dict[str, Any]) -> pa.DataType:
    """The arrow type LeRobot's writer (HF datasets) gives a non-visual feature."""
    value = pa.from_numpy_dtype(np.dtype(feature["dtype"]))
    shape = list(feature["shape"])
    return value if shape == [1] else pa.list_(value, shape[0])


def _write_export(
    root: Path,
    out: Path,
    metas: list[EpisodeMeta],
    layout: _Layout,
    *,
    fps: int,
    codec: str,
    robot_type: str | None,
    chunks_size: int,
    data_bytes: float,
    video_bytes: float,
    instructions: Mapping[str, str],
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    features = _features(layout, fps, codec)
    columns = [k for k, f in features.items() if f["dtype"] != "video"]
    schema = pa.schema([(k, _arrow_type(features[k])) for k in columns])
    task_ids = _task_strings(root, metas, instructions)  # task string -> task id
    strings = {task_id: text for text, task_id in task_ids.items()}
    task_index = {text: index for index, text in enumerate(task_ids)}
    # With actions, an episode's last frame follows its rows (module docstring).
    final_frame = layout.action_dim is not None

    data = _DataFiles(out, schema, chunks_size, data_bytes)
    video = _VideoFiles(out, layout.camera_key, chunks_size, video_bytes, fps, codec)
    rows: list[dict[str, Any]] = []
    all_stats: list[dict[str, dict[str, np.ndarray]]] = []
    total = 0
    try:
        for episode_index, meta in enumerate(metas):
            if progress is not None:
                progress(episode_index, len(metas))
            frames = _episode_frames(root, meta, layout.image_size)  # (N, S, S, 3)
            n = len(frames) - 1 if final_frame else len(frames)  # rows
            if n < 1:
                raise DatasetError(
                    f"{episode_dir(root, meta.episode_id)}: 1 frame and no action; a LeRobot "
                    "episode needs at least one (frame, action) row."
                )
            task = strings[meta.task_id]
            arrays, final_state = _episode_arrays(
                root, meta, layout, n, fps, episode_index, total, task_index[task]
            )
            data_file = data.append(arrays)
            # Our episode video, in the same codec, stands in for what it adds to the file.
            size = (episode_dir(root, meta.episode_id) / VIDEO_FILE).stat().st_size
            video_file, start = video.append(frames, size)
            stats = {k: _stats(arrays[k]) for k in columns}
            stats[layout.camera_key] = _image_stats(frames[:n])  # the rows' frames
            all_stats.append(stats)
            key = f"videos/{layout.camera_key}"
            extra = {} if final_state is None else {FINAL_STATE_COLUMN: final_state.tolist()}
            rows.append(
                {
                    "episode_index": episode_index,
                    "tasks": [task],
                    "length": n,
                    "data/chunk_index": data_file[0],
                    "data/file_index": data_file[1],
                    "dataset_from_index": total,
                    "dataset_to_index": total + n,
                    f"{key}/chunk_index": video_file[0],
                    f"{key}/file_index": video_file[1],
                    f"{key}/from_timestamp": start,
                    f"{key}/to_timestamp": start + n / fps,
                    **{
                        f"stats/{feature}/{name}": value.tolist()
                        for feature, feature_stats in stats.items()
                        for name, value in feature_stats.items()
                    },
                    "meta/episodes/chunk_index": 0,
                    "meta/episodes/file_index": 0,
                    **extra,
                }
            )
            total += n
    finally:
        data.close()
        video.close()

    episodes_path = out / EPISODES_PATH.format(chunk_index=0, file_index=0)
    episodes_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), episodes_path, compression="snappy")
    _write_tasks(out / TASKS_PATH, task_index)
    stats = {key: _aggregate([s[key] for s in all_stats]) for key in all_stats[0]}
    atomic_write_json(
        out / STATS_PATH, {k: {n: v.tolist() for n, v in s.items()} for k, s in stats.items()}
    )
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": len(metas),
        "total_frames": total,
        "total_tasks": len(task_index),
        "chunks_size": chunks_size,
        "data_files_size_in_mb": data_bytes / 2**20,
        "video_files_size_in_mb": video_bytes / 2**20,
        "fps": fps,
        "splits": {"train": f"0:{len(metas)}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH,
        "features": features,
        OURS_KEY: {
            "task_ids": task_ids,
            "final_frame": final_frame,
            **(_bounds_json(root, metas, layout.action_dim) if layout.action_dim else {}),
        },
    }
    for key in ("data_files_size_in_mb", "video_files_size_in_mb"):
        if float(info[key]).is_integer():
            info[key] = int(info[key])
    atomic_write_json(out / INFO_PATH, info)
    return {
        "episodes": len(metas),
        "frames": total,
        "tasks": len(task_index),
        "camera_key": layout.camera_key,
        "data_files": data.files.count,
        "video_files": video.files.count,
    }


class _RollingFiles:
    """LeRobot's chunk-XXX/file-YYY numbering: a new file once the current one would grow past
    ``limit`` bytes; ``chunks_size`` files per chunk folder."""

    def __init__(self, out: Path, template: str, chunks_size: int, limit: float) -> None:
        self._out, self._template, self._chunks_size, self._limit = (
            out,
            template,
            chunks_size,
            limit,
        )
        self.chunk_index, self.file_index, self.count = 0, -1, 0
        self._bytes = 0.0

    @property
    def path(self) -> Path:
        return self._out / self._template.format(
            chunk_index=self.chunk_index, file_index=self.file_index
        )

    def roll(self, size: float) -> bool:
        """Account for ``size`` more bytes; True when they start a new file (``path`` moved)."""
        if self.count and self._bytes + size <= self._limit:
            self._bytes += size
            return False
        if self.count:
            self.file_index += 1
            if self.file_index == self._chunks_size:
                self.chunk_index, self.file_index = self.chunk_index + 1, 0
        else:
            self.file_index = 0
        self.count += 1
        self._bytes = size
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return True


class _DataFiles:
    """Episodes' rows appended to data/chunk-XXX/file-YYY.parquet, one row group each."""

    def __init__(self, out: Path, schema: pa.Schema, chunks_size: int, limit: float) -> None:
        self.files = _RollingFiles(out, DATA_PATH, chunks_size, limit)
        self._schema = schema
        self._writer: pq.ParquetWriter | None = None

    def append(self, arrays: dict[str, np.ndarray]) -> tuple[int, int]:
        """Write one episode; returns its (chunk_index, file_index)."""
        columns = {f.name: _arrow_column(arrays[f.name], f.type) for f in self._schema}
        table = pa.table(columns, schema=self._schema)
        if self.files.roll(table.nbytes):
            self.close()
            self._writer = pq.ParquetWriter(self.files.path, self._schema, compression="snappy")
        self._writer.write_table(table)  # one row group per episode, as LeRobot writes
        return self.files.chunk_index, self.files.file_index

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class _VideoFiles:
    """Episodes' frames appended to videos/<key>/chunk-XXX/file-YYY.mp4 at a constant rate."""

    def __init__(
        self, out: Path, key: str, chunks_size: int, limit: float, fps: int, codec: str
    ) -> None:
        template = VIDEO_PATH.replace("{video_key}", key)
        self.files = _RollingFiles(out, template, chunks_size, limit)
        self._fps, self._codec = fps, codec
        self._writer: Any = None
        self._frames = 0

    def append(self, frames: np.ndarray, size: float) -> tuple[tuple[int, int], float]:
        """Encode one episode; returns its (chunk_index, file_index) and from_timestamp."""
        if self.files.roll(size):
            self.close()
            # macro_block_size=1 keeps sizes that are not multiples of 16 exact (as write_video).
            self._writer = imageio.get_writer(
                self.files.path, fps=self._fps, macro_block_size=1, **CODECS[self._codec]
            )
            self._frames = 0
        for frame in frames:
            self._writer.append_data(frame)
        start = self._frames / self._fps
        self._frames += len(frames)
        return (self.files.chunk_index, self.files.file_index), start

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _episode_frames(root: Path, meta: EpisodeMeta, size: int) -> np.ndarray:
    path = episode_dir(root, meta.episode_id) / VIDEO_FILE
    try:
        frames = read_video(path)
    except ValueError as exc:
        raise DatasetError(str(exc)) from None
    if frames.shape != (meta.num_frames, size, size, 3):
        raise DatasetError(
            f"{path}: decodes to {tuple(frames.shape)}, meta.json says {meta.num_frames} frames "
            f"of {size} px."
        )
    return frames


def _episode_arrays(
    root: Path,
    meta: EpisodeMeta,
    layout: _Layout,
    n: int,
    fps: int,
    episode_index: int,
    start: int,
    task_index: int,
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """An episode's ``n`` rows, column by column, and the state after its last row (None
    without state)."""
    frame_index = np.arange(n, dtype=np.int64)
    arrays = {
        "timestamp": (frame_index / fps).astype(np.float32),
        "frame_index": frame_index,
        "episode_index": np.full(n, episode_index, np.int64),
        "index": start + frame_index,
        "task_index": np.full(n, task_index, np.int64),
    }
    final_state = None
    if layout.action_dim:
        steps = load_steps(root, meta)
        arrays["action"] = steps["actions"].astype(np.float32)  # (n, A): frame k, action k
        if layout.state_dim:
            state = steps["state"].astype(np.float32)  # (n + 1, D)
            arrays["observation.state"], final_state = state[:n], state[n]
    return arrays, final_state


def _task_strings(
    root: Path, metas: list[EpisodeMeta], instructions: Mapping[str, str]
) -> dict[str, str]:
    """Task string -> task id, in the order tasks first appear; refuses two ids with one
    string (LeRobot looks tasks up by their string)."""
    task_ids: dict[str, str] = {}
    for meta in metas:
        text = instructions.get(meta.task_id, meta.task_id)
        other = task_ids.setdefault(text, meta.task_id)
        if other != meta.task_id:
            raise DatasetError(
                f"{root}: tasks {other!r} and {meta.task_id!r} would both be written as the "
                f"task string {text!r}; LeRobot tells tasks apart by their string."
            )
    return task_ids


def _bounds_json(root: Path, metas: list[EpisodeMeta], action_dim: int) -> dict[str, list]:
    """``action_low`` / ``action_high`` for info.json: the episodes' action space (their union
    when they disagree), unbounded sides as the strings "inf" / "-inf"."""
    spaces = [action_bounds(m, action_dim)[:2] for m in metas]
    low = np.min([lo for lo, _ in spaces], axis=0)
    high = np.max([hi for _, hi in spaces], axis=0)
    if any(not (np.array_equal(lo, low) and np.array_equal(hi, high)) for lo, hi in spaces):
        log.warning(
            "%s: episodes record different action spaces; the export records their union, "
            "low %s, high %s.",
            root,
            low.tolist(),
            high.tolist(),
        )

    def finite_or_text(values: np.ndarray) -> list:
        return [float(v) if np.isfinite(v) else ("inf" if v > 0 else "-inf") for v in values]

    return {"action_low": finite_or_text(low), "action_high": finite_or_text(high)}


def _arrow_column(array: np.ndarray, kind: pa.DataType) -> pa.Array:
    if pa.types.is_fixed_size_list(kind):
        return pa.FixedSizeListArray.from_arrays(pa.array(array.reshape(-1)), kind.list_size)
    return pa.array(array, type=kind)


def _stats(array: np.ndarray) -> dict[str, np.ndarray]:
    """LeRobot's per-feature stats of (N,) or (N, D) values: shape (1,) or (D,) each."""
    values = array.reshape(len(array), -1)  # (N, D)
    as_float = values.astype(np.float64)
    stats = {
        "min": values.min(axis=0),
        "max": values.max(axis=0),
        "mean": as_float.mean(axis=0),
        "std": as_float.std(axis=0),
        "count": np.array([len(values)]),
    }
    for q, value in zip(QUANTILES, np.quantile(as_float, QUANTILES, axis=0), strict=True):
        stats[f"q{round(q * 100):02d}"] = value
    return stats


def _image_stats(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel stats of (N, H, W, 3) uint8 frames in [0, 1], shape (3, 1, 1); count N."""
    stats = _stats(frames.reshape(-1, 3))  # over the (N*H*W, 3) pixels
    scaled = {k: (v / 255.0).reshape(3, 1, 1) for k, v in stats.items() if k != "count"}
    return {**scaled, "count": np.array([len(frames)])}  # LeRobot counts images, not pixels


def _aggregate(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Dataset stats from episode stats, as LeRobot's aggregate_stats combines them: weighted
    mean, pooled variance, extreme min/max, summed count, count-weighted quantiles."""
    counts = np.array([p["count"][0] for p in parts], np.float64)
    weights = counts / counts.sum()
    shape = parts[0]["mean"].shape
    w = weights.reshape(-1, *([1] * len(shape)))
    means = np.stack([p["mean"] for p in parts])
    mean = (w * means).sum(axis=0)
    variance = (w * (np.stack([p["std"] for p in parts]) ** 2 + (means - mean) ** 2)).sum(axis=0)
    out = {
        "min": np.min(np.stack([p["min"] for p in parts]), axis=0),
        "max": np.max(np.stack([p["max"] for p in parts]), axis=0),
        "mean": mean,
        "std": np.sqrt(variance),
        "count": np.array([int(counts.sum())]),
    }
    for name in parts[0]:
        if name.startswith("q"):
            out[name] = (w * np.stack([p[name] for p in parts])).sum(axis=0)
    return out


def _write_tasks(path: Path, task_index: dict[str, int]) -> None:
    """meta/tasks.parquet as pandas writes it: the task strings are the index named "task", so
    LeRobot's ``pd.read_parquet`` gets them back as the index."""
    table = pa.table(
        {
            "task_index": pa.array(list(task_index.values()), pa.int64()),
            "task": pa.array(list(task_index), pa.string()),
        }
    )
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": "task",
                "field_name": "task",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    table = table.replace_schema_metadata({"pandas": json.dumps(pandas_meta)})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def _replace_folder(new: Path, dst: Path) -> None:
    """Move ``new`` to ``dst``; an existing ``dst`` is set aside first and removed after."""
    old = None
    if dst.exists():
        old = dst.parent / f".{dst.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
    try:
        os.replace(new, dst)
    except BaseException:
        if old is not None:
            os.replace(old, dst)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------------------- validate


def validate_lerobot(dst: str | os.PathLike[str]) -> list[str]:
    """Check a LeRobotDataset v3.0 folder against the format; one line per problem.

    Checks ``meta/info.json`` (version, keys, features), the tasks file, the episodes files
    (columns and arrow types, episode indices 0..E-1, ``dataset_from/to_index`` contiguous and
    equal to the lengths), every data file (columns and arrow types against the features,
    each episode's rows, ``index``, ``frame_index``, ``timestamp`` and ``task_index``), every
    video file (each episode's time range inside the file's duration, no overlap) and
    ``meta/stats.json`` (every feature, stat shapes), and the totals.

    Returns:
        The problems, each naming the file and the field; an empty list means the folder
        reads as LeRobot reads it.
    """
    root = Path(dst)
    problems: list[str] = []
    info_path = root / INFO_PATH
    try:
        info = read_json(info_path)
    except DatasetError as exc:
        return [str(exc)]
    if not isinstance(info, dict):
        return [f"{info_path}: expected a JSON object."]
    problems += _info_problems(info_path, info)
    if problems:
        return problems  # the rest is read through info.json
    features = info["features"]
    video_keys = _video_keys(features)
    final_frame = False
    try:
        camera_dtype = "video" if video_keys else "image"
        final_frame = _read_ours(info_path, info, camera_dtype)["final_frame"]
    except DatasetError as exc:
        problems.append(str(exc))

    tasks: dict[int, str] = {}
    try:
        tasks = _read_tasks(root, CODEBASE_VERSION)
    except DatasetError as exc:
        problems.append(str(exc))
    if tasks:
        if sorted(tasks) != list(range(len(tasks))):
            problems.append(
                f"{root / TASKS_PATH}: column 'task_index' should be 0..{len(tasks) - 1}."
            )
        if len(tasks) != info["total_tasks"]:
            problems.append(
                f"{info_path}: field 'total_tasks' is {info['total_tasks']}, "
                f"{root / TASKS_PATH} has {len(tasks)}."
            )
        problems += _task_index_problems(root / TASKS_PATH)

    # Our exports keep each episode's last state beside its rows (module docstring).
    has_final_state = final_frame and "observation.state" in features
    extra = {FINAL_STATE_COLUMN: _is_list} if has_final_state else {}
    episodes, episode_problems = _episode_rows(root, video_keys, extra)
    problems += episode_problems
    if episode_problems:
        return problems
    problems += _index_problems(root, info_path, info, episodes)
    problems += _data_problems(root, info, episodes, tasks)
    problems += _video_problems(root, info, episodes, final_frame)
    problems += _stats_problems(root / STATS_PATH, features)
    return problems


def _info_problems(path: Path, info: dict[str, Any]) -> list[str]:
    problems = []
    if info.get("codebase_version") != CODEBASE_VERSION:
        problems.append(
            f"{path}: field 'codebase_version' is {info.get('codebase_version')!r}, "
            f"expected {CODEBASE_VERSION!r}."
        )
    ints = ("fps", "total_episodes", "total_frames", "total_tasks", "chunks_size")
    for key in ints:
        value = info.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            problems.append(f"{path}: field {key!r} should be a non-negative int, got {value!r}.")
    for key in ("data_files_size_in_mb", "video_files_size_in_mb"):
        if key in info and not isinstance(info[key], (int, float)):
            problems.append(f"{path}: field {key!r} should be a number, got {info[key]!r}.")
    templates = {"data_path": DATA_PATH, "video_path": VIDEO_PATH}
    for key, default in templates.items():
        value = info.get(key)
        if key == "video_path" and value is None:
            continue
        if not isinstance(value, str) or "{chunk_index" not in value or "{file_index" not in value:
            problems.append(
                f"{path}: field {key!r} should be a template with chunk_index and file_index "
                f"(like {default!r}), got {value!r}."
            )
    if not isinstance(info.get("splits"), dict):
        problems.append(f"{path}: field 'splits' should be an object, got {info.get('splits')!r}.")
    if "robot_type" not in info:
        problems.append(f"{path}: field 'robot_type' is missing (null when unknown).")
    features = info.get("features")
    if not isinstance(features, dict):
        return problems + [f"{path}: field 'features' should be an object."]
    for key, feature in features.items():
        where = f"{path}: features[{key!r}]"
        if "/" in key:
            problems.append(f"{where}: feature names may not contain '/'.")
        if not isinstance(feature, dict):
            problems.append(f"{where}: should be an object.")
            continue
        shape = feature.get("shape")
        if (
            not isinstance(shape, list)
            or not shape
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)
        ):
            problems.append(
                f"{where}: field 'shape' should be a list of positive ints, got {shape!r}."
            )
        if "names" not in feature:
            problems.append(f"{where}: field 'names' is missing (null when unnamed).")
        dtype = feature.get("dtype")
        if dtype in ("video", "image"):
            if isinstance(shape, list) and len(shape) != 3:
                problems.append(f"{where}: a {dtype} feature's 'shape' should be [H, W, C].")
            if dtype == "video" and info.get("video_path") is None:
                problems.append(f"{path}: field 'video_path' is null but {key!r} is a video.")
        elif dtype not in ("string", "language"):
            try:
                np.dtype(dtype)
            except TypeError:
                problems.append(f"{where}: field 'dtype' {dtype!r} is not a numpy dtype.")
    for key, feature in DEFAULT_FEATURES.items():
        have = features.get(key)
        if (
            not isinstance(have, dict)
            or have.get("dtype") != feature["dtype"]
            or have.get("shape") != [1]
        ):
            problems.append(
                f"{path}: features[{key!r}] should be {{dtype: {feature['dtype']}, shape: [1]}}, "
                f"got {have!r}."
            )
    return problems


def _task_index_problems(path: Path) -> list[str]:
    """LeRobot looks tasks up by text in ``pd.read_parquet(...).index``: the file's pandas
    metadata must make the column of task strings the index (``task`` as we and older LeRobot
    write it, ``__index_level_0__`` as LeRobot's writer and converter write it now)."""
    schema = _read_schema(path)
    try:
        column = _task_column(schema, path)
    except DatasetError:
        return []  # reported by _read_tasks
    index = _pandas_index(schema)
    if index != [column]:
        return [
            f"{path}: pandas metadata 'index_columns' is {index!r}; LeRobot reads the task "
            f"strings as the index, so it should be [{column!r}]."
        ]
    return []


def _episode_rows(
    root: Path, video_keys: list[str], extra: dict[str, Callable[[pa.DataType], bool]]
) -> tuple[list[dict[str, Any]], list[str]]:
    files = sorted((root / EPISODES_DIR).glob("*/*.parquet"))
    if not files:
        return [], [f"{root / EPISODES_DIR}: no episodes file (chunk-*/file-*.parquet)."]
    checks = {**_EPISODE_COLUMNS, **extra}
    for key in video_keys:
        checks[f"videos/{key}/chunk_index"] = pa.types.is_integer
        checks[f"videos/{key}/file_index"] = pa.types.is_integer
        checks[f"videos/{key}/from_timestamp"] = pa.types.is_floating
        checks[f"videos/{key}/to_timestamp"] = pa.types.is_floating
    rows, problems = [], []
    for path in files:
        try:
            schema = _read_schema(path)
        except DatasetError as exc:
            problems.append(str(exc))
            continue
        bad = False
        for column, check in checks.items():
            if column not in schema.names:
                problems.append(f"{path}: column {column!r} is missing.")
                bad = True
            elif not check(schema.field(column).type):
                problems.append(
                    f"{path}: column {column!r} has arrow type {schema.field(column).type}."
                )
                bad = True
        if not bad:
            for row in _read_table(path, list(checks)).to_pylist():
                rows.append({**row, "_file": path})
    return sorted(rows, key=lambda r: r["episode_index"]), problems


def _index_problems(
    root: Path, info_path: Path, info: dict[str, Any], episodes: list[dict[str, Any]]
) -> list[str]:
    problems = []
    indices = [r["episode_index"] for r in episodes]
    if indices != list(range(len(episodes))):
        problems.append(
            f"{root / EPISODES_DIR}: column 'episode_index' should run 0..{len(episodes) - 1} "
            f"without gaps or repeats, got {indices[:10]}{'...' if len(indices) > 10 else ''}."
        )
    expected_from = 0
    for row in episodes:
        where = f"{row['_file']}: episode {row['episode_index']}"
        if row["dataset_from_index"] != expected_from:
            problems.append(
                f"{where}: column 'dataset_from_index' is {row['dataset_from_index']}, the "
                f"previous episode ends at {expected_from}."
            )
        if row["dataset_to_index"] - row["dataset_from_index"] != row["length"]:
            problems.append(
                f"{where}: 'dataset_to_index' - 'dataset_from_index' = "
                f"{row['dataset_to_index'] - row['dataset_from_index']}, column 'length' is "
                f"{row['length']}."
            )
        if not row["tasks"]:
            problems.append(f"{where}: column 'tasks' is empty.")
        expected_from = row["dataset_to_index"]
    if info["total_episodes"] != len(episodes):
        problems.append(
            f"{info_path}: field 'total_episodes' is {info['total_episodes']}, the episodes "
            f"files list {len(episodes)}."
        )
    frames = sum(r["length"] for r in episodes)
    if info["total_frames"] != frames:
        problems.append(
            f"{info_path}: field 'total_frames' is {info['total_frames']}, the episodes' "
            f"lengths add up to {frames}."
        )
    return problems


def _data_problems(
    root: Path, info: dict[str, Any], episodes: list[dict[str, Any]], tasks: dict[int, str]
) -> list[str]:
    features, fps = info["features"], info["fps"]
    columns = {k: f for k, f in features.items() if f["dtype"] != "video"}
    by_file: dict[Path, list[dict[str, Any]]] = {}
    for row in episodes:
        path = root / info["data_path"].format(
            chunk_index=row["data/chunk_index"], file_index=row["data/file_index"]
        )
        by_file.setdefault(path, []).append(row)
    problems = []
    for stray in sorted(set((root / "data").glob("*/*.parquet")) - set(by_file)):
        problems.append(f"{stray}: data file that no episode refers to.")
    for path, rows in by_file.items():
        try:
            schema = _read_schema(path)
        except DatasetError as exc:
            problems.append(str(exc))
            continue
        names = set(schema.names)
        for key in sorted(set(columns) - names):
            problems.append(f"{path}: column {key!r} of info.json's features is missing.")
        for key in sorted(names - set(columns)):
            problems.append(f"{path}: column {key!r} is not among info.json's features.")
        for key in sorted(set(columns) & names):
            problem = _column_type_problem(schema.field(key).type, columns[key])
            if problem:
                problems.append(f"{path}: column {key!r} {problem}.")
        if not {"episode_index", "index", "frame_index", "timestamp", "task_index"} <= names:
            continue
        table = _read_table(
            path, ["episode_index", "index", "frame_index", "timestamp", "task_index"]
        )
        episode_column = table.column("episode_index").to_numpy()
        listed = {r["episode_index"] for r in rows}
        extra = sorted(set(np.unique(episode_column).tolist()) - listed)
        if extra:
            problems.append(
                f"{path}: rows of episode(s) {extra[:5]} that the episodes files place elsewhere."
            )
        for row in rows:
            problems += _episode_data_problems(path, table, episode_column, row, fps, tasks)
    return problems


def _column_type_problem(kind: pa.DataType, feature: dict[str, Any]) -> str | None:
    dtype, shape = feature.get("dtype"), list(feature.get("shape") or [])
    if dtype == "image":
        ok = pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0
        return None if ok else f"has arrow type {kind}; an image feature is struct<bytes, path>"
    if dtype in ("string", "language"):
        return None
    try:
        value = pa.from_numpy_dtype(np.dtype(dtype))
    except (TypeError, pa.ArrowNotImplementedError):
        return None  # reported with info.json
    if shape == [1]:
        return None if kind == value else f"has arrow type {kind}; features say {dtype} shape [1]"
    if len(shape) == 1:
        ok = _is_list(kind) and kind.value_type == value
        if ok and pa.types.is_fixed_size_list(kind):
            ok = kind.list_size == shape[0]
        return None if ok else f"has arrow type {kind}; features say {dtype} shape {shape}"
    return None


def _episode_data_problems(
    path: Path,
    table: pa.Table,
    episode_column: np.ndarray,
    row: dict[str, Any],
    fps: int,
    tasks: dict[int, str],
) -> list[str]:
    where = f"{path}: episode {row['episode_index']}"
    mask = episode_column == row["episode_index"]
    count = int(mask.sum())
    if count != row["length"]:
        return [f"{where}: {count} rows, column 'length' of {row['_file']} is {row['length']}."]
    part = table.filter(pa.array(mask))
    problems = []
    index = part.column("index").to_numpy()
    if not np.array_equal(index, np.arange(row["dataset_from_index"], row["dataset_to_index"])):
        problems.append(
            f"{where}: column 'index' should run {row['dataset_from_index']}.."
            f"{row['dataset_to_index'] - 1} in order (the episode's dataset_from/to_index)."
        )
    frame_index = part.column("frame_index").to_numpy()
    if not np.array_equal(frame_index, np.arange(count)):
        problems.append(f"{where}: column 'frame_index' should run 0..{count - 1} in order.")
    timestamp = part.column("timestamp").to_numpy().astype(np.float64)
    worst = float(np.abs(timestamp - frame_index / fps).max(initial=0.0))
    if worst > _TOLERANCE_S:
        problems.append(
            f"{where}: column 'timestamp' differs from frame_index / fps by up to {worst:.3g} s "
            f"(tolerance {_TOLERANCE_S:g} s)."
        )
    unknown = sorted(set(part.column("task_index").to_numpy().tolist()) - set(tasks))
    if tasks and unknown:
        problems.append(
            f"{where}: column 'task_index' has {unknown[:5]}, not in meta/tasks.parquet."
        )
    return problems


def _video_problems(
    root: Path, info: dict[str, Any], episodes: list[dict[str, Any]], final_frame: bool
) -> list[str]:
    """Each episode's frames inside its video file, without overlap; with ``final_frame`` (our
    exports) one more frame after each episode's rows."""
    # Lazy: vw_robot.data.video treats imageio-ffmpeg as optional (OpenCV decodes without it).
    import imageio_ffmpeg

    problems = []
    fps = info["fps"]
    for key in _video_keys(info["features"]):
        by_file: dict[Path, list[dict[str, Any]]] = {}
        for row in episodes:
            path = root / info["video_path"].format(
                video_key=key,
                chunk_index=row[f"videos/{key}/chunk_index"],
                file_index=row[f"videos/{key}/file_index"],
            )
            by_file.setdefault(path, []).append(row)
        for path, rows in by_file.items():
            if not path.is_file():
                problems.append(f"{path}: video file is missing.")
                continue
            try:
                frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
            except Exception as exc:  # ffmpeg fails in many ways on a bad file
                problems.append(f"{path}: unreadable video ({_first_line(exc)}).")
                continue
            duration = frames / fps
            end = 0.0
            for row in sorted(rows, key=lambda r: r[f"videos/{key}/from_timestamp"]):
                start, stop = row[f"videos/{key}/from_timestamp"], row[f"videos/{key}/to_timestamp"]
                where = f"{row['_file']}: episode {row['episode_index']}, videos/{key}"
                if start < end - _TOLERANCE_S:
                    problems.append(
                        f"{where}: from_timestamp {start:g} s overlaps the previous episode "
                        f"(it ends at {end:g} s)."
                    )
                if abs((stop - start) - row["length"] / fps) > _TOLERANCE_S:
                    problems.append(
                        f"{where}: to_timestamp - from_timestamp = {stop - start:g} s, "
                        f"{row['length']} frames at {fps} fps last {row['length'] / fps:g} s."
                    )
                last = start + (row["length"] - 1) / fps
                if stop > duration + _TOLERANCE_S or last >= duration:
                    problems.append(
                        f"{where}: frames up to {stop:g} s, {path} lasts {duration:g} s "
                        f"({frames} frames at {fps} fps)."
                    )
                elif final_frame and stop >= duration - _TOLERANCE_S:
                    problems.append(
                        f"{where}: no final frame after the rows (info.json's "
                        f"vw_robot.final_frame): {path} ends at {duration:g} s."
                    )
                end = max(end, stop + (1 / fps if final_frame else 0.0))
    return problems


def _stats_problems(path: Path, features: dict[str, Any]) -> list[str]:
    try:
        stats = read_json(path)
    except DatasetError as exc:
        return [str(exc)]
    if not isinstance(stats, dict):
        return [f"{path}: expected a JSON object."]
    problems = []
    for key, feature in features.items():
        if feature.get("dtype") in ("string", "language"):
            continue
        entry = stats.get(key)
        if not isinstance(entry, dict):
            problems.append(f"{path}: no stats for feature {key!r}.")
            continue
        if feature.get("dtype") in ("image", "video"):
            expected = (feature["shape"][-1], 1, 1)
        else:
            expected = tuple(feature.get("shape") or [1])
        for name in ("min", "max", "mean", "std", "count"):
            if name not in entry:
                problems.append(f"{path}: {key}.{name} is missing.")
                continue
            shape = np.shape(entry[name])
            want = (1,) if name == "count" else expected
            if shape != want:
                problems.append(
                    f"{path}: {key}.{name} has shape {list(shape)}, expected {list(want)}."
                )
    return problems
