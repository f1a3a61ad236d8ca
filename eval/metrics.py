"""Success statistics."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from vw_robot.envs import playground_tasks as pt
from vw_robot.envs.playground_suite import task_id


def wilson_interval(
    successes: int, episodes: int, z: float = 1.959963984540054
) -> tuple[float, float]:
    """Wilson score interval for a binomial success rate (95% by default).

    Unlike the normal approximation it stays inside [0, 1] and is informative at 0/n and n/n,
    which is where small evaluation runs often land.

    Args:
        successes: number of successful episodes.
        episodes: number of episodes (> 0).
        z: standard-normal quantile of the confidence level.

    Returns:
        (low, high) bounds of the interval.
    """
    if episodes <= 0:
        raise ValueError(f"episodes={episodes} must be positive.")
    if not 0 <= successes <= episodes:
        raise ValueError(f"successes={successes} must be in [0, episodes={episodes}].")
    p = successes / episodes
    z2 = z * z
    denom = 1.0 + z2 / episodes
    centre = (p + z2 / (2 * episodes)) / denom
    half = z * math.sqrt(p * (1 - p) / episodes + z2 / (4 * episodes * episodes)) / denom
    # At 0/n and n/n the closed form's bound is exactly 0 or 1; say so despite rounding.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == episodes else min(1.0, centre + half)
    return low, high


# VideoWorld's grouping of its 12 CALVIN subtasks (the paper's push / open-close / turn on-off).
VIDEOWORLD_GROUPS = {
    "push": tuple(n for n in pt.VIDEOWORLD_SUBTASKS if n.startswith("push_")),
    "open/close": ("open_drawer", "close_drawer"),
    "turn on/off": tuple(n for n in pt.VIDEOWORLD_SUBTASKS if n.startswith("turn_")),
}


def videoworld_groups(tasks: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-task rows (task id -> ``successes``, ``episodes``) pooled into VideoWorld's groups;
    a group none of whose subtasks is in ``tasks`` is left out."""
    out = {}
    for group, names in VIDEOWORLD_GROUPS.items():
        rows = [tasks[task_id(n)] for n in names if task_id(n) in tasks]
        if rows:
            wins, total = sum(r["successes"] for r in rows), sum(r["episodes"] for r in rows)
            out[group] = {"successes": wins, "episodes": total, "rate": wins / total}
    return out
