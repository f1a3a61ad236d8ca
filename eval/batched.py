"""Batched evaluation: env slots step in worker processes while one policy, in this process,
acts for all of them with batched forwards.

``slots`` envs run at once, spread over ``workers`` processes (slot s lives in worker
``s % workers``; one worker means this process). The slots of a worker form a group with its
own rows of the policy (:class:`vw_robot.policies.base.BatchPolicy`, one batched forward for
the group per step; a learned policy's batches share its networks). The groups take turns:
this process acts for one group while the other workers step theirs, so the policy and the
simulators overlap. A slot whose episode ends takes the next pending one (its policy row is
reset), so more episodes than slots run through a fixed set of envs. What an episode does
depends only on its unit (task, seed) and the policy, never on the slot, the worker or when
other episodes ended, so results do not depend on ``slots`` or ``workers`` (a learned
policy's up to the float rounding of batched forwards).

Workers keep the simulators they built, per task, and hand a free one of the right task to
the next episode, so switching tasks (or starting the next episode) rarely builds an env:
building one costs about a second here (``gym.make`` and the renderer's GL context), a
step about 10 ms. At most twice a worker's slot count is kept; the least recently used
idle env is closed first.

Worker processes are started with ``spawn`` (GL contexts do not survive ``fork``; see
docs/simulators.md) as daemons, and end with this process: each waits on a pipe to it and
exits when the pipe closes (this process ended, however it ended) or when it is re-parented.

The episode logic (what a reply means, when an episode ends) is the caller's: a
:class:`SlotRun` per unit, such as rollout's per-episode run or chains' per-chain run.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Protocol

import numpy as np
import torch

from vw_robot.policies.base import BatchPolicy, RowErrors, SlotPolicies

# A worker's answer to one command: ("ok", payload) or ("error", the exception's last line).
Reply = tuple[str, Any]
WATCH_INTERVAL_S = 1.0  # how often an idle worker checks that its parent is still there
CLOSE_TIMEOUT_S = 10.0  # how long closing waits for a worker to close its envs


@dataclass(frozen=True)
class Unit:
    """One episode (or chain) to run in a slot: the env to use and the seed to reset it with."""

    task_id: str  # the env a worker builds (``make(task_id, **env_kwargs)``)
    index: int  # the episode's index within its task
    seed: int  # ``env.reset(seed=...)``, and the policy row's reset seed
    record: bool = False  # keep the episode's frames


class SlotRun(Protocol):
    """An episode's progress in a slot, fed the worker's replies in order.

    ``receive`` gets the reply to the env's reset first (payload ``(obs, info,
    action_space)``; it resets the policy's row), then one per step (payload ``(obs, reward,
    terminated, truncated, info)``), and says whether the episode is over. A reply of kind
    ``"error"`` ends it. While it goes on, ``obs`` and ``info`` are what the policy acts on.
    """

    obs: Any
    info: Any

    def receive(self, reply: Reply, policy: BatchPolicy, row: int) -> bool: ...

    def fail(self, detail: str) -> None: ...

    def result(self) -> Any: ...


def error_detail(exc: BaseException) -> str:
    """The exception's last line, as an episode records it."""
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


def make_batch_policy(
    policy: str,
    size: int,
    policy_factory: Callable[[str], Any],
    built: Any = None,
) -> BatchPolicy:
    """``size`` rows of ``policy``: its own batch (``make_batch``: learned policies, the
    expert, random actions) or, for a policy without one, ``size`` policies from the factory
    (:class:`SlotPolicies`, each acting alone as in the per-process rollout).

    Args:
        policy: the name given to ``policy_factory``.
        size: rows (env slots).
        policy_factory: name -> policy.
        built: a policy already built from ``policy`` (its ``make_batch`` is used).
    """
    built = policy_factory(policy) if built is None else built
    if hasattr(built, "make_batch"):
        return built.make_batch(size)
    return SlotPolicies([policy_factory(policy) for _ in range(size)])


