"""LeRobot -> our format: :func:`import_lerobot` (the frame/action alignment is in the
package docstring)."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vw_robot.data.format import (
    VIDEO_FILE,
    DatasetError,
    EpisodeMeta,
    episode_dir,
    init_dataset,
    is_complete,
    write_episode,
    write_manifest,
)
from vw_robot.data.importer import decode_resized
from vw_robot.data.lerobot.metadata import read_ours, read_tasks
from vw_robot.data.lerobot.schema import (
    FINAL_STATE_COLUMN,
    INFO_PATH,
    is_list,
    is_number,
    read_table,
)
from vw_robot.data.lerobot.source import SourceEpisode, choose_camera, read_episodes, read_info
from vw_robot.data.video import CODECS, resize_frames
from vw_robot.errors import UserError
from vw_robot.provenance import provenance

log = logging.getLogger(__name__)


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
    the package docstring says: a folder we exported comes back exactly, another keeps its N
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
    src, out = _checked_args(src, out, codec, image_size)
    source = _open_source(src, camera_key, version, task_ids)
    fps = source.fps
    init_dataset(out, image_size=image_size, fps=fps, codec=codec)
    episodes = source.episodes
    summary: dict[str, Any] = {
        "imported": 0,
        "skipped_existing": 0,
        "episodes": len(episodes),
        "frames": 0,
        "bytes": 0,
        "fps": fps,
        "camera_key": source.camera_key,
        "version": source.info["codebase_version"],
    }
    try:
        _import_episodes(source, src, out, image_size, codec, summary, progress)
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


@dataclass
class _Source:
    """A LeRobot folder as the import reads it, before any episode's rows."""

    path: Path
    info: dict[str, Any]  # meta/info.json, checked (read_info)
    camera_key: str  # the image or video feature imported
    tasks: dict[int, str]  # task_index -> task string
    task_ids: dict[str, str]  # task string -> task id (the caller's, then our export's)
    episodes: list[SourceEpisode]  # in episode index order
    final_frame: bool  # our export: each episode's final frame (and state) follows its rows
    has_action: bool
    has_state: bool  # only with actions: our format keeps state beside actions
    bounds: tuple[list[float], list[float]] | None  # the action space; None without actions

    @property
    def fps(self) -> int:
        return self.info["fps"]

    @property
    def camera(self) -> dict[str, Any]:
        return self.info["features"][self.camera_key]


def _open_source(
    src: Path, camera_key: str | None, version: str | None, task_ids: Mapping[str, str] | None
) -> _Source:
    """Read and check everything of ``src`` but the episodes' rows and frames; logs where the
    action space comes from and how frames and actions line up."""
    info = read_info(src, version)
    camera_key = choose_camera(src, info["features"], camera_key)
    camera = info["features"][camera_key]
    tasks = read_tasks(src, info["codebase_version"])
    ours = read_ours(src / INFO_PATH, info, camera["dtype"])
    episodes = read_episodes(src, info, camera_key, ours["final_frame"])
    has_action = "action" in info["features"]
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
    return _Source(
        path=src,
        info=info,
        camera_key=camera_key,
        tasks=tasks,
        task_ids={**(task_ids or {}), **ours["task_ids"]},
        episodes=episodes,
        final_frame=ours["final_frame"],
        has_action=has_action,
        has_state=has_action and "observation.state" in info["features"],
        bounds=bounds,
    )


def _episode_frames(
    source: _Source,
    table: pa.Table,
    episode: SourceEpisode,
    videos: _VideoReader,
    image_size: int,
) -> np.ndarray:
    """(N, S, S, 3) uint8: the episode's frames, from its image column or its video."""
    camera = source.camera
    if camera["dtype"] == "image":
        frames = _image_frames(table, source.camera_key, camera, episode.data_file, source.path)
        return resize_frames(frames, image_size)
    timestamps = _timestamps(table, source.fps)
    if source.final_frame:  # the frame after the last row (package docstring)
        timestamps = np.append(timestamps, timestamps[-1] + 1 / source.fps)
    return videos.episode(episode, timestamps)


def _episode_steps(
    source: _Source, table: pa.Table, episode: SourceEpisode
) -> dict[str, np.ndarray] | None:
    """The episode's ``actions`` (N-1, A) and ``state`` (N, D) for its N frames, or None
    without actions."""
    if not source.has_action:
        return None
    actions = _numeric(table, "action", episode.data_file, 2)
    steps = {"actions": actions if source.final_frame else actions[:-1]}
    if source.has_state:
        state = _numeric(table, "observation.state", episode.data_file, 2)
        if source.final_frame:
            state = np.concatenate([state, _final_state(episode, state.shape[1])])
        steps["state"] = state
    return steps


