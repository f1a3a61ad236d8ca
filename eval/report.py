"""Per-task success tables, result files with provenance, and rollout videos.

An evaluation folder is written as results arrive (:func:`open_record`, :func:`run_recorded`):
``episodes.jsonl`` holds the config the folder's results belong to on its first line and one
line per finished episode after it, each task's episodes appended (videos first) as soon as
they finish. Rerunning the same config resumes: recorded episodes are kept and not run again.
Another config is refused, naming the keys that differ, unless ``overwrite`` clears the earlier
results and videos first; so every file in the folder belongs to the run its record names.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vw_robot.data.video import read_video
from vw_robot.envs import get_spec
from vw_robot.errors import UserError
from vw_robot.eval.metrics import wilson_interval
from vw_robot.eval.rollout import EpisodeResult
from vw_robot.eval.tables import markdown_table
from vw_robot.io import LockHeldError, atomic_write_text, folder_lock
from vw_robot.provenance import git_revision, provenance

log = logging.getLogger(__name__)

EPISODES_FILE = "episodes.jsonl"
VIDEOS_DIR = "videos"
# What write_report writes into an evaluation folder (cleared by overwrite).
REPORT_OUTPUTS = ("results.json", "results.md", "rollouts.mp4", "success.png", VIDEOS_DIR)
# Config keys that do not change an evaluation's results: a rerun may change them.
RESULTS_INDEPENDENT = ("workers", "out", "overwrite")
# Temporary files of an interrupted write (vw_robot.io.atomic_write, write_video).
_TEMP_PATTERN = ".*.tmp*"


class ResultsError(UserError):
    """An evaluation folder holds other results, or its record is damaged; the message names
    the folder or file."""


class ResultsRecord:
    """An evaluation folder's record (``episodes.jsonl``): ``config``, then ``rows`` (one dict
    per finished episode or chain, in the order they were recorded)."""

    def __init__(self, path: Path, config: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        self.path, self.config, self.rows = path, config, rows

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append ``rows`` and flush them to disk (a kill then loses at most a torn last line,
        which the next run drops)."""
        if not rows:
            return
        with open(self.path, "a") as handle:
            handle.write("".join(json.dumps(dict(row)) + "\n" for row in rows))
            handle.flush()
            os.fsync(handle.fileno())
        self.rows.extend(dict(row) for row in rows)


@contextlib.contextmanager
def open_record(
    folder: str | os.PathLike[str],
    config: Mapping[str, Any],
    *,
    overwrite: bool,
    differences: Callable[[Any, Any], list[str]],
    name: str = EPISODES_FILE,
    outputs: Sequence[str] = REPORT_OUTPUTS,
) -> Iterator[ResultsRecord]:
    """Hold ``folder`` for one evaluation with ``config`` and yield its record.

    A new folder gets a record naming ``config``. A folder whose record has the same config
    (keys of :data:`RESULTS_INDEPENDENT` aside) is resumed: its rows are the results kept.

    Args:
        folder: the output folder.
        config: the run's config (JSON-able), stored on the record's first line.
        overwrite: first delete the record and ``outputs`` (results of any earlier run).
        differences: ``(old, new) -> ["key: old -> new", ...]``, how configs are compared.
        name: the record's file name.
        outputs: the files and folders the run writes besides the record; of a folder, only
            its ``.mp4`` and temporary files are deleted.

    Raises:
        ResultsError: another evaluation is writing to ``folder``; it holds results of another
            config (the keys named) or results without a record, and ``overwrite`` is False;
            or its record is damaged (file and line named).
    """
    folder = Path(folder)
    config = dict(config)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(folder_lock(folder, f".{name}.lock", wait=False))
        except LockHeldError as exc:
            raise ResultsError(
                f"{folder}: another evaluation is writing to this folder ({exc.holder}); wait "
                "for it to finish or choose another out=."
            ) from None
        path = folder / name
        if overwrite:
            _clear(folder, (name, *outputs))
        if path.exists():
            record = _read_record(path)
            changed = differences(_comparable(record.config), _comparable(config))
            if changed:
                raise ResultsError(
                    f"{folder}: holds the results of an evaluation with another config ("
                    + "; ".join(changed)
                    + "); pass overwrite=true to replace them, or choose another out=."
                )
            if record.rows:
                log.info(
                    "%s: resuming; %d result(s) recorded earlier are kept", path, len(record.rows)
                )
        else:
            earlier = [n for n in outputs if _has_output(folder / n)]
            if earlier:
                raise ResultsError(
                    f"{folder}: holds results of an earlier evaluation ({', '.join(earlier)}) "
                    f"without the {name} that names their config (an older vw_robot wrote them, "
                    "or it was deleted); pass overwrite=true to replace them, or choose another "
                    "out=."
                )
            atomic_write_text(path, json.dumps({"config": config}) + "\n")
            record = ResultsRecord(path, config, [])
        _remove_temporaries(folder, outputs)
        yield record


