"""Collect demonstration episodes from scripted experts into a dataset folder.

Each episode (task t, index i) is reset with ``episode_seed(seed, t, i)`` and stored under an id
that names the task, the base seed and the index, so a rerun with the same settings skips what
is complete (resume), and a run with another base seed adds new episodes beside the old ones.
Workers write only their own episode folders; the parent alone rebuilds the manifest.

Three switches change what is recorded (all off by default, and then episodes are as before):

- **Labelled play** (``segments``): every ``playground/chain`` and ``playground/play`` episode
  records its plan and the subtask of every frame (meta ``subtasks``, steps ``subtask``), as
  CALVIN annotates its play data. ``segments=True`` also writes each subtask the expert
  completed as an episode of its own, of task ``playground/<subtask>``: the source's frames,
  actions and state from the frame the subtask began to ``steps_after_success`` frames past
  its success (meta ``segment`` names the source episode and the window). Segments start
  where chains start (hand low, gripper often closed), which subtask episodes reset at HOME
  never show.
- **Random starts** (``start="random"``, single playground subtasks): each episode starts
  from a random arm pose and gripper state, or where another subtask's expert leaves the
  scene (:func:`vw_robot.envs.playground_experts.sample_random_start`).
- **Action noise** (``action_noise=std``, DART): the env executes the expert's action plus
  Gaussian noise of that std (drawn from the episode seed, clipped to the action box); the
  stored ``actions`` are the expert's clean actions on the states visited, the executed ones
  are kept as ``executed_actions``, and meta records the std.

Episodes recorded with a random start or with noise get ids of their own (``__random``,
``__noise0.2`` after the seed), so they can join clean episodes in one dataset.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vw_robot.data import format as fmt
from vw_robot.envs import get_spec, make_env
from vw_robot.envs import playground_suite as pg
from vw_robot.envs.playground_experts import check_start
from vw_robot.errors import DiskFullError, Interrupted, UserError
from vw_robot.eval.seeding import episode_seed
from vw_robot.io import LockHeldError, disk_full, folder_lock, is_disk_full
from vw_robot.policies import make_policy
from vw_robot.processes import die_with_parent, interrupts_held, stop_on_interrupt
from vw_robot.provenance import provenance

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpisodeJob:
    """One demonstration to record."""

    task_id: str
    index: int
    base_seed: int
    env_kwargs: tuple[tuple[str, Any], ...]  # make_env keyword arguments, hashable
    policy: str
    keep_failed: bool
    steps_after_success: int
    codec: str
    fps: int
    start: str = "home"  # single playground subtasks: "home" or "random"
    action_noise: float = 0.0  # std of the Gaussian noise on the executed action (DART)
    segments: bool = False  # also write each completed subtask as an episode of its own

    @property
    def seed(self) -> int:
        return episode_seed(self.base_seed, self.task_id, self.index)

    @property
    def episode_id(self) -> str:
        variant = "__random" if self.start != "home" else ""
        if self.action_noise:
            variant += f"__noise{self.action_noise:g}"
        task = self.task_id.replace("/", "__")
        return f"{task}__s{self.base_seed}{variant}__{self.index:05d}"

    def segment_id(self, index: int, subtask: str) -> str:
        """Id of the segment cut from this episode for its ``index``-th subtask."""
        return f"{self.episode_id}__seg{index}-{pt_task_name(subtask)}"


def pt_task_name(subtask: str) -> str:
    """``open_drawer`` -> ``open-drawer`` (registry name of a playground subtask)."""
    return pg.task_id(subtask).split("/", 1)[1]


# Noise draws come from their own stream of the episode seed, apart from the env's.
_NOISE_STREAM = 0x44415254  # "DART"


def noise_rng(seed: int) -> np.random.Generator:
    """The generator of an episode's action noise (a function of its seed only)."""
    return np.random.default_rng(np.random.SeedSequence([seed, _NOISE_STREAM]))


