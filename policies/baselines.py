"""Reference policies: the scripted expert (upper bound) and uniform random actions."""

from __future__ import annotations

from typing import Any

import numpy as np

from vw_robot.envs import make_expert
from vw_robot.policies.base import SlotPolicies


class ExpertPolicy:
    """The registry's scripted expert for whichever task is being run (privileged state)."""

    name = "expert"

    def __init__(self) -> None:
        self._experts: dict[str, Any] = {}
        self._current: Any = None

    def reset(self, *, task_id: str, action_space: Any, seed: int | None = None) -> None:
        if task_id not in self._experts:
            self._experts[task_id] = make_expert(task_id)
        self._current = self._experts[task_id]
        self._current.reset()

    def make_batch(self, size: int) -> SlotPolicies:
        """``size`` rows, each its own expert objects (as one evaluation worker has)."""
        return SlotPolicies([ExpertPolicy() for _ in range(size)])

    def select_action(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        if self._current is None:
            raise RuntimeError("ExpertPolicy.select_action called before reset().")
        return self._current(obs, info)


class RandomPolicy:
    """Uniform random actions, seeded per episode so evaluations are reproducible."""

    name = "random"

    def __init__(self) -> None:
        self._space: Any = None
        self._rng = np.random.default_rng(0)

    def reset(self, *, task_id: str, action_space: Any, seed: int | None = None) -> None:
        self._space = action_space
        self._rng = np.random.default_rng(seed)

    def make_batch(self, size: int) -> SlotPolicies:
        """``size`` rows, each with its own generator seeded by its episode's seed."""
        return SlotPolicies([RandomPolicy() for _ in range(size)])

    def select_action(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        if self._space is None:
            raise RuntimeError("RandomPolicy.select_action called before reset().")
        low, high = self._space.low, self._space.high
        return self._rng.uniform(low, high).astype(self._space.dtype)
