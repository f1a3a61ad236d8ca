"""What a v3.0 folder says about itself beside the rows, read by the import and the check alike:
the tasks file (task strings as pandas writes them) and what our exports record in
``meta/info.json`` under the ``vw_robot`` key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from vw_robot.data.format import DatasetError
from vw_robot.data.lerobot.schema import (
    CODEBASE_VERSION,
    LEGACY_TASKS_PATH,
    OURS_KEY,
    TASKS_PATH,
    is_text,
    read_jsonl,
    read_table,
)


def read_tasks(src: Path, version: str) -> dict[int, str]:
    """task_index -> task string."""
    if version != CODEBASE_VERSION:
        path = src / LEGACY_TASKS_PATH
        rows = read_jsonl(path)
        try:
            return {int(r["task_index"]): str(r["task"]) for r in rows}
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"{path}: each line should have 'task_index' and 'task'.") from None
    path = src / TASKS_PATH
    table = read_table(path)
    if "task_index" not in table.column_names:
        raise DatasetError(f"{path}: column 'task_index' is missing.")
    column = task_column(table.schema, path)
    indices, texts = table.column("task_index").to_pylist(), table.column(column).to_pylist()
    return dict(zip(indices, texts, strict=True))


def pandas_index(schema: pa.Schema) -> list[Any] | None:
    """The ``index_columns`` of a parquet file's pandas metadata (None: no pandas metadata)."""
    metadata = schema.metadata or {}
    try:
        index = json.loads(metadata.get(b"pandas", b"null") or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return index.get("index_columns") if isinstance(index, dict) else None


def task_column(schema: pa.Schema, path: Path) -> str:
    """The column of meta/tasks.parquet that holds the task strings.

    LeRobot builds the file as ``pd.DataFrame({"task_index": ...}, index=tasks)``: pandas
    stores the unnamed index as the column ``__index_level_0__`` (``string`` under pandas 2,
    ``large_string`` under pandas 3) and names it in the pandas metadata; older files and ours
    name the index ``task``. A column the pandas metadata names as the index wins, then one
    called ``task`` or ``__index_level_0__``, then the only string column.
    """
    texts = [f.name for f in schema if f.name != "task_index" and is_text(f.type)]
    index = [c for c in pandas_index(schema) or [] if isinstance(c, str)]
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


def read_ours(path: Path, info: dict[str, Any], camera_dtype: str) -> dict[str, Any]:
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