def _final_state(episode: SourceEpisode, dim: int) -> np.ndarray:
    """(1, dim) float32: the state after the episode's last row, from the episodes file."""
    value = np.asarray(episode.final_state or [], np.float32)
    if value.shape != (dim,) or not np.all(np.isfinite(value)):
        raise DatasetError(
            f"{episode.meta_file}: episode {episode.index}: column {FINAL_STATE_COLUMN!r} should "
            f"hold {dim} finite numbers, got {episode.final_state!r}."
        )
    return value[None]


def _action_bounds(episodes: list[SourceEpisode]) -> tuple[list[float], list[float]]:
    """Per-dimension min and max of the 'action' column over every data file."""
    low = high = None
    for path in sorted({e.data_file for e in episodes}):
        actions = _numeric(read_table(path, ["action"]), "action", path, 2)
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

    def episode(self, episode: SourceEpisode) -> pa.Table:
        path = episode.data_file
        if path != self._path:
            self._table, self._path = read_table(path), path
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

    def episode(self, episode: SourceEpisode, timestamps: np.ndarray) -> np.ndarray:
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


def _episode_task(table: pa.Table, tasks: dict[int, str], episode: SourceEpisode) -> str:
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
    if is_list(kind):
        values = column
        while is_list(values.type):
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
    if is_list(column.type):
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        if len(lengths) and lengths.min() != lengths.max():
            raise DatasetError(
                f"{path}: column {name!r} has rows of {lengths.min()} to {lengths.max()} values."
            )
        values = column.flatten()
        if is_list(values.type) or not is_number(values.type):
            raise DatasetError(f"{path}: column {name!r} has arrow type {column.type}.")
        array = values.to_numpy(zero_copy_only=False).reshape(len(column), -1)
    elif is_number(column.type):
        array = column.to_numpy(zero_copy_only=False).reshape(len(column), 1)
    else:
        raise DatasetError(f"{path}: column {name!r} has arrow type {column.type}, not numbers.")
    array = array if ndim == 2 else array[:, 0]
    if np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32)
        if not np.all(np.isfinite(array)):
            raise DatasetError(f"{path}: column {name!r} contains NaN or inf.")
    return array


def _checked_args(
    src: str | os.PathLike[str], out: str | os.PathLike[str], codec: str, image_size: object
) -> tuple[Path, Path]:
    """``src`` and ``out`` as paths, after refusing a bad codec, image size or source."""
    if codec not in CODECS:
        raise UserError(f"codec={codec!r} is unknown; presets: {', '.join(CODECS)}.")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise UserError(f"image_size must be a positive int, got {image_size!r}.")
    src = Path(src).expanduser()
    if not src.is_dir():
        raise UserError(f"{src}: LeRobot dataset folder does not exist.")
    return src, Path(out)


def _action_space(source: Any) -> dict[str, Any]:
    """The action space the source records as EpisodeMeta fields (None: the loader's default)."""
    bounds = source.bounds
    return {
        "action_low": None if bounds is None else bounds[0],
        "action_high": None if bounds is None else bounds[1],
    }


def _import_episodes(
    source: Any,
    src: Path,
    out: Path,
    image_size: int,
    codec: str,
    summary: dict[str, Any],
    progress: Callable[[int, int], None] | None,
) -> None:
    """Write each source episode not yet complete in ``out``, counting into ``summary``."""
    versions = provenance()["packages"]
    prefix = _episode_prefix(src)
    episodes = source.episodes
    rows = _RowReader()
    videos = _VideoReader(image_size, source.fps)
    for done, episode in enumerate(episodes):
        if progress is not None:  # (episodes handled, of all): a progress bar's callback
            progress(done, len(episodes))
        episode_id = f"{prefix}{episode.index:06d}"
        if is_complete(out, episode_id):
            summary["skipped_existing"] += 1
            continue
        table = rows.episode(episode)
        frames = _episode_frames(source, table, episode, videos, image_size)
        steps = _episode_steps(source, table, episode)
        task = _episode_task(table, source.tasks, episode)
        meta = EpisodeMeta(
            episode_id=episode_id,
            task_id=source.task_ids.get(task, task),
            num_frames=len(frames),
            image_size=image_size,
            fps=source.fps,
            has_actions=steps is not None,
            source=f"import:lerobot:{src.name}:episode_{episode.index}",
            codec=codec,
            video_sha256="",  # filled in by write_episode
            versions=dict(versions),
            **_action_space(source),
        )
        write_episode(out, meta, frames, steps)
        summary["imported"] += 1
        summary["frames"] += len(frames)
        summary["bytes"] += (episode_dir(out, episode_id) / VIDEO_FILE).stat().st_size
