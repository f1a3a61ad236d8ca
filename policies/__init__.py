"""Policies: a common interface, baselines, and (later) the VideoWorld policy."""

from __future__ import annotations

from vw_robot.policies.base import Policy
from vw_robot.policies.baselines import ExpertPolicy, RandomPolicy

_BUILTIN = {"expert": ExpertPolicy, "random": RandomPolicy}


def make_policy(name: str) -> Policy:
    """Build a policy by name: ``"expert"`` or ``"random"``.

    Raises:
        ValueError: unknown name; the message lists the known ones.
    """
    if name not in _BUILTIN:
        raise ValueError(f"Unknown policy {name!r}; known policies: {', '.join(_BUILTIN)}.")
    return _BUILTIN[name]()


__all__ = ["ExpertPolicy", "Policy", "RandomPolicy", "make_policy"]
