"""Closed-loop rollouts of any policy on registered tasks, in one or several processes, or
batched: env slots in worker processes and one policy acting for all of them
(:mod:`vw_robot.eval.batched`)."""

from __future__ import annotations

import multiprocessing
import os
import traceback
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vw_robot.envs import get_spec, make_env
from vw_robot.errors import UserError
from vw_robot.eval.batched import (
    Reply,
    Unit,
    error_detail,
    make_batch_policy,
    run_batched,
    stack_frames,
)
from vw_robot.eval.seeding import episode_seed
from vw_robot.policies import make_policy
from vw_robot.policies.base import BatchPolicy
from vw_robot.policies.videoworld import PolicyMismatchError
from vw_robot.processes import die_with_parent_then, interrupts_held, stop_on_interrupt


@dataclass
class EpisodeResult:
    """Outcome of one episode. ``steps`` counts env steps taken (to first success when the
    rollout stops on success). ``error`` holds the reason when the episode raised."""

    task_id: str
    index: int
    seed: int
    success: bool
    steps: int
    episode_return: float
    error: str | None = None
    frames: np.ndarray | None = field(default=None, repr=False)  # (T, H, W, 3) uint8
    # A multi-subtask episode's subtasks completed at its end (kitchen/d4rl-4: 0-4); else None.
    completed: int | None = None

    def to_json(self) -> dict[str, Any]:
        row = {
            "task_id": self.task_id,
            "index": self.index,
            "seed": self.seed,
            "success": self.success,
            "steps": self.steps,
            "return": self.episode_return,
            "error": self.error,
        }
        return row if self.completed is None else {**row, "completed": self.completed}


def follows_subtasks(policy: Any, task_id: str) -> bool:
    """Whether ``policy`` acts on ``task_id``'s episode one subtask at a time: a multi-subtask
    episode (``TaskSpec.subtasks``, e.g. kitchen/d4rl-4) given to a learned policy that was not
    trained on it (trained on its subtasks: :func:`check_policy_fits` checks that). Scripted
    policies (expert, random) get the episode's own task id."""
    known = getattr(policy, "task_ids", None)
    return bool(get_spec(task_id).subtasks) and known is not None and task_id not in known


class _Told:
    """The task id a policy is told during one episode: the episode's, or, when it follows the
    subtasks (:func:`follows_subtasks`), each subtask's in turn as the env names it
    (``info["subtask_task_id"]``), the policy reset at every switch, as CALVIN resets its model
    per subtask while the scene carries on."""

    def __init__(self, policy: Any, task_id: str) -> None:
        self.per_subtask = follows_subtasks(policy, task_id)
        self.scored = bool(get_spec(task_id).subtasks)
        self.current, self.switches = task_id, 0

    def first(self, info: dict[str, Any]) -> str:
        """The task id the policy is reset with at the episode's start."""
        if self.per_subtask:
            self.current = info.get("subtask_task_id", self.current)
        return self.current

    def switch(self, info: dict[str, Any]) -> str | None:
        """The next subtask's task id when the env moved on to it, else None."""
        now = info.get("subtask_task_id") if self.per_subtask else None
        if now is None or now == self.current:
            return None
        self.current, self.switches = now, self.switches + 1
        return now

    def completed(self, info: dict[str, Any] | None) -> int | None:
        """The subtasks completed (a multi-subtask episode's score), else None."""
        return int(info.get("completed", 0)) if self.scored and info is not None else None


def run_episode(
    env: Any,
    policy: Any,
    task_id: str,
    seed: int,
    *,
    index: int = 0,
    stop_on_success: bool = True,
    record: bool = False,
) -> EpisodeResult:
    """Run one episode; an exception (simulator instability, policy bug) fails the episode
    with its reason instead of ending the run.

    Success means ``info["is_success"]`` was true at any step. A multi-subtask episode also
    records the subtasks completed; a policy trained on its subtasks is told each in turn
    (:class:`_Told`), reset with seed ``seed + k`` at the k-th switch.
    """
    frames: list[np.ndarray] = []
    steps, episode_return, success = 0, 0.0, False
    told, info = _Told(policy, task_id), None
    try:
        obs, info = env.reset(seed=seed)
        policy.reset(task_id=told.first(info), action_space=env.action_space, seed=seed)
        success = bool(info["is_success"])
        if record:
            frames.append(obs["pixels"])
        while not (success and stop_on_success):
            action = policy.select_action(obs, info)
            obs, reward, terminated, truncated, info = env.step(action)
            steps += 1
            episode_return += float(reward)
            success = success or bool(info["is_success"])
            if record:
                frames.append(obs["pixels"])
            if terminated or truncated:
                break
            if (subtask := told.switch(info)) is not None:
                policy.reset(
                    task_id=subtask, action_space=env.action_space, seed=seed + told.switches
                )
    except Exception as exc:  # noqa: BLE001 - any failure of one episode is recorded, not fatal
        detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return EpisodeResult(
            task_id,
            index,
            seed,
            False,
            steps,
            episode_return,
            detail,
            np.stack(frames) if frames else None,
            told.completed(info),
        )
    return EpisodeResult(
        task_id,
        index,
        seed,
        success,
        steps,
        episode_return,
        None,
        np.stack(frames) if frames else None,
        told.completed(info),
    )