def run_batched(
    units: Iterable[Unit],
    *,
    make_run: Callable[[Unit], SlotRun],
    make_policy: Callable[[int], BatchPolicy],
    slots: int,
    workers: int,
    make_env: Callable[..., Any],
    env_kwargs: dict[str, Any],
    on_done: Callable[[Any], None],
    overlap: bool = True,
) -> None:
    """Run every unit in ``slots`` env slots; ``on_done(run.result())`` as each ends.

    The slots of worker w form its group, with a policy batch of its own (row i: the group's
    i-th slot). The groups take turns: while this process acts for one group, the other
    workers step theirs, so with two workers the policy and the simulators keep both cores
    of a 2-core machine busy. Which rows act together, and so the float rounding of a learned
    policy, depends on ``slots`` and ``workers`` only, never on timing.

    Args:
        units: the episodes; each group starts its share in this order as its slots free up.
        make_run: unit -> its :class:`SlotRun`.
        make_policy: rows -> a policy batch (called once per worker group).
        slots: envs at once (at most one per unit).
        workers: env processes (``spawn``); 1 steps the envs in this process.
        make_env: module-level ``(task_id, **env_kwargs) -> env`` (pickled to the workers).
        env_kwargs: its keyword arguments.
        on_done: called in this process with each finished run's result.
        overlap: groups take turns (the policy acts for one while the others step); False:
            all step, then the policy acts for all (with every torch thread).
    """
    units = list(units)
    slots = min(slots, len(units))
    if slots == 0:
        return
    workers = min(workers, slots)
    groups = [list(range(w, slots, workers)) for w in range(workers)]  # slot s: worker s % W
    policies = [make_policy(len(group)) for group in groups]
    dealer = _Dealer(units, workers, policies, make_run, on_done)

    # Overlap: one group at a time, the others step meanwhile. Else every group steps, then
    # the policy acts for all of them while no simulator runs.
    turns = [[w] for w in range(workers)] if overlap else [list(range(workers))]
    pool = EnvPool(groups, make_env, env_kwargs)
    try:
        with policy_threads(workers if overlap else 1):
            for w, group in enumerate(groups):
                commands: dict[int, tuple[Any, ...]] = {}
                for slot in group:
                    dealer.start(slot, commands)
                pool.send(w, commands)
            while any(pool.waiting(w) for w in range(workers)):
                for turn in turns:
                    received = {w: pool.receive(w) for w in turn if pool.waiting(w)}
                    outgoing = {w: dealer.advance(w, replies) for w, replies in received.items()}
                    for w, commands in outgoing.items():
                        pool.send(w, commands)
    finally:
        pool.close()