def run_recorded(
    out_dir: str | os.PathLike[str],
    record: ResultsRecord,
    tasks: Sequence[str],
    episodes_per_task: int,
    run: Callable[..., Any],
    *,
    fps: int = 20,
) -> dict[str, list[EpisodeResult]]:
    """Run what ``record`` lacks in one pass over every task, recording each episode (its
    video first) as soon as the evaluation hands it over.

    ``run(tasks, skip=..., on_episode=...)`` is :func:`vw_robot.eval.rollout.evaluate` with
    the rest of its arguments bound: ``skip`` names the recorded (task, index) pairs.

    Returns:
        Every episode of ``tasks``, recorded earlier or now, per task by index (no frames: the
        videos are on disk, see :func:`recorded_videos`).
    """
    out_dir = Path(out_dir)
    done = episodes_by_task(record.rows)
    for task_id in tasks:
        done.setdefault(task_id, {})
    recorded = {(t, i) for t in tasks for i in done[t]}
    missing = [t for t in tasks if any(i not in done[t] for i in range(episodes_per_task))]
    revision = git_revision()

    def keep(ep: EpisodeResult) -> None:
        if ep.index in done[ep.task_id]:
            return
        video = None
        if ep.frames is not None:
            video = f"{VIDEOS_DIR}/{video_name(ep.task_id, ep.index)}"
            write_video(out_dir / video, ep.frames, fps)
        record.append([ep.to_json() | {"video": video, "commit": revision}])
        done[ep.task_id][ep.index] = dataclasses.replace(ep, frames=None)

    if missing:
        run(missing, skip=recorded, on_episode=keep)
    return {task_id: [done[task_id][i] for i in sorted(done[task_id])] for task_id in tasks}


def episodes_by_task(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[int, EpisodeResult]]:
    """Recorded rows as task id -> index -> :class:`EpisodeResult` (no frames; the first row
    of an episode recorded twice wins)."""
    out: dict[str, dict[int, EpisodeResult]] = {}
    for row in rows:
        ep = EpisodeResult(
            row["task_id"],
            int(row["index"]),
            int(row["seed"]),
            bool(row["success"]),
            int(row["steps"]),
            float(row["return"]),
            row.get("error"),
            completed=row.get("completed"),
        )
        out.setdefault(ep.task_id, {}).setdefault(ep.index, ep)
    return out


def measured_at(rows: Sequence[Mapping[str, Any]]) -> list[str | None]:
    """The git revisions a record's rows were measured at, in the order first recorded (None
    for rows an older vw_robot recorded without one)."""
    return list(dict.fromkeys(row.get("commit") for row in rows))


def with_measured_at(prov: dict[str, Any], measured: Sequence[str | None] | None) -> dict[str, Any]:
    """``prov`` with ``measured_at`` (the revisions that measured the results) when known."""
    return prov if measured is None else {**prov, "measured_at": list(measured)}


def recorded_videos(
    out_dir: str | os.PathLike[str], record: ResultsRecord
) -> dict[tuple[str, int], Path]:
    """(task id, index) -> the video file its row names, for :func:`write_report`."""
    return {
        (row["task_id"], int(row["index"])): Path(out_dir) / row["video"]
        for row in record.rows
        if row.get("video")
    }


def video_name(task_id: str, index: int) -> str:
    """File name of an episode's video under ``videos/``."""
    return f"{task_id.replace('/', '__')}__ep{index:03d}.mp4"


def _comparable(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in RESULTS_INDEPENDENT}


