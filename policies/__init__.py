"""Policies: a common interface, baselines, and the VideoWorld policy."""

from __future__ import annotations

from pathlib import Path

from vw_robot.errors import UserError
from vw_robot.policies.base import Policy
from vw_robot.policies.baselines import ExpertPolicy, RandomPolicy
from vw_robot.policies.videoworld import load_policy, policy_info

_BUILTIN = {"expert": ExpertPolicy, "random": RandomPolicy}


def make_policy(
    spec: str, device: str = "cpu", execute: int | None = None, ensemble: float | None = None
) -> Policy:
    """Build a policy: ``"expert"``, ``"random"``, or a policy checkpoint / run folder
    (a head's run folder such as ``runs/x/videoworld-25pct_seed0``, ``runs/x/bc-100pct_seed0``,
    ``runs/x/noldm-25pct_seed0``, a ``checkpoints/step_...`` folder in them, or a folder
    written by ``vw-robot export-policy``).

    Module level and picklable through ``functools.partial``, so evaluation workers build
    their own.

    Args:
        spec: the name or folder.
        device: where a learned policy's networks run (``auto``, ``cpu``, ``cuda``).
        execute: learned policies: actions run per plan (None: the whole chunk).
        ensemble: learned policies: plan every step and average the chunks' predictions with
            ACT's weights exp(-ensemble * i) (None: off; ``execute`` is then ignored).

    Raises:
        UserError: neither a known name nor a policy checkpoint (the message says which), or
            ``execute`` for a policy that does not execute chunks or outside [1, chunk].
    """
    check_policy_spec(spec)
    if spec in _BUILTIN:
        if execute is not None or ensemble is not None:
            raise UserError(f"execute/ensemble: policy {spec!r} does not act in action chunks.")
        return _BUILTIN[spec]()
    policy = load_policy(spec, device=device, ensemble=ensemble)
    if execute is not None:
        if not 1 <= execute <= policy.head.config.chunk:
            raise UserError(f"execute: {execute} must be in [1, {policy.head.config.chunk}].")
        policy.execute = execute
    return policy


def check_policy_spec(spec: str) -> None:
    """Check that ``spec`` names a policy without loading any weights (config validation).

    Raises:
        UserError: an unknown name, a folder that is not a policy checkpoint, or one whose
            parents are missing.
    """
    if spec in _BUILTIN:
        return
    if not Path(spec).exists():
        raise UserError(
            f"Unknown policy {spec!r}: not one of {', '.join(_BUILTIN)} and no such checkpoint "
            "folder (train one with `vw-robot train stage=action_head`)."
        )
    policy_info(spec)


__all__ = [
    "ExpertPolicy",
    "Policy",
    "RandomPolicy",
    "check_policy_spec",
    "load_policy",
    "make_policy",
]
