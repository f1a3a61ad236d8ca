"""The policy interface every controller in vw_robot follows (LeRobot/robomimic style)."""

from __future__ import annotations

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
