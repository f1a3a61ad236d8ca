"""vw_robot: robot control policies learned from demonstration videos, the VideoWorld way.

Importing the package selects a headless MuJoCo backend (``MUJOCO_GL=egl``) on Linux when the
user has not chosen one. MuJoCo reads the variable when it is first imported, so import
``vw_robot`` before ``mujoco``, ``metaworld`` or ``robosuite``, or set ``MUJOCO_GL`` yourself.
"""

from __future__ import annotations

import os
import sys

__version__ = "0.1.0"


def _select_headless_gl() -> None:
    # Never override a user's choice: they may have a display or want osmesa.
    if sys.platform.startswith("linux") and "MUJOCO_GL" not in os.environ:
        os.environ["MUJOCO_GL"] = "egl"
    # PyOpenGL must agree with MuJoCo, otherwise it probes GLX first and fails headless.
    if os.environ.get("MUJOCO_GL") in ("egl", "osmesa") and "PYOPENGL_PLATFORM" not in os.environ:
        os.environ["PYOPENGL_PLATFORM"] = os.environ["MUJOCO_GL"]


_select_headless_gl()
