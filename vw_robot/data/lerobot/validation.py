"""Checking a LeRobotDataset v3.0 folder against the format: :func:`validate_lerobot`, one line
per problem, each naming the file and the field."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from vw_robot.data.format import DatasetError, read_json
from vw_robot.data.lerobot.metadata import pandas_index, read_ours, read_tasks, task_column
from vw_robot.data.lerobot.schema import (
    CODEBASE_VERSION,
    DATA_PATH,
    DEFAULT_FEATURES,
    EPISODES_DIR,
    FINAL_STATE_COLUMN,
    INFO_PATH,
    STATS_PATH,
    TASKS_PATH,
    VIDEO_PATH,
    first_line,
    is_list,
    is_text,
    read_schema,
    read_table,
    video_keys,
)

# Seconds: LeRobot's default tolerance between a queried and a decoded frame timestamp.
_TOLERANCE_S = 1e-4
_EPISODE_COLUMNS = {  # v3.0 episodes parquet: column -> arrow type check
    "episode_index": pa.types.is_integer,
    "tasks": lambda t: is_list(t) and is_text(t.value_type),
    "length": pa.types.is_integer,
    "data/chunk_index": pa.types.is_integer,
    "data/file_index": pa.types.is_integer,
    "dataset_from_index": pa.types.is_integer,
    "dataset_to_index": pa.types.is_integer,
}


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
    videos = video_keys(features)
    final_frame = False
    try:
        camera_dtype = "video" if videos else "image"
        final_frame = read_ours(info_path, info, camera_dtype)["final_frame"]
    except DatasetError as exc:
        problems.append(str(exc))

    tasks: dict[int, str] = {}
    try:
        tasks = read_tasks(root, CODEBASE_VERSION)
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

    # Our exports keep each episode's last state beside its rows (package docstring).
    has_final_state = final_frame and "observation.state" in features
    extra = {FINAL_STATE_COLUMN: is_list} if has_final_state else {}
    episodes, episode_problems = _episode_rows(root, videos, extra)
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
    return problems + _feature_problems(path, info, features)


def _feature_problems(path: Path, info: dict[str, Any], features: dict[str, Any]) -> list[str]:
    """info.json's ``features``: each one's shape, names and dtype, and LeRobot's defaults."""
    problems = []
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
    schema = read_schema(path)
    try:
        column = task_column(schema, path)
    except DatasetError:
        return []  # reported by read_tasks
    index = pandas_index(schema)
    if index != [column]:
        return [
            f"{path}: pandas metadata 'index_columns' is {index!r}; LeRobot reads the task "
            f"strings as the index, so it should be [{column!r}]."
        ]
    return []


def _episode_rows(
    root: Path, videos: list[str], extra: dict[str, Callable[[pa.DataType], bool]]
) -> tuple[list[dict[str, Any]], list[str]]:
    files = sorted((root / EPISODES_DIR).glob("*/*.parquet"))
    if not files:
        return [], [f"{root / EPISODES_DIR}: no episodes file (chunk-*/file-*.parquet)."]
    checks = {**_EPISODE_COLUMNS, **extra}
    for key in videos:
        checks[f"videos/{key}/chunk_index"] = pa.types.is_integer
        checks[f"videos/{key}/file_index"] = pa.types.is_integer
        checks[f"videos/{key}/from_timestamp"] = pa.types.is_floating
        checks[f"videos/{key}/to_timestamp"] = pa.types.is_floating
    rows, problems = [], []
    for path in files:
        try:
            schema = read_schema(path)
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
            for row in read_table(path, list(checks)).to_pylist():
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
            schema = read_schema(path)
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
        table = read_table(
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
        ok = is_list(kind) and kind.value_type == value
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
    for key in video_keys(info["features"]):
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
                problems.append(f"{path}: unreadable video ({first_line(exc)}).")
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
