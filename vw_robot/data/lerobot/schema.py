"""The LeRobotDataset layout both directions share: paths, LeRobot's defaults, and reading
parquet files and their Arrow types with errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from vw_robot.data.format import DatasetError

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


def video_keys(features: dict[str, Any]) -> list[str]:
    return [k for k, f in features.items() if f["dtype"] == "video"]


def is_text(kind: pa.DataType) -> bool:
    """Arrow string types: pandas 2 writes ``string``, pandas 3 ``large_string``."""
    is_view = getattr(pa.types, "is_string_view", lambda _: False)  # pyarrow >= 16
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or is_view(kind)


def is_list(kind: pa.DataType) -> bool:
    return (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    )


def is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)


def read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    if columns is not None:
        missing = [c for c in columns if c not in read_schema(path).names]
        if missing:
            raise DatasetError(f"{path}: column(s) {', '.join(map(repr, missing))} missing.")
    try:
        return pq.read_table(path, columns=columns)
    except FileNotFoundError:
        raise DatasetError(f"{path}: file is missing.") from None
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"{path}: unreadable parquet ({first_line(exc)}).") from None


def read_schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except FileNotFoundError:
        raise DatasetError(f"{path}: file is missing.") from None
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"{path}: unreadable parquet ({first_line(exc)}).") from None


def first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def read_jsonl(path: Path) -> list[dict[str, Any]]:
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
