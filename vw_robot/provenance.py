"""What made a result: package versions and the git revision of the vw_robot checkout.

At the bottom of the layers: datasets, checkpoints' cards and evaluation reports all record it.
"""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

_TRACKED_PACKAGES = (
    "vw_robot",
    "torch",
    "mujoco",
    "metaworld",
    "robosuite",
    "gymnasium",
    "numpy",
    "hydra-core",
    "imageio",
)


def provenance() -> dict[str, Any]:
    """Package versions and the git revision of the vw_robot checkout (None when not a git tree)."""
    versions = {}
    for name in _TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"packages": versions, "git_revision": git_revision()}


_PINNED: list[str | None] = []  # the revision this process first saw


def git_revision() -> str | None:
    """The git revision of the vw_robot checkout (``-dirty`` with uncommitted changes) when
    this process first asked: a job that runs for hours (a study) records the code it started
    with, not a commit made while it ran. ``vw-robot`` asks when a job starts."""
    if not _PINNED:
        _PINNED.append(_git_revision())
    return _PINNED[0]


def _git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=here,
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")
