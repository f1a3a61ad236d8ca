"""Our format -> LeRobotDataset v3.0: :func:`export_lerobot` (the frame/action alignment is in
the package docstring)."""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vw_robot.data.format import (
    VIDEO_FILE,
    DatasetError,
    EpisodeMeta,
    action_bounds,
    episode_dir,
    load_steps,
    read_dataset_info,
    read_manifest,
    read_meta,
)
from vw_robot.data.lerobot.files import DataFiles, VideoFiles
from vw_robot.data.lerobot.schema import (
    CHUNKS_SIZE,
    CODEBASE_VERSION,
    DATA_FILES_SIZE_IN_MB,
    DATA_PATH,
    DEFAULT_FEATURES,
    EPISODES_PATH,
    FINAL_STATE_COLUMN,
    INFO_PATH,
    OURS_KEY,
    STATS_PATH,
    TASKS_PATH,
    VIDEO_FILES_SIZE_IN_MB,
    VIDEO_PATH,
)
from vw_robot.data.lerobot.stats import aggregate, feature_stats, image_stats
from vw_robot.data.video import CODECS, read_video
from vw_robot.errors import UserError
from vw_robot.io import atomic_write_json

log = logging.getLogger(__name__)

# Pixel format each of our codec presets produces (probed with ffmpeg).
_PIX_FMT = {"lossless": "gbrp", "high": "yuv444p", "standard": "yuv420p"}


# Long by its docstring (the format, every argument); its code is one ~40-line sequence.
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
    one final frame and state (package docstring). Episodes keep the manifest's order. Every
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
    _check_export_arguments(codec, fps, chunks_size, data_files_size_in_mb, video_files_size_in_mb)
    root, dst = Path(root), Path(dst)
    _prepare_destination(root, dst, overwrite)
    dataset = read_dataset_info(root)
    fps = fps or int(dataset["fps"])
    if fps != dataset["fps"]:
        log.warning(
            "%s: recorded at %d fps, exported frame for frame at %d fps.", root, dataset["fps"], fps
        )
    metas, skipped = _episodes_to_export(root)
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


