"""Shared test set-up: headless rendering before any simulator import."""

from __future__ import annotations

import vw_robot  # noqa: F401  (sets MUJOCO_GL=egl when unset)
