"""Policies: a common interface, baselines, and the VideoWorld policy."""

from __future__ import annotations

from pathlib import Path

from vw_robot.policies.base import Policy
from vw_robot.policies.baselines import ExpertPolicy, RandomPolicy

_BUILTIN = {"expert": ExpertPolicy, "random": RandomPolicy}


def make_policy(spec: str, device: str = "cpu") -> Policy:
    """Build a policy: ``"expert"``, ``"random"``, or a policy checkpoint / run folder
    (``runs/x/action_head``, ``runs/x/bc``, ``runs/x/noldm_head``, or a
    ``checkpoints/step_...`` folder in them). ``device`` (``auto``, ``cpu``, ``cuda``) is
    where a learned policy's networks run.

    Raises:
        ValueError: neither a known name nor a policy checkpoint; the message says which.
    """
    if spec in _BUILTIN:
        return _BUILTIN[spec]()
    if Path(spec).exists():
        from vw_robot.policies.videoworld import load_policy

        return load_policy(spec, device=device)
    raise ValueError(
        f"Unknown policy {spec!r}: not one of {', '.join(_BUILTIN)} and no such checkpoint "
        "folder (train one with `vw-robot train stage=action_head`)."
    )


__all__ = ["ExpertPolicy", "Policy", "RandomPolicy", "make_policy"]