def _check_export_arguments(
    codec: str, fps: int | None, chunks_size: int, data_mb: float, video_mb: float
) -> None:
    if codec not in CODECS:
        raise UserError(f"codec={codec!r} is unknown; presets: {', '.join(CODECS)}.")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, int) or fps < 1):
        raise UserError(f"fps must be a positive int or None, got {fps!r}.")
    if isinstance(chunks_size, bool) or not isinstance(chunks_size, int) or chunks_size < 1:
        raise UserError(f"chunks_size must be a positive int, got {chunks_size!r}.")
    for name, value in (("data_files_size_in_mb", data_mb), ("video_files_size_in_mb", video_mb)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise UserError(f"{name} must be a positive number, got {value!r}.")


def _prepare_destination(root: Path, dst: Path, overwrite: bool) -> None:
    """Create ``dst``'s parent; refuse a ``dst`` that is a file, holds something (unless
    ``overwrite``) or lies inside the dataset."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() and not dst.is_dir():
        raise UserError(f"{dst}: exists and is not a folder.")
    if dst.is_dir() and any(dst.iterdir()) and not overwrite:
        raise UserError(f"{dst}: folder is not empty; pass overwrite=True to replace it.")
    if dst.resolve() == root.resolve() or root.resolve() in dst.resolve().parents:
        raise UserError(f"{dst}: the export cannot go inside the dataset {root}.")


def _episodes_to_export(root: Path) -> tuple[list[EpisodeMeta], int]:
    """The manifest's episodes, those without actions left out when others have them (LeRobot
    rows all have the same features), and how many were left out."""
    metas = [read_meta(root, row["episode_id"]) for row in read_manifest(root)["episodes"]]
    labelled = [m for m in metas if m.has_actions]
    skipped = len(metas) - len(labelled) if labelled else 0
    metas = labelled or metas
    if not metas:
        raise DatasetError(f"{root}: the dataset has no episodes to export.")
    if skipped:
        log.warning("%s: %d episode(s) without actions left out of the export.", root, skipped)
    return metas, skipped


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
    """Write the export into ``out``: the data and video files episode by episode, then the
    episodes, tasks, stats and info files; returns the counts for the summary."""
    features = _features(layout, fps, codec)
    columns = [k for k, f in features.items() if f["dtype"] != "video"]
    schema = pa.schema([(k, _arrow_type(features[k])) for k in columns])
    task_ids = _task_strings(root, metas, instructions)  # task string -> task id
    strings = {task_id: text for text, task_id in task_ids.items()}
    task_index = {text: index for index, text in enumerate(task_ids)}
    # With actions, an episode's last frame follows its rows (package docstring).
    final_frame = layout.action_dim is not None

    data = DataFiles(out, schema, chunks_size, data_bytes)
    video = VideoFiles(out, layout.camera_key, chunks_size, video_bytes, fps, codec)
    rows: list[dict[str, Any]] = []
    all_stats: list[dict[str, dict[str, np.ndarray]]] = []
    total = 0
    try:
        for episode_index, meta in enumerate(metas):
            if progress is not None:
                progress(episode_index, len(metas))
            task = strings[meta.task_id]
            row, stats = _write_episode(
                _Episode(root, meta, episode_index, total, task, task_index[task]),
                layout,
                columns,
                data,
                video,
                fps=fps,
                final_frame=final_frame,
            )
            rows.append(row)
            all_stats.append(stats)
            total += row["length"]
    finally:
        data.close()
        video.close()

    episodes_path = out / EPISODES_PATH.format(chunk_index=0, file_index=0)
    episodes_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), episodes_path, compression="snappy")
    _write_tasks(out / TASKS_PATH, task_index)
    stats = {key: aggregate([s[key] for s in all_stats]) for key in all_stats[0]}
    atomic_write_json(
        out / STATS_PATH, {k: {n: v.tolist() for n, v in s.items()} for k, s in stats.items()}
    )
    info = _info_json(
        root,
        metas,
        layout,
        features,
        task_ids,
        frames=total,
        final_frame=final_frame,
        fps=fps,
        robot_type=robot_type,
        chunks_size=chunks_size,
        data_bytes=data_bytes,
        video_bytes=video_bytes,
    )
    atomic_write_json(out / INFO_PATH, info)
    return {
        "episodes": len(metas),
        "frames": total,
        "tasks": len(task_index),
        "camera_key": layout.camera_key,
        "data_files": data.files.count,
        "video_files": video.files.count,
    }


def _info_json(
    root: Path,
    metas: list[EpisodeMeta],
    layout: _Layout,
    features: dict[str, dict[str, Any]],
    task_ids: dict[str, str],
    *,
    frames: int,
    final_frame: bool,
    fps: int,
    robot_type: str | None,
    chunks_size: int,
    data_bytes: float,
    video_bytes: float,
) -> dict[str, Any]:
    """``meta/info.json`` of the export: LeRobot's fields and ours (``vw_robot``: task string
    -> id, final frames, the action space)."""
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": len(metas),
        "total_frames": frames,
        "total_tasks": len(task_ids),
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
    return info


@dataclass
class _Episode:
    """One of our episodes as the export numbers it."""

    root: Path  # our dataset
    meta: EpisodeMeta
    index: int  # LeRobot's episode_index: its place in the export
    start: int  # the dataset index of its first row (the rows of the episodes before it)
    task: str  # its LeRobot task string
    task_index: int


def _write_episode(
    episode: _Episode,
    layout: _Layout,
    columns: list[str],
    data: DataFiles,
    video: VideoFiles,
    *,
    fps: int,
    final_frame: bool,
) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """Append one episode's rows and frames to the data and video files; returns its row of
    the episodes file and its stats (feature -> stat -> values)."""
    root, meta = episode.root, episode.meta
    frames = _episode_frames(root, meta, layout.image_size)  # (N, S, S, 3)
    n = len(frames) - 1 if final_frame else len(frames)  # rows
    if n < 1:
        raise DatasetError(
            f"{episode_dir(root, meta.episode_id)}: 1 frame and no action; a LeRobot "
            "episode needs at least one (frame, action) row."
        )
    arrays, final_state = _episode_arrays(
        root, meta, layout, n, fps, episode.index, episode.start, episode.task_index
    )
    data_file = data.append(arrays)
    # Our episode video, in the same codec, stands in for what it adds to the file.
    size = (episode_dir(root, meta.episode_id) / VIDEO_FILE).stat().st_size
    video_file, start = video.append(frames, size)
    stats = {k: feature_stats(arrays[k]) for k in columns}
    stats[layout.camera_key] = image_stats(frames[:n])  # the rows' frames
    key = f"videos/{layout.camera_key}"
    extra = {} if final_state is None else {FINAL_STATE_COLUMN: final_state.tolist()}
    row = {
        "episode_index": episode.index,
        "tasks": [episode.task],
        "length": n,
        "data/chunk_index": data_file[0],
        "data/file_index": data_file[1],
        "dataset_from_index": episode.start,
        "dataset_to_index": episode.start + n,
        f"{key}/chunk_index": video_file[0],
        f"{key}/file_index": video_file[1],
        f"{key}/from_timestamp": start,
        f"{key}/to_timestamp": start + n / fps,
        **{
            f"stats/{feature}/{name}": value.tolist()
            for feature, values in stats.items()
            for name, value in values.items()
        },
        "meta/episodes/chunk_index": 0,
        "meta/episodes/file_index": 0,
        **extra,
    }
    return row, stats


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