def record_episode(env: Any, policy: Any, job: EpisodeJob) -> dict[str, Any]:
    """Roll out ``policy`` once; return frames (T+1, H, W, 3) and per-step arrays.

    The episode ends ``job.steps_after_success`` steps after the first success (so the video
    shows the solved state), or at the time limit. With ``job.action_noise`` the env executes
    the policy's action plus noise while ``actions`` keeps the policy's clean action; an
    episode of several subtasks (its ``info`` names a ``chain``) adds the subtask of every
    frame and ``"subtasks"``: per subtask of the plan, its first frame and success frame.
    """
    options = {"start": job.start} if job.start != "home" else None
    obs, info = env.reset(seed=job.seed, options=options)
    policy.reset(task_id=job.task_id, action_space=env.action_space, seed=job.seed)
    low, high = env.action_space.low, env.action_space.high
    noise = noise_rng(job.seed) if job.action_noise else None
    frames, states, successes = [obs["pixels"]], [obs["state"]], [info["is_success"]]
    actions, executed, rewards = [], [], []
    plan = _Plan(info)
    first_success = 0 if info["is_success"] else None
    while first_success is None or len(actions) < first_success + job.steps_after_success:
        action = np.asarray(policy.select_action(obs, info), dtype=np.float32)
        acting = action
        if noise is not None:
            shaken = action + job.action_noise * noise.standard_normal(action.shape)
            acting = np.clip(shaken, low, high).astype(np.float32)
            executed.append(acting)
        obs, reward, terminated, truncated, info = env.step(acting)
        # Our envs clip to their Box: record the action that acted, which stays in bounds
        # (with noise: the expert's clean action, the label DART trains on).
        actions.append(np.clip(action, low, high))
        rewards.append(reward)
        frames.append(obs["pixels"])
        states.append(obs["state"])
        successes.append(info["is_success"])
        plan.observe(info, len(actions))
        if info["is_success"] and first_success is None:
            first_success = len(actions)
        if terminated or truncated:
            break
    empty = np.zeros((0, *env.action_space.shape), np.float32)
    steps = {
        "actions": np.stack(actions) if actions else empty,
        "state": np.stack(states),
        "reward": np.asarray(rewards, np.float32),
        "success": np.asarray(successes, bool),
    }
    if noise is not None:
        steps["executed_actions"] = np.stack(executed) if executed else empty
    if plan.chain:
        steps["subtask"] = np.asarray(plan.frames, np.int64)
    return {
        "frames": np.stack(frames),  # (T+1, H, W, 3) uint8
        "steps": steps,
        "success": first_success is not None,
        "subtasks": plan.summary() if plan.chain else None,
        "start": info.get("start"),
    }