@dataclass(frozen=True)
class _Job:
    task_id: str
    indices: tuple[int, ...]
    policy: str
    base_seed: int
    env_kwargs: dict[str, Any]
    record_indices: frozenset[int]
    stop_on_success: bool


def _run_job(job: _Job, policy_factory: Callable[[str], Any]) -> list[EpisodeResult]:
    env = make_env(job.task_id, **job.env_kwargs)
    try:
        policy = policy_factory(job.policy)
        return [
            run_episode(
                env,
                policy,
                job.task_id,
                episode_seed(job.base_seed, job.task_id, i),
                index=i,
                stop_on_success=job.stop_on_success,
                record=i in job.record_indices,
            )
            for i in job.indices
        ]
    finally:
        env.close()


def _limit_threads(threads: int) -> None:
    """Share the cores between worker processes (learned policies run torch in each)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def _split(
    tasks: Sequence[str], episodes: int, workers: int, skip: Collection[tuple[str, int]] = ()
) -> list[tuple[str, tuple[int, ...]]]:
    """Worker jobs: (task, episode indices), the skipped ones left out."""
    # Enough chunks to keep every worker busy, never more than one per episode.
    todo = [t for t in tasks if any((t, i) not in skip for i in range(episodes))]
    chunks_per_task = max(1, min(episodes, -(-workers // max(1, len(todo)))))
    units = []
    for task_id in tasks:
        for c in range(chunks_per_task):
            indices = tuple(
                i for i in range(c, episodes, chunks_per_task) if (task_id, i) not in skip
            )
            if indices:
                units.append((task_id, indices))
    return units


def run_jobs(
    run: Callable[[Any, Callable[[str], Any]], Any],
    jobs: Sequence[Any],
    policy_factory: Callable[[str], Any],
    workers: int,
    collect: Callable[[Any], None],
) -> None:
    """``collect(run(job, policy_factory))`` for every job: in this process with one worker,
    else in ``workers`` spawned processes that share the cores (results arrive as they finish).
    ``run``, the jobs and ``policy_factory`` must be picklable for more than one worker."""
    if workers == 1:
        for job in jobs:
            collect(run(job, policy_factory))
        return
    context = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // workers)
    # Workers end with this process (a killed evaluation leaves none running).
    with (
        ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=die_with_parent_then,
            initargs=(os.getpid(), _limit_threads, threads),
        ) as pool,
        stop_on_interrupt(pool),
    ):
        with interrupts_held():  # a Ctrl-C waits until the workers ignore it
            futures = [pool.submit(run, job, policy_factory) for job in jobs]
        for future in as_completed(futures):
            collect(future.result())


def check_policy_fits(
    tasks: Sequence[str],
    policy: str,
    env_kwargs: dict[str, Any],
    policy_factory: Callable[[str], Any],
) -> dict[str, Any]:
    """Refuse, before any episode runs, a policy that cannot drive these tasks; return the
    ``make_env`` arguments its episodes run with.

    A learned policy (one with ``check_task``: a checkpoint's) checks every task id against
    the tasks it was trained for. Its frames come from the camera it was trained on: with no
    ``camera`` in ``env_kwargs`` the returned arguments name it, and another camera is refused
    (the frames would look different and nothing else would notice). Then, on the first task
    of each suite, one env is built and the policy resets and acts once, which checks the
    action size and the observation's image (key, size, layout). A mismatch raises
    :class:`PolicyMismatchError` naming both sides; any other failure here is left to the
    episodes, which record it. Policies without ``check_task`` (expert, random, your own) are
    not checked and get ``env_kwargs`` as given.
    """
    env_kwargs = dict(env_kwargs)
    built = policy_factory(policy)
    if not hasattr(built, "check_task"):
        return env_kwargs
    # A multi-subtask episode is acted on one subtask at a time: the policy must know those.
    told = {t: get_spec(t).subtasks if follows_subtasks(built, t) else (t,) for t in tasks}
    for task_id in tasks:
        for subtask in told[task_id]:
            built.check_task(subtask)
    trained_on = getattr(built, "camera", None)
    if trained_on is not None:
        asked = env_kwargs.get("camera")
        if asked is None:
            env_kwargs["camera"] = trained_on
        elif asked != trained_on:
            raise PolicyMismatchError(
                f"{policy}: trained on frames of camera {trained_on!r}, asked to act on "
                f"camera={asked!r}; leave camera unset (null) to use the policy's."
            )
    first_of_suite: dict[str, str] = {}
    for task_id in tasks:
        first_of_suite.setdefault(task_id.split("/")[0], task_id)
    for task_id in first_of_suite.values():
        env = make_env(task_id, **env_kwargs)
        try:
            obs, info = env.reset(seed=0)
            built.reset(task_id=told[task_id][0], action_space=env.action_space, seed=0)
            built.select_action(obs, info)
        except PolicyMismatchError:
            raise
        except Exception:  # noqa: BLE001, S110 - recorded by the episodes that hit it
            pass
        finally:
            env.close()
    return env_kwargs


# Long for its docstring (two run modes, every argument); the code is ~40 lines of one sequence.
def evaluate(
    tasks: Sequence[str],
    *,
    policy: str,
    episodes_per_task: int,
    base_seed: int = 0,
    workers: int = 1,
    env_kwargs: dict[str, Any] | None = None,
    videos_per_task: int = 0,
    stop_on_success: bool = True,
    policy_factory: Callable[[str], Any] = make_policy,
    progress: Callable[[int], None] | None = None,
    batch: int | None = None,
    skip: Collection[tuple[str, int]] = (),
    on_episode: Callable[[EpisodeResult], None] | None = None,
) -> dict[str, list[EpisodeResult]]:
    """Evaluate a policy on tasks; episodes' seeds depend only on (base_seed, task, index).

    Two ways to run: per process (``batch=None``: each of ``workers`` processes builds its
    own policy and runs whole episodes one after another), or batched (``batch=N``: N envs
    step at once in ``workers`` processes while one policy, in this process and on its own
    device, acts for all N with one batched forward per step; a finished episode's slot
    takes the next one). Both give the same episodes: the expert and random policies
    exactly, a learned policy up to float rounding in its batched forward (greedy decoding
    makes the same choices unless two choices are within rounding of each other).

    Args:
        tasks: task ids.
        policy: name given to ``policy_factory`` (built once per worker job, or once when
            batched).
        episodes_per_task: episodes per task.
        base_seed: base of the per-episode seeds.
        workers: processes; each builds its own envs (``spawn``: GL contexts do not survive
            ``fork``). 1 runs in this process. Batched: the processes the env slots are
            spread over (1: the envs step in this process).
        env_kwargs: extra ``make_env`` arguments (image_size, camera, max_episode_steps).
        videos_per_task: the first this-many episodes of each task keep their frames.
        stop_on_success: end an episode at its first success.
        policy_factory: picklable callable name -> policy (module-level for workers > 1;
            batched, it is only called in this process).
        progress: called with the number of episodes each finished job (batched: each
            episode) completed.
        batch: env slots acting together (batched evaluation); None runs per process.
        skip: (task id, index) of episodes not to run (recorded by an earlier run); every
            other episode of every task runs in one pass, so the workers or slots move on to
            the next task while a task's last episodes finish.
        on_episode: called in this process with each episode as soon as it (batched) or its
            worker job (per process) finishes, e.g. to record it.

    Returns:
        task id -> the episodes run (not the skipped ones), ordered by index.

    Raises:
        PolicyMismatchError: before any episode (:func:`check_policy_fits`), the policy was
            not trained for a task, its action size or image.
    """
    if episodes_per_task < 1:
        raise UserError(f"episodes_per_task={episodes_per_task} must be >= 1.")
    if workers < 1:
        raise UserError(f"workers={workers} must be >= 1.")
    check_batch(batch)
    env_kwargs = dict(env_kwargs or {})
    skip = frozenset(skip)
    results: dict[str, list[EpisodeResult]] = {t: [] for t in tasks}

    def collect(episodes: list[EpisodeResult]) -> None:
        for ep in episodes:
            results[ep.task_id].append(ep)
            if on_episode is not None:
                on_episode(ep)
        if progress is not None:
            progress(len(episodes))

    if batch is not None:
        _evaluate_batched(
            tasks,
            policy=policy,
            episodes_per_task=episodes_per_task,
            base_seed=base_seed,
            workers=workers,
            env_kwargs=env_kwargs,
            videos_per_task=videos_per_task,
            stop_on_success=stop_on_success,
            policy_factory=policy_factory,
            collect=collect,
            batch=batch,
            skip=skip,
        )
    else:
        env_kwargs = check_policy_fits(tasks, policy, env_kwargs, policy_factory)
        record = frozenset(range(min(videos_per_task, episodes_per_task)))
        jobs = [
            _Job(task_id, indices, policy, base_seed, env_kwargs, record, stop_on_success)
            for task_id, indices in _split(tasks, episodes_per_task, workers, skip)
        ]
        run_jobs(_run_job, jobs, policy_factory, workers, collect)
    for episodes in results.values():
        episodes.sort(key=lambda ep: ep.index)
    return results


def check_batch(batch: int | None) -> None:
    """Refuse a batch size that is not None or a positive int."""
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise UserError(f"batch={batch!r} must be a positive int (env slots) or None.")


class _EpisodeRun:
    """:func:`run_episode`'s steps, fed by batched evaluation: the same statements in the same
    order, so an episode ends the same way (and records the same error) either way."""

    def __init__(self, unit: Unit, stop_on_success: bool, built: Any) -> None:
        self.unit = unit
        self.stop_on_success = stop_on_success
        self.told = _Told(built, unit.task_id)  # built: the policy the batch acts for
        self._action_space: Any = None
        self.frames: list[np.ndarray] = []
        self.steps, self.episode_return, self.success = 0, 0.0, False
        self.error: str | None = None
        self.obs: dict[str, np.ndarray] | None = None
        self.info: dict[str, Any] | None = None
        self._started = False

    def receive(self, reply: Reply, policy: BatchPolicy, row: int) -> bool:
        kind, payload = reply
        if kind == "error":
            self.fail(payload)
            return True
        try:
            if not self._started:
                self._started = True
                self.obs, self.info, self._action_space = payload
                policy.reset(
                    row,
                    task_id=self.told.first(self.info),
                    action_space=self._action_space,
                    seed=self.unit.seed,
                )
                self.success = bool(self.info["is_success"])
                if self.unit.record:
                    self.frames.append(self.obs["pixels"])
                return self.success and self.stop_on_success
            self.obs, reward, terminated, truncated, self.info = payload
            self.steps += 1
            self.episode_return += float(reward)
            self.success = self.success or bool(self.info["is_success"])
            if self.unit.record:
                self.frames.append(self.obs["pixels"])
            if bool(terminated or truncated) or (self.success and self.stop_on_success):
                return True
            if (subtask := self.told.switch(self.info)) is not None:
                seed = self.unit.seed + self.told.switches
                policy.reset(row, task_id=subtask, action_space=self._action_space, seed=seed)
            return False
        except Exception as exc:  # noqa: BLE001 - any failure of one episode is recorded
            self.fail(error_detail(exc))
            return True

    def fail(self, detail: str) -> None:
        self.error = detail

    def result(self) -> EpisodeResult:
        u = self.unit
        success = self.success and self.error is None
        frames = stack_frames(self.frames)
        return EpisodeResult(
            u.task_id,
            u.index,
            u.seed,
            success,
            self.steps,
            self.episode_return,
            self.error,
            frames,
            self.told.completed(self.info),
        )


def _evaluate_batched(
    tasks: Sequence[str],
    *,
    policy: str,
    episodes_per_task: int,
    base_seed: int,
    workers: int,
    env_kwargs: dict[str, Any],
    videos_per_task: int,
    stop_on_success: bool,
    policy_factory: Callable[[str], Any],
    collect: Callable[[list[EpisodeResult]], None],
    batch: int,
    skip: frozenset[tuple[str, int]],
) -> None:
    """:func:`evaluate` with ``batch`` env slots and one policy in this process; each
    episode goes to ``collect`` as it ends."""
    built = policy_factory(policy)
    env_kwargs = check_policy_fits(tasks, policy, env_kwargs, lambda _: built)
    units = [
        Unit(task_id, i, episode_seed(base_seed, task_id, i), i < videos_per_task)
        for task_id in tasks
        for i in range(episodes_per_task)
        if (task_id, i) not in skip
    ]

    def on_done(episode: EpisodeResult) -> None:
        collect([episode])

    run_batched(
        units,
        make_run=lambda unit: _EpisodeRun(unit, stop_on_success, built),
        make_policy=lambda size: make_batch_policy(policy, size, policy_factory, built),
        slots=batch,
        workers=workers,
        make_env=make_env,
        env_kwargs=env_kwargs,
        on_done=on_done,
    )
