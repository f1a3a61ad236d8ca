"""The policy interface every controller in vw_robot follows (LeRobot/robomimic style), and its
batched form for evaluating many envs with one policy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Policy(Protocol):
    """A closed-loop controller.

    ``reset`` starts an episode of ``task_id`` and clears all per-episode state (action queue,
    context); ``select_action`` maps the env's observation (and ``info``, which only scripted
    experts may read privileged state from) to one action in the env's action space.
    """

    name: str

    def reset(self, *, task_id: str, action_space: Any, seed: int | None = None) -> None: ...

    def select_action(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray: ...


@runtime_checkable
class BatchPolicy(Protocol):
    """One policy acting for ``size`` envs at once (batched evaluation, docs/benchmarks.md).

    Row ``r`` stands for one env slot: ``reset(r, ...)`` starts an episode there and clears
    only that row's state (context, KV-cache row, action queue); ``select_actions`` acts for
    the rows given, in one batched forward for a learned policy. Rows that are not given keep
    their state untouched. A policy that offers it has ``make_batch(size)``.
    """

    size: int

    def reset(
        self, row: int, *, task_id: str, action_space: Any, seed: int | None = None
    ) -> None: ...

    def select_actions(
        self,
        obs: Sequence[dict[str, np.ndarray]],
        infos: Sequence[dict[str, Any]],
        rows: Sequence[int],
    ) -> Sequence[np.ndarray]:
        """One action per row given: an (R, A) array, or a list of R arrays when the rows'
        envs have different action sizes.

        Raises:
            RowErrors: some rows failed (their errors), the others acted (their actions).
            Exception: anything else failed every row given.
        """
        ...


class RowErrors(Exception):  # noqa: N818 - it carries errors, it is not one itself
    """Some rows of a batched ``select_actions`` failed and the others acted.

    Attributes:
        errors: row -> the exception it raised (reset that row before it acts again).
        actions: row -> action, for the rows that acted.
    """

    def __init__(self, errors: dict[int, BaseException], actions: dict[int, np.ndarray]) -> None:
        super().__init__("; ".join(f"row {row}: {exc}" for row, exc in errors.items()))
        self.errors = errors
        self.actions = actions


class SlotPolicies:
    """A :class:`BatchPolicy` made of one independent single-env policy per row.

    Each row's policy is reset and acts exactly as it would alone, so scripted experts, random
    actions and user policies give the same episodes batched or not (the random policy seeds
    its generator from ``reset``'s seed). Actions are returned as a list, unchanged.
    """

    def __init__(self, policies: Sequence[Policy]) -> None:
        if not policies:
            raise ValueError("SlotPolicies needs at least one policy.")
        self.policies = list(policies)
        self.size = len(self.policies)
        self.name = getattr(self.policies[0], "name", type(self.policies[0]).__name__)

    def reset(self, row: int, *, task_id: str, action_space: Any, seed: int | None = None) -> None:
        self.policies[row].reset(task_id=task_id, action_space=action_space, seed=seed)

    def select_actions(
        self,
        obs: Sequence[dict[str, np.ndarray]],
        infos: Sequence[dict[str, Any]],
        rows: Sequence[int],
    ) -> list[np.ndarray]:
        actions: dict[int, np.ndarray] = {}
        errors: dict[int, BaseException] = {}
        for o, i, row in zip(obs, infos, rows, strict=True):
            try:
                actions[row] = self.policies[row].select_action(o, i)
            except Exception as exc:  # noqa: BLE001 - one row's failure is that row's alone
                errors[row] = exc
        if errors:
            raise RowErrors(errors, actions)
        return [actions[row] for row in rows]
