"""Shared test set-up: headless rendering before any simulator import, one torch thread."""

from __future__ import annotations

import torch

import vw_robot  # noqa: F401  (sets MUJOCO_GL=egl when unset)

# Tests run tiny models: one thread avoids OpenMP oversubscription when pytest shares the two
# cores with the worker processes some tests start (measured 10-20x slowdowns otherwise).
torch.set_num_threads(1)
