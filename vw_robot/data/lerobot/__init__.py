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

Modules, in the order a reader needs them: ``schema`` (paths, LeRobot's defaults, parquet and
Arrow helpers), ``metadata`` (the tasks file; what our exports record in ``info.json``),
``source`` (where a folder's episodes live), ``reading`` (:func:`import_lerobot`), ``stats``
and ``files`` (what an export computes and appends to), ``writing`` (:func:`export_lerobot`),
``validation`` (:func:`validate_lerobot`).
"""

from __future__ import annotations

from vw_robot.data.lerobot.reading import import_lerobot
from vw_robot.data.lerobot.schema import (
    CHUNK_FILE,
    CHUNKS_SIZE,
    CODEBASE_VERSION,
    DATA_FILES_SIZE_IN_MB,
    DATA_PATH,
    DEFAULT_FEATURES,
    EPISODES_DIR,
    EPISODES_PATH,
    FINAL_STATE_COLUMN,
    INFO_PATH,
    LEGACY_EPISODES_PATH,
    LEGACY_TASKS_PATH,
    OURS_KEY,
    READ_VERSIONS,
    STATS_PATH,
    TASKS_PATH,
    VIDEO_FILES_SIZE_IN_MB,
    VIDEO_PATH,
)
from vw_robot.data.lerobot.stats import QUANTILES
from vw_robot.data.lerobot.validation import validate_lerobot
from vw_robot.data.lerobot.writing import export_lerobot

__all__ = [
    "CHUNKS_SIZE",
    "CHUNK_FILE",
    "CODEBASE_VERSION",
    "DATA_FILES_SIZE_IN_MB",
    "DATA_PATH",
    "DEFAULT_FEATURES",
    "EPISODES_DIR",
    "EPISODES_PATH",
    "FINAL_STATE_COLUMN",
    "INFO_PATH",
    "LEGACY_EPISODES_PATH",
    "LEGACY_TASKS_PATH",
    "OURS_KEY",
    "QUANTILES",
    "READ_VERSIONS",
    "STATS_PATH",
    "TASKS_PATH",
    "VIDEO_FILES_SIZE_IN_MB",
    "VIDEO_PATH",
    "export_lerobot",
    "import_lerobot",
    "validate_lerobot",
]