class _Dealer:
    """:func:`run_batched`'s bookkeeping: which run each slot holds, the units still to start,
    and the commands a group's replies lead to."""

    def __init__(
        self,
        units: list[Unit],
        workers: int,
        policies: list[BatchPolicy],
        make_run: Callable[[Unit], SlotRun],
        on_done: Callable[[Any], None],
    ) -> None:
        self.workers, self.policies = workers, policies
        self.make_run, self.on_done = make_run, on_done
        # Units dealt to the groups in turn, so the workers share the tail of the run; a group
        # with none left takes the last of the fullest queue (episodes end at different steps).
        self.queues = [deque(units[w::workers]) for w in range(workers)]
        self.runs: dict[int, SlotRun] = {}

    def start(self, slot: int, commands: dict[int, tuple[Any, ...]]) -> None:
        """Start the slot's next unit, if any is left: a reset command for its env."""
        own, fullest = self.queues[slot % self.workers], max(self.queues, key=len)
        if own or fullest:
            unit = own.popleft() if own else fullest.pop()
            self.runs[slot] = self.make_run(unit)
            commands[slot] = ("reset", unit.task_id, unit.seed)

    def finish(self, slot: int, commands: dict[int, tuple[Any, ...]]) -> None:
        """Hand the slot's finished run to ``on_done`` and start its next unit."""
        self.on_done(self.runs.pop(slot).result())
        self.start(slot, commands)

    def advance(self, w: int, replies: dict[int, Reply]) -> dict[int, tuple[Any, ...]]:
        """Take in group w's replies and act: the group's next commands."""
        commands: dict[int, tuple[Any, ...]] = {}
        ready = []
        for slot in sorted(replies):
            if self.runs[slot].receive(replies[slot], self.policies[w], slot // self.workers):
                self.finish(slot, commands)
            else:
                ready.append(slot)
        acted = _act(self.policies[w], ready, self.workers, self.runs) if ready else {}
        for slot, (action, error) in acted.items():
            if error is None:
                commands[slot] = ("step", action)
            else:
                self.runs[slot].fail(error)
                self.finish(slot, commands)
        return commands


@contextlib.contextmanager
def policy_threads(workers: int) -> Iterator[None]:
    """Leave a core to each worker that steps while the policy acts (``workers - 1`` of them):
    torch threads that share a core with a busy process slow each other down many times over
    (its threads wait on each other at every op)."""
    before = torch.get_num_threads()
    if workers > 1:
        torch.set_num_threads(min(before, max(1, (os.cpu_count() or 1) - (workers - 1))))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _act(
    policy: BatchPolicy, slots: list[int], workers: int, runs: dict[int, SlotRun]
) -> dict[int, tuple[Any, str | None]]:
    """One batched call for a group's slots: slot -> (action, None) or (None, why it failed)."""
    rows = [slot // workers for slot in slots]
    obs = [runs[slot].obs for slot in slots]
    infos = [runs[slot].info for slot in slots]
    try:
        actions = policy.select_actions(obs, infos, rows)
    except RowErrors as exc:
        out: dict[int, tuple[Any, str | None]] = {}
        for slot, row in zip(slots, rows, strict=True):
            if row in exc.errors:
                out[slot] = (None, error_detail(exc.errors[row]))
            else:
                out[slot] = (exc.actions[row], None)
        return out
    except Exception as exc:  # noqa: BLE001 - recorded by every episode it stopped
        detail = error_detail(exc)
        return {slot: (None, detail) for slot in slots}
    return {slot: (actions[i], None) for i, slot in enumerate(slots)}


class EnvHost:
    """The envs of some slots, in one process: per slot the env its episode runs in, and
    idle envs kept per task for the next episodes (at most ``capacity`` envs in all)."""

    def __init__(self, make: Callable[..., Any], env_kwargs: dict[str, Any], capacity: int):
        self._make = make
        self._kwargs = env_kwargs
        self._capacity = capacity
        self._busy: dict[int, tuple[str, Any]] = {}  # slot -> (task, env)
        self._idle: list[tuple[str, Any]] = []  # least recently used first

    def handle(self, slot: int, command: tuple[Any, ...]) -> Reply:
        """Run ``("reset", task_id, seed)`` or ``("step", action)`` for ``slot``."""
        try:
            if command[0] == "reset":
                _, task_id, seed = command
                env = self._acquire(slot, task_id)
                obs, info = env.reset(seed=seed)
                return "ok", (obs, info, env.action_space)
            _, action = command
            return "ok", self._busy[slot][1].step(action)
        except Exception as exc:  # noqa: BLE001 - the episode records it; the run goes on
            return "error", error_detail(exc)

    def _acquire(self, slot: int, task_id: str) -> Any:
        if slot in self._busy:
            self._idle.append(self._busy.pop(slot))
        for i in range(len(self._idle) - 1, -1, -1):
            if self._idle[i][0] == task_id:
                env = self._idle.pop(i)[1]
                break
        else:
            env = self._make(task_id, **self._kwargs)
            while self._idle and len(self._idle) + len(self._busy) + 1 > self._capacity:
                self._idle.pop(0)[1].close()
        self._busy[slot] = (task_id, env)
        return env

    def close(self) -> None:
        for _, env in [*self._idle, *self._busy.values()]:
            env.close()
        self._idle, self._busy = [], {}


class EnvPool:
    """Env slots in groups, one spawned process per group (or this process for one group).

    :meth:`send` gives a group's worker its slots' commands and returns at once (in this
    process they run there and then); :meth:`receive` waits for that worker's replies.
    """

    def __init__(
        self,
        groups: Sequence[Sequence[int]],
        make: Callable[..., Any],
        env_kwargs: dict[str, Any],
    ) -> None:
        self._host: EnvHost | None = None
        self._done: dict[int, Reply] | None = None  # replies of the in-process host
        self._waiting = [False] * len(groups)
        self._conns: list[Connection] = []
        self._processes: list[multiprocessing.process.BaseProcess] = []
        if len(groups) == 1:
            self._host = EnvHost(make, env_kwargs, capacity=2 * len(groups[0]))
            return
        context = multiprocessing.get_context("spawn")
        try:
            for w, group in enumerate(groups):
                here, there = context.Pipe()
                process = context.Process(
                    target=_serve,
                    args=(there, make, env_kwargs, 2 * len(group)),
                    name=f"vw-robot-envs-{w}",
                    daemon=True,  # also ended by multiprocessing when this process exits
                )
                process.start()
                there.close()  # only the worker holds its end: our exit closes the pipe
                self._conns.append(here)
                self._processes.append(process)
        except BaseException:
            self.close()
            raise

    def waiting(self, group: int) -> bool:
        """Whether ``group`` has commands whose replies were not received yet."""
        return self._waiting[group]

    def send(self, group: int, commands: dict[int, tuple[Any, ...]]) -> None:
        """Start slot -> command for the group's slots (nothing to do for no commands)."""
        if not commands:
            return
        self._waiting[group] = True
        batch = sorted(commands.items())
        if self._host is not None:
            self._done = {slot: self._host.handle(slot, command) for slot, command in batch}
        else:
            self._conns[group].send(batch)

    def receive(self, group: int) -> dict[int, Reply]:
        """slot -> reply for the group's last :meth:`send`."""
        self._waiting[group] = False
        if self._host is not None:
            replies, self._done = self._done or {}, None
            return replies
        try:
            return dict(self._conns[group].recv())
        except (EOFError, OSError):
            code = self._processes[group].exitcode
            raise RuntimeError(
                f"env worker {group} ended unexpectedly (exit code {code}); a simulator "
                "crashed the process."
            ) from None

    def close(self) -> None:
        """Close every env (workers close theirs and exit)."""
        if self._host is not None:
            self._host.close()
            return
        for conn in self._conns:
            with contextlib.suppress(OSError):  # a worker that died has closed its end
                conn.send(None)
        for process in self._processes:
            process.join(CLOSE_TIMEOUT_S)
            if process.is_alive():
                process.terminate()
                process.join(CLOSE_TIMEOUT_S)
        for conn in self._conns:
            conn.close()
        self._conns, self._processes = [], []


def _serve(
    conn: Connection, make: Callable[..., Any], env_kwargs: dict[str, Any], capacity: int
) -> None:
    """A worker: answer batches of ``(slot, command)`` until told to stop (None) or until the
    parent goes (the pipe closes, or this process is re-parented)."""
    torch.set_num_threads(1)  # simulators need no torch threads; the cores are the policy's
    parent = os.getppid()
    host = EnvHost(make, env_kwargs, capacity)
    try:
        while True:
            while not conn.poll(WATCH_INTERVAL_S):
                if os.getppid() != parent:
                    return
            try:
                message = conn.recv()
            except EOFError:
                return
            if message is None:
                return
            conn.send([(slot, host.handle(slot, command)) for slot, command in message])
    finally:
        host.close()


def stack_frames(frames: Sequence[np.ndarray]) -> np.ndarray | None:
    """(T, H, W, 3) uint8, or None when nothing was recorded."""
    return np.stack(frames) if frames else None
