"""Collect demonstration episodes from scripted experts into a dataset folder.

Each episode (task t, index i) is reset with ``episode_seed(seed, t, i)`` and stored under an id
that names the task, the base seed and the index, so a rerun with the same settings skips what
is complete (resume), and a run with another base seed adds new episodes beside the old ones.
Workers write only their own episode folders; the parent alone rebuilds the manifest.
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
from vw_robot.errors import DiskFullError, Interrupted
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

    @property
    def seed(self) -> int:
        return episode_seed(self.base_seed, self.task_id, self.index)

    @property
    def episode_id(self) -> str:
        return f"{self.task_id.replace('/', '__')}__s{self.base_seed}__{self.index:05d}"


def record_episode(env: Any, policy: Any, job: EpisodeJob) -> dict[str, Any]:
    """Roll out ``policy`` once; return frames (T+1, H, W, 3) and per-step arrays.

    The episode ends ``job.steps_after_success`` steps after the first success (so the video
    shows the solved state), or at the time limit.
    """
    obs, info = env.reset(seed=job.seed)
    policy.reset(task_id=job.task_id, action_space=env.action_space, seed=job.seed)
    frames, states, successes = [obs["pixels"]], [obs["state"]], [info["is_success"]]
    actions, rewards = [], []
    first_success = 0 if info["is_success"] else None
    while first_success is None or len(actions) < first_success + job.steps_after_success:
        action = np.asarray(policy.select_action(obs, info), dtype=np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        # Our envs clip to their Box: record the action that acted, which stays in bounds.
        actions.append(np.clip(action, env.action_space.low, env.action_space.high))
        rewards.append(reward)
        frames.append(obs["pixels"])
        states.append(obs["state"])
        successes.append(info["is_success"])
        if info["is_success"] and first_success is None:
            first_success = len(actions)
        if terminated or truncated:
            break
    return {
        "frames": np.stack(frames),  # (T+1, H, W, 3) uint8
        "steps": {
            "actions": np.stack(actions)
            if actions
            else np.zeros((0, *env.action_space.shape), np.float32),
            "state": np.stack(states),
            "reward": np.asarray(rewards, np.float32),
            "success": np.asarray(successes, bool),
        },
        "success": first_success is not None,
    }


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
    }
    if episode["success"] or job.keep_failed:
        inner = env.unwrapped
        meta = fmt.EpisodeMeta(
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
        )
        fmt.write_episode(root, meta, episode["frames"], episode["steps"])
        folder = fmt.episode_dir(root, job.episode_id)
        row["bytes"] = sum(p.stat().st_size for p in folder.iterdir())
        row["kept"] = True
    else:
        fmt.write_dropped(
            root,
            {
                "episode_id": job.episode_id,
                "task_id": job.task_id,
                "seed": job.seed,
                "reason": "expert failed",
                "steps": len(episode["steps"]["actions"]),
            },
        )
        row["kept"] = False
    row["seconds"] = time.perf_counter() - start
    return row


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
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Record ``episodes_per_task`` demonstrations of each task into the dataset ``out``.

    Complete episodes already in ``out`` (kept or dropped) are skipped, so an interrupted run
    resumes where it stopped; the temporary files it left are deleted. Worker processes end
    with this one (``kill -9`` of the collection leaves none writing). Returns a summary: per
    task kept/dropped/skipped, frames, bytes, and wall time.

    Raises:
        DatasetError: ``out`` holds a dataset with other settings, or another collection is
            writing to it.
    """
    out = Path(out)
    fmt.init_dataset(out, image_size=image_size, fps=fps, codec=codec)
    env_kwargs = (
        ("image_size", image_size),
        ("camera", camera),
        ("max_episode_steps", max_episode_steps),
    )
    jobs = [
        EpisodeJob(t, i, seed, env_kwargs, policy, keep_failed, steps_after_success, codec, fps)
        for t in tasks
        for i in range(episodes_per_task)
    ]
    per_task = {t: {"kept": 0, "dropped": 0, "skipped": 0, "frames": 0, "bytes": 0} for t in tasks}
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
            _check_camera(out, job)
            per_task[job.task_id]["skipped"] += 1
        else:
            todo.append(job)
    return todo


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
    fps = total["frames"] / summary["seconds"] if summary["seconds"] > 0 else 0.0
    lines.append(
        f"\n{summary['episodes_in_dataset']} episodes ({summary['frames_in_dataset']} "
        f"frames) in {summary['out']}; this run: {summary['seconds']:.1f} s wall, "
        f"{fps:.0f} stored frames/s."
    )
    return "\n".join(lines) + "\n"
