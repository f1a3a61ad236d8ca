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
    return {"packages": versions, "git_revision": _git_revision()}


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