class _Plan:
    """Per-frame subtask labels of an episode of several subtasks, read from ``info``."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.chain: tuple[str, ...] = tuple(info.get("chain", ()))
        self.frames: list[int] = []
        self.starts: list[int | None] = [None] * len(self.chain)
        self.successes: list[int | None] = [None] * len(self.chain)
        self._completed = 0
        if self.chain:
            self.starts[0] = 0
            self.observe(info, 0)

    def observe(self, info: dict[str, Any], frame: int) -> None:
        """Label ``frame`` (its ``info``): the subtask current there, and any success."""
        if not self.chain:
            return
        self.frames.append(int(info["subtask_index"]))
        completed = int(info["completed"])
        while self._completed < completed:  # the detector of subtask _completed fired
            self.successes[self._completed] = frame
            self._completed += 1
            if self._completed < len(self.chain):
                self.starts[self._completed] = frame

    def summary(self) -> list[dict[str, Any]]:
        return [
            {"subtask": name, "start": start, "success_step": success}
            for name, start, success in zip(self.chain, self.starts, self.successes, strict=True)
        ]


# Simulators live as long as the worker process: building one costs 0.2-3 s.
_ENVS: dict[tuple[str, tuple[tuple[str, Any], ...]], Any] = {}
_POLICIES: dict[str, Any] = {}


def _env_for(job: EpisodeJob) -> Any:
    key = (job.task_id, job.env_kwargs)
    if key not in _ENVS:
        _ENVS[key] = make_env(job.task_id, **dict(job.env_kwargs))
    return _ENVS[key]


def _close_envs() -> None:
    for env in _ENVS.values():
        env.close()
    _ENVS.clear()


@functools.cache
def _versions() -> dict[str, str | None]:
    return provenance()["packages"]


def run_job(root: str, job: EpisodeJob) -> dict[str, Any]:
    """Record and store one episode (runs in a worker). Returns a row for the summary.

    Raises:
        DiskFullError: the device is full; the message names the file (or the episode folder).
    """
    try:
        return _record_and_store(root, job)
    except OSError as exc:  # atomic writes raise DiskFullError already; mkdir, the video do not
        if not is_disk_full(exc):
            raise
        raise disk_full(exc.filename or fmt.episode_dir(root, job.episode_id), exc) from None


def _record_and_store(root: str, job: EpisodeJob) -> dict[str, Any]:
    if job.policy not in _POLICIES:
        _POLICIES[job.policy] = make_policy(job.policy)
    env = _env_for(job)
    start = time.perf_counter()
    episode = record_episode(env, _POLICIES[job.policy], job)
    row = {
        "task_id": job.task_id,
        "episode_id": job.episode_id,
        "success": episode["success"],
        "frames": len(episode["frames"]),
        "bytes": 0,
        "segments": 0,
    }
    meta = _episode_meta(env, job, episode)
    # Segments first: the source's meta, written last, marks the job complete (resume).
    segment_ids = _store_segments(root, job, episode, meta) if job.segments else []
    row["segments"] = len(segment_ids)
    row["segment_bytes"] = sum(_folder_bytes(root, i) for i in segment_ids)
    if episode["success"] or job.keep_failed:
        fmt.write_episode(root, meta, episode["frames"], episode["steps"])
        row["bytes"] = _folder_bytes(root, job.episode_id)
        row["kept"] = True
    else:
        record = {
            "episode_id": job.episode_id,
            "task_id": job.task_id,
            "seed": job.seed,
            "reason": "expert failed",
            "steps": len(episode["steps"]["actions"]),
        }
        if job.segments:
            record["segments"] = segment_ids  # the subtasks it completed, kept as episodes
        fmt.write_dropped(root, record)
        row["kept"] = False
    row["seconds"] = time.perf_counter() - start
    return row


def _folder_bytes(root: str | Path, episode_id: str) -> int:
    return sum(p.stat().st_size for p in fmt.episode_dir(root, episode_id).iterdir())


def _episode_meta(env: Any, job: EpisodeJob, episode: dict[str, Any]) -> fmt.EpisodeMeta:
    inner = env.unwrapped
    return fmt.EpisodeMeta(
        episode_id=job.episode_id,
        task_id=job.task_id,
        num_frames=0,
        image_size=0,
        fps=job.fps,
        has_actions=True,
        source=job.policy,
        codec=job.codec,
        video_sha256="",
        seed=job.seed,
        success=episode["success"],
        # The make_env arguments that reproduce the episode, defaults resolved.
        env_spec={
            **dict(job.env_kwargs),
            "task_id": job.task_id,
            "camera": inner.camera,
            "max_episode_steps": env._max_episode_steps,
        },
        versions=_versions(),
        action_low=env.action_space.low.astype(float).tolist(),
        action_high=env.action_space.high.astype(float).tolist(),
        subtasks=episode["subtasks"],
        action_noise=job.action_noise or None,
        start=job.start if job.start != "home" else None,
    )


def segment_windows(
    subtasks: Sequence[dict[str, Any]], num_steps: int, steps_after_success: int
) -> list[tuple[int, int, int]]:
    """(subtask index, first frame, last frame) of every completed subtask of a labelled
    episode of ``num_steps`` steps: from the frame it began to ``steps_after_success``
    frames past the one its detector fired on (or the episode's last frame)."""
    windows = []
    for k, entry in enumerate(subtasks):
        if entry["success_step"] is None:
            continue
        end = min(entry["success_step"] + steps_after_success, num_steps)
        windows.append((k, int(entry["start"]), int(end)))
    return windows


def _store_segments(
    root: str, job: EpisodeJob, episode: dict[str, Any], source: fmt.EpisodeMeta
) -> list[str]:
    """Write every completed subtask of ``episode`` as an episode of its own; return the ids."""
    steps, frames = episode["steps"], episode["frames"]
    ids = []
    for k, first, last in segment_windows(
        episode["subtasks"], len(steps["actions"]), job.steps_after_success
    ):
        entry = episode["subtasks"][k]
        success = np.arange(first, last + 1) >= entry["success_step"]  # (F,) this subtask's
        window = {
            "actions": steps["actions"][first:last],
            "state": steps["state"][first : last + 1],
            "reward": success[1:].astype(np.float32),
            "success": success,
        }
        if "executed_actions" in steps:
            window["executed_actions"] = steps["executed_actions"][first:last]
        segment_id = job.segment_id(k, entry["subtask"])
        meta = fmt.EpisodeMeta(
            **{
                **source.to_json(),
                "episode_id": segment_id,
                "task_id": pg.task_id(entry["subtask"]),
                "success": True,
                "subtasks": None,
                "segment": {
                    "source_episode": job.episode_id,
                    "source_task": job.task_id,
                    "subtask_index": k,
                    "start": first,
                    "end": last,
                    "success_step": entry["success_step"],
                },
            }
        )
        fmt.write_episode(root, meta, frames[first : last + 1], window)
        ids.append(segment_id)
    return ids


def _check_camera(out: Path, job: EpisodeJob) -> None:
    """Refuse to resume over an episode recorded with another camera: its id names the task,
    seed and index, not the camera, so it would be skipped as complete and the dataset would mix
    cameras (a policy acts on one)."""
    if not (fmt.episode_dir(out, job.episode_id) / fmt.META_FILE).exists():
        return  # recorded as dropped: no frames
    recorded = (fmt.read_meta(out, job.episode_id).env_spec or {}).get("camera")
    wanted = dict(job.env_kwargs).get("camera") or get_spec(job.task_id).default_camera
    if recorded is not None and recorded != wanted:
        raise fmt.DatasetError(
            f"{out}: episode {job.episode_id} was recorded with camera={recorded!r}; this "
            f"collection asks for camera={wanted!r} and would skip it as complete. Collect into "
            f"another folder (out=...), or ask for camera={recorded}."
        )


def _remove_leftovers(out: Path, jobs: Sequence[EpisodeJob]) -> None:
    """Delete the temporary files an interrupted collection left (a kill mid-write), in the
    episode folders and drop records of ``jobs`` and beside the manifest.

    Only what this collection owns: it holds the collection lock, so no other collection
    writes these episodes, and the manifest's temporaries are removed under the manifest's own
    lock. Episode folders of these jobs without ``meta.json`` are rewritten when recorded.
    """
    found: list[Path] = []
    for job in jobs:
        found += fmt.episode_dir(out, job.episode_id).glob(fmt.TEMP_PATTERN)
        found += (out / fmt.EPISODES_DIR).glob(f"{job.episode_id}__seg*/{fmt.TEMP_PATTERN}")
        found += (out / fmt.DROPPED_DIR).glob(f".{job.episode_id}.json.*.tmp")
    with folder_lock(out, ".manifest.lock"):
        stale = [*found, *out.glob(f".{fmt.MANIFEST_FILE}.*.tmp")]
        for path in stale:
            path.unlink(missing_ok=True)
    if stale:
        log.info(
            "collect: removed %d temporary file(s) left by an interrupted run in %s",
            len(stale),
            out,
        )


def collect(
    out: str | Path,
    tasks: Sequence[str],
    *,
    episodes_per_task: int,
    image_size: int = 64,
    camera: str | None = None,
    max_episode_steps: int | None = None,
    seed: int = 0,
    workers: int = 1,
    keep_failed: bool = False,
    steps_after_success: int = 5,
    codec: str = "lossless",
    fps: int = 20,
    policy: str = "expert",
    start: str = "home",
    action_noise: float = 0.0,
    segments: bool = False,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Record ``episodes_per_task`` demonstrations of each task into the dataset ``out``.

    Complete episodes already in ``out`` (kept or dropped) are skipped, so an interrupted run
    resumes where it stopped; the temporary files it left are deleted. Worker processes end
    with this one (``kill -9`` of the collection leaves none writing). Returns a summary: per
    task kept/dropped/skipped, frames, bytes, segments, and wall time.

    Args:
        start: ``"home"``, or ``"random"`` (single playground subtasks only): see the module
            docstring.
        action_noise: std of the Gaussian noise added to the executed actions (DART); 0: none.
        segments: also write every subtask a ``playground/chain`` or ``playground/play``
            episode completed as an episode of that subtask. With it, an episode recorded
            earlier without its segments is recorded again (same seed, same episode).

    Raises:
        UserError: a bad ``start``, ``action_noise`` or ``segments`` (naming the key).
        DatasetError: ``out`` holds a dataset with other settings, or another collection is
            writing to it.
    """
    out = Path(out)
    check_switches(tasks, start=start, action_noise=action_noise, segments=segments)
    fmt.init_dataset(out, image_size=image_size, fps=fps, codec=codec)
    env_kwargs = (
        ("image_size", image_size),
        ("camera", camera),
        ("max_episode_steps", max_episode_steps),
    )
    jobs = [
        EpisodeJob(
            t,
            i,
            seed,
            env_kwargs,
            policy,
            keep_failed,
            steps_after_success,
            codec,
            fps,
            start=start,
            action_noise=float(action_noise),
            segments=segments,
        )
        for t in tasks
        for i in range(episodes_per_task)
    ]
    per_task = {
        t: {"kept": 0, "dropped": 0, "skipped": 0, "frames": 0, "bytes": 0, "segments": 0}
        for t in tasks
    }
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        _hold_collection_lock(stack, out)
        _remove_leftovers(out, jobs)
        todo = _to_record(out, jobs, per_task)
        log.info(
            "collect: %d episode(s) to record, %d already complete, %d worker(s)",
            len(todo),
            len(jobs) - len(todo),
            workers,
        )
        account = functools.partial(_account, per_task, progress)
        try:
            _run_jobs(out, todo, workers, account)
        except DiskFullError as exc:
            raise DiskFullError(f"{exc}; {_kept(out, per_task)}{_FREE_SPACE}") from None
        except KeyboardInterrupt:
            raise Interrupted(
                f"{_kept(out, per_task)}; run the same command to record the rest"
            ) from None
        finally:
            _close_envs()
            # Whatever finished is listed, even when the run was interrupted.
            try:
                manifest = fmt.write_manifest(out)
            except DiskFullError as exc:
                raise DiskFullError(f"{exc}; {_kept(out, per_task)}{_FREE_SPACE}") from None
    return {
        "out": str(out),
        "tasks": per_task,
        "episodes_in_dataset": manifest["num_episodes"],
        "frames_in_dataset": manifest["num_frames"],
        "seconds": time.perf_counter() - start,
    }


LABELLED_TASKS = tuple(f"playground/{name}" for name in pg.LONG_TASKS)


def check_switches(
    tasks: Sequence[str], *, start: object, action_noise: object, segments: object
) -> None:
    """Refuse a bad ``start``, ``action_noise`` or ``segments`` with a UserError naming it."""
    check_start(start)
    if start != "home":
        other = [
            t
            for t in tasks
            if not (t.startswith("playground/") and t.split("/", 1)[1] in pg.SUBTASK_TASKS)
        ]
        if other:
            raise UserError(
                f"start={start!r} applies to single playground subtasks only; not to "
                f"{', '.join(other)}."
            )
    if (
        isinstance(action_noise, bool)
        or not isinstance(action_noise, (int, float))
        or not np.isfinite(action_noise)
        or action_noise < 0
    ):
        raise UserError(
            f"action_noise={action_noise!r} must be a finite number >= 0 (the std of the noise "
            "added to the executed actions; 0: none)."
        )
    if not isinstance(segments, bool):
        raise UserError(f"segments={segments!r} must be true or false.")
    if segments:
        other = [t for t in tasks if t not in LABELLED_TASKS]
        if other:
            raise UserError(
                f"segments=true cuts episodes of several subtasks ({', '.join(LABELLED_TASKS)}) "
                f"into subtask episodes; {', '.join(other)} has no subtasks."
            )


def _hold_collection_lock(stack: contextlib.ExitStack, out: Path) -> None:
    """Enter ``out``'s collection lock on ``stack``, or fail at once if another run holds it."""
    try:
        stack.enter_context(folder_lock(out, ".collect.lock", wait=False))
    except LockHeldError as exc:
        raise fmt.DatasetError(
            f"{out}: another collection is writing to this dataset ({exc.holder}); wait for "
            "it to finish."
        ) from None


def _to_record(
    out: Path, jobs: Sequence[EpisodeJob], per_task: dict[str, dict[str, int]]
) -> list[EpisodeJob]:
    """The jobs not yet complete in ``out``; the complete ones are counted as skipped."""
    todo = []
    for job in jobs:
        if fmt.is_complete(out, job.episode_id):
            # Also before recording a source again for its segments: that would replace it.
            _check_camera(out, job)
            if _segments_complete(out, job):
                per_task[job.task_id]["skipped"] += 1
                continue
        todo.append(job)
    return todo


def _segments_complete(out: Path, job: EpisodeJob) -> bool:
    """Whether every segment a complete episode calls for is there (True without segments).

    A source recorded before segments were asked for (no plan in its meta, or a dropped
    record without its segment list) is not: it is recorded again, and its segments with it.
    """
    if not job.segments:
        return True
    if (fmt.episode_dir(out, job.episode_id) / fmt.META_FILE).exists():
        meta = fmt.read_meta(out, job.episode_id)
        if meta.subtasks is None:
            return False
        windows = segment_windows(meta.subtasks, meta.num_frames - 1, job.steps_after_success)
        ids = [job.segment_id(k, meta.subtasks[k]["subtask"]) for k, _, _ in windows]
    else:
        record = fmt.read_json(out / fmt.DROPPED_DIR / f"{job.episode_id}.json")
        if "segments" not in record:
            return False
        ids = record["segments"]
    return all((fmt.episode_dir(out, i) / fmt.META_FILE).exists() for i in ids)


def _account(
    per_task: dict[str, dict[str, int]],
    progress: Callable[[dict[str, Any]], None] | None,
    row: dict[str, Any],
) -> None:
    """Count one recorded episode's ``row`` into its task's stats, then report it."""
    stats = per_task[row["task_id"]]
    stats["kept" if row["kept"] else "dropped"] += 1
    if row["kept"]:
        stats["frames"] += row["frames"]
        stats["bytes"] += row["bytes"]
    stats["segments"] += row.get("segments", 0)
    stats["bytes"] += row.get("segment_bytes", 0)
    if progress is not None:
        progress(row)


def _run_jobs(
    out: Path,
    todo: Sequence[EpisodeJob],
    workers: int,
    account: Callable[[dict[str, Any]], None],
) -> None:
    """Record ``todo`` here (one worker) or in spawned worker processes; ``account`` each row."""
    if workers == 1:
        for job in todo:
            account(run_job(str(out), job))
        return
    context = multiprocessing.get_context("spawn")
    # Workers end with this process: a killed collection leaves none writing.
    with (
        ProcessPoolExecutor(
            workers,
            mp_context=context,
            initializer=die_with_parent,
            initargs=(os.getpid(),),
        ) as pool,
        stop_on_interrupt(pool),
    ):
        with interrupts_held():  # a Ctrl-C waits until the workers ignore it
            futures = [pool.submit(run_job, str(out), job) for job in todo]
        for future in as_completed(futures):
            account(future.result())


def _kept(out: Path, per_task: dict[str, dict[str, int]]) -> str:
    """What an interrupted collection leaves: its finished episodes, which a rerun skips."""
    now = sum(row["kept"] + row["dropped"] for row in per_task.values())
    earlier = sum(row["skipped"] for row in per_task.values())
    return (
        f"the finished episodes are kept in {out} ({now} recorded by this run, {earlier} earlier)"
    )


_FREE_SPACE = "; free some space and run the same command to record the rest"


def format_summary(summary: dict[str, Any]) -> str:
    """The collection summary as a Markdown table."""
    lines = [
        "| task | kept | dropped (expert failed) | skipped (already there) | frames | MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    total = {"kept": 0, "dropped": 0, "skipped": 0, "frames": 0, "bytes": 0}
    for task_id, row in summary["tasks"].items():
        lines.append(
            f"| {task_id} | {row['kept']} | {row['dropped']} | {row['skipped']} | "
            f"{row['frames']} | {row['bytes'] / 1e6:.2f} |"
        )
        for k in total:
            total[k] += row[k]
    lines.append(
        f"| **total** | {total['kept']} | {total['dropped']} | {total['skipped']} | "
        f"{total['frames']} | {total['bytes'] / 1e6:.2f} |"
    )
    segments = sum(row.get("segments", 0) for row in summary["tasks"].values())
    if segments:
        lines.append(
            f"\n{segments} completed subtask(s) also written as subtask episodes (segments; "
            "their bytes are counted above)."
        )
    fps = total["frames"] / summary["seconds"] if summary["seconds"] > 0 else 0.0
    lines.append(
        f"\n{summary['episodes_in_dataset']} episodes ({summary['frames_in_dataset']} "
        f"frames) in {summary['out']}; this run: {summary['seconds']:.1f} s wall, "
        f"{fps:.0f} stored frames/s."
    )
    return "\n".join(lines) + "\n"
