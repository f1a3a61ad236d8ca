"""Chain evaluation on the playground, CALVIN's long-horizon protocol.

Each chain is ``chain_length`` subtasks sampled from its seed (see
:mod:`vw_robot.envs.playground_suite`); the policy is reset at every subtask with that
subtask's task id (``playground/open-drawer``), as CALVIN resets its model per subtask, while
the scene carries on. A chain stops at its first failure. Reported: success after 1..N
subtasks (the fraction of chains that completed at least k), the average completed length,
and per subtask how often it was attempted and solved. Chain i's seed is
``episode_seed(base_seed, "playground/chain", i)``: a function of (base seed, index) only, so
the same chains are evaluated whatever the worker count or batch size (``batch=N``: N chain envs
step in worker processes while one policy acts for all of them, :mod:`vw_robot.eval.batched`;
a subtask switch resets the policy's row for that chain only).

A second report evaluates the 12 subtasks VideoWorld reports on CALVIN one at a time, through
:func:`vw_robot.eval.rollout.evaluate`.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vw_robot.envs import playground_tasks as pt
from vw_robot.envs.playground_suite import make_chain_env, task_id
from vw_robot.errors import UserError
from vw_robot.eval.batched import (
    Reply,
    Unit,
    error_detail,
    make_batch_policy,
    run_batched,
    stack_frames,
)
from vw_robot.eval.metrics import wilson_interval
from vw_robot.eval.report import with_measured_at, write_video
from vw_robot.eval.rollout import check_batch, check_policy_fits, run_jobs
from vw_robot.eval.seeding import episode_seed
from vw_robot.eval.tables import chains_markdown
from vw_robot.io import atomic_write_text
from vw_robot.policies import make_policy
from vw_robot.policies.base import BatchPolicy
from vw_robot.provenance import provenance

log = logging.getLogger(__name__)

CHAIN_TASK = "playground/chain"


@dataclass
class ChainResult:
    """Outcome of one chain: its subtasks and how many were completed in order."""

    index: int
    seed: int
    chain: tuple[str, ...]
    completed: int
    steps: int
    invalid_starts: int = 0  # subtasks that began where their precondition did not hold
    error: str | None = None
    frames: np.ndarray | None = field(default=None, repr=False)  # (T, H, W, 3) uint8

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "seed": self.seed,
            "chain": list(self.chain),
            "completed": self.completed,
            "steps": self.steps,
            "invalid_starts": self.invalid_starts,
            "error": self.error,
        }


def chain_seed(base_seed: int, index: int) -> int:
    """Seed of chain ``index``: depends on the base seed and the index only."""
    return episode_seed(base_seed, CHAIN_TASK, index)


def run_chain(
    env: Any, policy: Any, seed: int, *, index: int = 0, record: bool = False
) -> ChainResult:
    """Roll out one chain; ``policy.reset(task_id=...)`` starts each subtask afresh.

    An exception (simulator divergence, policy bug) ends the chain with its reason recorded;
    the subtasks completed before it count.
    """

    frames: list[np.ndarray] = []
    steps, chain, completed, invalid = 0, (), 0, 0
    try:
        obs, info = env.reset(seed=seed)
        chain = tuple(info["chain"])
        current = None
        if record:
            frames.append(obs["pixels"])
        while True:
            if info["subtask_index"] != current:
                current = info["subtask_index"]
                invalid += not info["subtask_valid"]
                # Seeded per subtask: a stochastic policy does not replay one sequence 5 times.
                policy.reset(
                    task_id=task_id(info["subtask"]),
                    action_space=env.action_space,
                    seed=seed + current,
                )
            obs, _, terminated, truncated, info = env.step(policy.select_action(obs, info))
            steps += 1
            completed = int(info["completed"])
            if record:
                frames.append(obs["pixels"])
            if info["is_success"] or terminated or truncated:
                break
    except Exception as exc:  # noqa: BLE001 - one chain's failure is recorded, not fatal
        detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return ChainResult(index, seed, chain, completed, steps, invalid, detail, _stack(frames))
    return ChainResult(index, seed, chain, completed, steps, invalid, None, _stack(frames))


def _stack(frames: list[np.ndarray]) -> np.ndarray | None:
    return np.stack(frames) if frames else None


@dataclass(frozen=True)
class _ChainJob:
    indices: tuple[int, ...]
    policy: str
    base_seed: int
    env_kwargs: dict[str, Any]
    record_indices: frozenset[int]


def _run_chain_job(job: _ChainJob, policy_factory: Callable[[str], Any]) -> list[ChainResult]:

    env = make_chain_env(**job.env_kwargs)
    try:
        policy = policy_factory(job.policy)
        return [
            run_chain(
                env,
                policy,
                chain_seed(job.base_seed, i),
                index=i,
                record=i in job.record_indices,
            )
            for i in job.indices
        ]
    finally:
        env.close()


def evaluate_chains(
    *,
    policy: str,
    num_chains: int,
    chain_length: int = 5,
    steps_per_subtask: int = 360,
    base_seed: int = 0,
    workers: int = 1,
    image_size: int = 64,
    camera: str | None = None,
    videos: int = 0,
    policy_factory: Callable[[str], Any] = make_policy,
    progress: Callable[[int], None] | None = None,
    batch: int | None = None,
) -> list[ChainResult]:
    """Run ``num_chains`` chains of a policy (CALVIN protocol: 1000 chains of 5).

    Args:
        policy: name given to ``policy_factory`` (``expert``, ``random``, a checkpoint).
        num_chains: chains to run; chain i uses :func:`chain_seed` (base_seed, i).
        chain_length: subtasks per chain.
        steps_per_subtask: step budget of each subtask.
        base_seed: base of the chain seeds.
        workers: processes (``spawn``); results do not depend on it. Batched: the processes
            the chain envs are spread over (1: this process).
        image_size: camera image side.
        camera: playground camera (None: the default, ``front``).
        videos: the first this-many chains keep their frames.
        policy_factory: picklable name -> policy (module level for workers > 1).
        progress: called with the number of chains each finished job (batched: each chain)
            completed.
        batch: chain envs acting together with one policy in this process (its device); None
            runs whole chains per process. Results do not depend on it (a learned policy's up
            to float rounding in its batched forward).

    Returns:
        The chains ordered by index.

    Raises:
        ValueError: a bad count, length, budget or worker number (the message names it).
        PolicyMismatchError: the policy was not trained for every subtask, or for these frames.
    """
    if isinstance(num_chains, bool) or not isinstance(num_chains, int) or num_chains < 1:
        raise UserError(f"num_chains={num_chains!r} must be a positive int.")
    pt.check_chain_args(chain_length, steps_per_subtask)
    if workers < 1:
        raise UserError(f"workers={workers} must be >= 1.")
    check_batch(batch)
    built = policy_factory(policy) if batch is not None else None
    env_kwargs = _fitted_env_kwargs(
        policy,
        policy_factory if built is None else (lambda _: built),
        {"chain_length": chain_length, "steps_per_subtask": steps_per_subtask},
        image_size,
        camera,
    )
    record = frozenset(range(min(videos, num_chains)))
    if batch is not None:
        return _evaluate_batched(
            policy,
            num_chains,
            base_seed,
            workers,
            env_kwargs,
            record,
            policy_factory,
            progress,
            batch=batch,
            built=built,
        )
    return _evaluate_per_process(
        policy, num_chains, base_seed, workers, env_kwargs, record, policy_factory, progress
    )


def _fitted_env_kwargs(
    policy: str,
    policy_factory: Callable[[str], Any],
    chain_kwargs: dict[str, Any],
    image_size: int,
    camera: str | None,
) -> dict[str, Any]:
    """The chain env's keyword arguments, with the camera the policy was trained on.

    Raises:
        PolicyMismatchError: the policy was not trained for every subtask, or for these frames.
    """
    env_kwargs = {**chain_kwargs, "image_size": image_size}
    if camera is not None:
        env_kwargs["camera"] = camera
    # A chain may draw any subtask: refuse up front a policy that does not know them all.
    fitted = check_policy_fits(
        [task_id(name) for name in pt.SUBTASK_NAMES],
        policy,
        {"image_size": image_size, **({"camera": camera} if camera is not None else {})},
        policy_factory,
    )
    if fitted.get("camera") is not None:  # the camera the policy was trained on
        env_kwargs["camera"] = fitted["camera"]
    return env_kwargs


def _evaluate_batched(
    policy: str,
    num_chains: int,
    base_seed: int,
    workers: int,
    env_kwargs: dict[str, Any],
    record: frozenset[int],
    policy_factory: Callable[[str], Any],
    progress: Callable[[int], None] | None,
    *,
    batch: int,
    built: Any,
) -> list[ChainResult]:
    """:func:`evaluate_chains` with ``batch`` chain envs acting together with one policy.

    ``built`` is the policy already made from ``policy`` (reused for the batch's policy).
    """
    units = [Unit(CHAIN_TASK, i, chain_seed(base_seed, i), i in record) for i in range(num_chains)]
    chains: list[ChainResult] = []

    def on_done(chain: ChainResult) -> None:
        chains.append(chain)
        if progress is not None:
            progress(1)

    run_batched(
        units,
        make_run=_ChainRun,
        make_policy=lambda size: make_batch_policy(policy, size, policy_factory, built),
        slots=batch,
        workers=workers,
        make_env=_make_chain_env,
        env_kwargs=env_kwargs,
        on_done=on_done,
    )
    return sorted(chains, key=lambda r: r.index)


def _evaluate_per_process(
    policy: str,
    num_chains: int,
    base_seed: int,
    workers: int,
    env_kwargs: dict[str, Any],
    record: frozenset[int],
    policy_factory: Callable[[str], Any],
    progress: Callable[[int], None] | None,
) -> list[ChainResult]:
    """:func:`evaluate_chains` with whole chains per process, spread over ``workers``."""
    chunks = max(1, min(num_chains, 4 * workers))
    jobs = [
        _ChainJob(tuple(range(c, num_chains, chunks)), policy, base_seed, env_kwargs, record)
        for c in range(chunks)
    ]
    results: list[ChainResult] = []

    def collect(chains: list[ChainResult]) -> None:
        results.extend(chains)
        if progress is not None:
            progress(len(chains))

    run_jobs(_run_chain_job, jobs, policy_factory, workers, collect)
    return sorted(results, key=lambda r: r.index)


def _make_chain_env(task: str, **env_kwargs: Any) -> Any:
    """A batched worker's env factory: every unit is a chain (``task`` is CHAIN_TASK)."""
    return make_chain_env(**env_kwargs)


class _ChainRun:
    """:func:`run_chain`'s steps, fed by batched evaluation: the same statements in the same
    order (a subtask switch resets the policy's row with that subtask's task id and seed)."""

    def __init__(self, unit: Unit) -> None:
        self.unit = unit
        self.frames: list[np.ndarray] = []
        self.steps, self.chain, self.completed, self.invalid = 0, (), 0, 0
        self.error: str | None = None
        self.obs: dict[str, np.ndarray] | None = None
        self.info: dict[str, Any] | None = None
        self._action_space: Any = None
        self._current: int | None = None
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
                self.chain = tuple(self.info["chain"])
                if self.unit.record:
                    self.frames.append(self.obs["pixels"])
            else:
                self.obs, _, terminated, truncated, self.info = payload
                self.steps += 1
                self.completed = int(self.info["completed"])
                if self.unit.record:
                    self.frames.append(self.obs["pixels"])
                if self.info["is_success"] or terminated or truncated:
                    return True
            if self.info["subtask_index"] != self._current:
                self._current = self.info["subtask_index"]
                self.invalid += not self.info["subtask_valid"]
                policy.reset(
                    row,
                    task_id=task_id(self.info["subtask"]),
                    action_space=self._action_space,
                    seed=self.unit.seed + self._current,
                )
            return False
        except Exception as exc:  # noqa: BLE001 - one chain's failure is recorded, not fatal
            self.fail(error_detail(exc))
            return True

    def fail(self, detail: str) -> None:
        self.error = detail

    def result(self) -> ChainResult:
        u = self.unit
        return ChainResult(
            u.index,
            u.seed,
            self.chain,
            self.completed,
            self.steps,
            self.invalid,
            self.error,
            stack_frames(self.frames),
        )


def summarize_chains(results: Sequence[ChainResult], chain_length: int) -> dict[str, Any]:
    """Success after 1..N subtasks (with Wilson 95% intervals), average completed length, and
    per subtask: attempts (chains that reached it) and successes."""
    n = len(results)
    if n == 0:
        raise UserError("summarize_chains needs at least one chain.")
    success_after = []
    for k in range(1, chain_length + 1):
        hits = sum(r.completed >= k for r in results)
        low, high = wilson_interval(hits, n)
        success_after.append({"subtasks": k, "chains": hits, "rate": hits / n, "ci95": [low, high]})
    per_subtask: dict[str, dict[str, int]] = {}
    for r in results:
        for position, name in enumerate(r.chain):
            if position > r.completed:
                break
            row = per_subtask.setdefault(name, {"attempts": 0, "successes": 0})
            row["attempts"] += 1
            row["successes"] += position < r.completed
    return {
        "chains": n,
        "chain_length": chain_length,
        "success_after": success_after,
        "average_length": float(np.mean([r.completed for r in results])),
        "per_subtask": dict(sorted(per_subtask.items())),
        "errors": sum(r.error is not None for r in results),
        "invalid_starts": sum(r.invalid_starts for r in results),
    }


def write_chain_report(
    out_dir: str | os.PathLike[str],
    results: Sequence[ChainResult],
    *,
    chain_length: int,
    config: Mapping[str, Any],
    fps: int = 20,
    measured_at: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """Write ``chains.json`` (summary, chains, config, provenance), ``chains.md`` and an mp4
    per recorded chain under ``videos/``; ``measured_at`` as
    :func:`vw_robot.eval.report.write_report`'s. Returns the summary."""

    out_dir = Path(out_dir)
    summary = summarize_chains(results, chain_length)
    payload = {
        "summary": summary,
        "chains": [r.to_json() for r in results],
        "config": dict(config),
        "provenance": with_measured_at(provenance(), measured_at),
    }
    atomic_write_text(out_dir / "chains.json", json.dumps(payload, indent=2) + "\n")
    atomic_write_text(out_dir / "chains.md", chains_markdown(summary))
    for r in results:
        if r.frames is not None:
            write_video(out_dir / "videos" / f"chain{r.index:04d}.mp4", r.frames, fps)
    return summary