def _read_record(path: Path) -> ResultsRecord:
    """Parse a record; a torn last line (a kill mid-append) is dropped from the file, logged."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: unreadable ({type(exc).__name__}: {exc}).") from None
    *lines, tail = text.split("\n")
    if tail:
        with open(path, "r+b") as handle:
            handle.truncate(len(text.encode()) - len(tail.encode()))
        log.warning(
            "%s: dropped an incomplete last line (a run killed while recording); that "
            "result is computed again",
            path,
        )
    hint = "pass overwrite=true to start the evaluation again"
    parsed = []
    for number, line in enumerate(lines, start=1):
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ResultsError(f"{path}:{number}: not valid JSON ({exc}); {hint}.") from None
        if not isinstance(value, dict):
            raise ResultsError(f"{path}:{number}: not a JSON object; {hint}.")
        parsed.append(value)
    if not parsed or not isinstance(parsed[0].get("config"), dict):
        raise ResultsError(f'{path}:1: should be {{"config": {{...}}}}; {hint}.')
    return ResultsRecord(path, parsed[0]["config"], parsed[1:])


def _has_output(path: Path) -> bool:
    if path.is_dir():
        return any(p.suffix == ".mp4" for p in path.iterdir())
    return path.exists()


def _clear(folder: Path, names: Sequence[str]) -> None:
    removed = 0
    for name in names:
        path = folder / name
        if path.is_dir():
            for entry in path.iterdir():
                if entry.is_file() and (
                    entry.suffix == ".mp4" or fnmatch.fnmatch(entry.name, _TEMP_PATTERN)
                ):
                    entry.unlink()
                    removed += 1
            with contextlib.suppress(OSError):  # not empty: files that are not ours stay
                path.rmdir()
        elif path.exists():
            path.unlink()
            removed += 1
    if removed:
        log.info("%s: overwrite=true: removed %d file(s) of earlier results", folder, removed)


def _remove_temporaries(folder: Path, names: Sequence[str]) -> None:
    """Temporary files a killed run left beside its outputs (we hold the folder's lock)."""
    for where in [folder, *(folder / n for n in names if (folder / n).is_dir())]:
        for temp in where.glob(_TEMP_PATTERN):
            temp.unlink(missing_ok=True)


def summarize(results: Mapping[str, Sequence[EpisodeResult]]) -> dict[str, Any]:
    """Per-task episodes, successes, rate, Wilson 95% interval, mean steps; overall mean.

    ``mean_steps_to_success`` averages over successful episodes only (None when there are
    none); ``errors`` counts episodes that raised. A multi-subtask episode's task also gets
    ``mean_completed`` (subtasks completed per episode, D4RL's kitchen score) and
    ``completed_counts`` (episodes that completed exactly 0, 1, ... subtasks).
    """
    per_task: dict[str, dict[str, Any]] = {}
    for task_id, episodes in results.items():
        n = len(episodes)
        successes = sum(ep.success for ep in episodes)
        low, high = wilson_interval(successes, n)
        steps = [ep.steps for ep in episodes if ep.success]
        per_task[task_id] = {
            "episodes": n,
            "successes": successes,
            "rate": successes / n,
            "ci95": [low, high],
            "mean_steps_to_success": float(np.mean(steps)) if steps else None,
            "errors": sum(ep.error is not None for ep in episodes),
        }
        completed = [ep.completed for ep in episodes if ep.completed is not None]
        if completed:
            per_task[task_id]["mean_completed"] = float(np.mean(completed))
            length = len(get_spec(task_id).subtasks) + 1
            per_task[task_id]["completed_counts"] = np.bincount(
                completed, minlength=length
            ).tolist()
    rates = [row["rate"] for row in per_task.values()]
    return {"tasks": per_task, "mean_success": float(np.mean(rates)) if rates else None}


def write_video(path: str | os.PathLike[str], frames: np.ndarray, fps: int = 20) -> None:
    """Write (T, H, W, 3) uint8 frames as an mp4 (H.264 through imageio-ffmpeg), atomically."""
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    # macro_block_size=1 keeps sizes that are not multiples of 16 as they are.
    with imageio.get_writer(tmp, fps=fps, codec="libx264", quality=8, macro_block_size=1) as writer:
        for frame in frames:
            writer.append_data(np.asarray(frame, dtype=np.uint8))
    os.replace(tmp, path)


def tile_videos(clips: Sequence[np.ndarray], columns: int = 5) -> np.ndarray:
    """Tile clips (each (T_i, H, W, 3)) into one (max T, rows*H, columns*W, 3) clip; a clip that
    ends early holds its last frame."""
    if not clips:
        raise ValueError("tile_videos needs at least one clip.")
    length = max(len(c) for c in clips)
    h, w = clips[0].shape[1:3]
    columns = min(columns, len(clips))
    rows = -(-len(clips) // columns)
    grid = np.zeros((length, rows * h, columns * w, 3), dtype=np.uint8)
    for k, clip in enumerate(clips):
        padded = np.concatenate([clip, np.repeat(clip[-1:], length - len(clip), axis=0)])
        r, c = divmod(k, columns)
        grid[:, r * h : (r + 1) * h, c * w : (c + 1) * w] = padded
    return grid


def write_report(
    out_dir: str | os.PathLike[str],
    results: Mapping[str, Sequence[EpisodeResult]],
    *,
    config: Mapping[str, Any],
    fps: int = 20,
    videos: Mapping[tuple[str, int], Path] | None = None,
    measured_at: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """Write ``results.json`` (summary, episodes with their video, config, provenance),
    ``results.md``, one mp4 per episode with frames, and ``rollouts.mp4`` tiling each task's
    first recorded episode.

    Args:
        videos: (task id, index) -> video written earlier, for episodes without frames (a
            resumed run: :func:`recorded_videos`).
        measured_at: the git revisions the episodes were measured at (:func:`measured_at`),
            kept in the provenance beside the revision that wrote the report: a resumed run
            reports the commits that measured its episodes, not only the one that resumed it.

    Returns:
        The summary dict.
    """
    out_dir = Path(out_dir)
    videos = dict(videos or {})
    firsts = []
    for task_id, episodes in results.items():
        first = None
        for ep in episodes:
            if ep.frames is not None:
                videos[(task_id, ep.index)] = out_dir / VIDEOS_DIR / video_name(task_id, ep.index)
                write_video(videos[(task_id, ep.index)], ep.frames, fps)
                first = ep.frames if first is None else first
            elif first is None and (task_id, ep.index) in videos:
                first = _decoded(videos[(task_id, ep.index)])
        if first is not None:
            firsts.append(first)
    summary = summarize(results)
    payload = {
        "summary": summary,
        "episodes": [
            ep.to_json() | {"video": _relative(videos.get((ep.task_id, ep.index)), out_dir)}
            for eps in results.values()
            for ep in eps
        ],
        "config": dict(config),
        "provenance": with_measured_at(provenance(), measured_at),
    }
    atomic_write_text(out_dir / "results.json", json.dumps(payload, indent=2) + "\n")
    atomic_write_text(out_dir / "results.md", markdown_table(summary))
    if firsts and len({f.shape[1:] for f in firsts}) == 1:
        write_video(out_dir / "rollouts.mp4", tile_videos(firsts), fps)
    bar_chart({str(config.get("policy", "policy")): summary}, out_dir / "success.png")
    return summary


def _decoded(path: Path) -> np.ndarray | None:
    """A recorded video's frames for the tiled overview, or None (logged) if it fails."""
    try:
        return read_video(path)
    except UserError as exc:
        log.warning("%s; left out of rollouts.mp4", exc)
        return None


def _relative(path: Path | None, out_dir: Path) -> str | None:
    if path is None:
        return None
    return Path(os.path.relpath(path, out_dir)).as_posix()


def bar_chart(
    summaries: Mapping[str, Mapping[str, Any]],
    path: str | os.PathLike[str],
    title: str = "success rate per task (Wilson 95% intervals)",
) -> str:
    """Grouped bars: one group per task, one bar per policy, with Wilson intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = list(summaries)
    tasks = list(next(iter(summaries.values()))["tasks"])
    width = 0.8 / max(1, len(policies))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(tasks) * max(1, len(policies)) ** 0.5), 4))
    for k, policy in enumerate(policies):
        rows = [summaries[policy]["tasks"][t] for t in tasks]
        rates = np.array([r["rate"] for r in rows])
        # Clipped: the interval's bound can sit a rounding error inside the rate at 0/n, n/n.
        low = np.clip(rates - np.array([r["ci95"][0] for r in rows]), 0.0, None)
        high = np.clip(np.array([r["ci95"][1] for r in rows]) - rates, 0.0, None)
        x = np.arange(len(tasks)) + (k - (len(policies) - 1) / 2) * width
        with warnings.catch_warnings():
            # matplotlib's errorbar checks a (2, N) yerr row by row with math.isfinite, which
            # numpy >= 1.25 flags as deprecated; the values are plain floats.
            warnings.filterwarnings("ignore", "Conversion of an array", DeprecationWarning)
            ax.bar(x, rates, width, yerr=np.vstack([low, high]), capsize=2, label=policy)
    ax.set_xticks(
        np.arange(len(tasks)),
        [t.split("/")[-1] for t in tasks],
        rotation=30,
        ha="right",
        fontsize=8,
    )
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
