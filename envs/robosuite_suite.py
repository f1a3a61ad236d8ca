"""robosuite manipulation tasks under the vw_robot env contract.

robosuite is built without its own renderer (``has_offscreen_renderer=False``): frames come
from our :class:`~vw_robot.envs.rendering.FastRenderer` over robosuite's MuJoCo model, which
makes its GL context current before every render (robosuite's does not, and returns wrong
images when two envs render in one process) and is upright (robosuite's is flipped).
``hard_reset=False`` keeps the model across resets (~0.05 s instead of ~2 s per reset), and
robosuite's own horizon is disabled (``ignore_done``) so that the registry's ``TimeLimit`` is the
one time limit.
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np

from vw_robot.envs import robosuite_experts as rx
from vw_robot.envs.base import SimEnv

# Public task names (hyphenated like Meta-World's) -> names in robosuite_experts.
_INTERNAL_NAMES = {name.replace("_", "-"): name for name in rx.ROBOSUITE_TASKS}
TASK_NAMES = tuple(_INTERNAL_NAMES)
CAMERAS = ("agentview", "frontview", "birdview", "sideview", "robot0_eye_in_hand")
_PROPRIO_KEYS = ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos")
STATE_DIM = 9  # eef xyz + eef quaternion + two finger joints


def default_max_episode_steps(name: str) -> int:
    """The task's default time limit (robosuite's horizon for it in ``robosuite_experts``)."""
    return int(rx.ROBOSUITE_TASKS[_INTERNAL_NAMES[name]]["horizon"])


class RobosuiteEnv(SimEnv):
    """One robosuite task (Panda, OSC pose controller, 20 Hz).

    Args:
        name: public task name, one of :data:`TASK_NAMES` (e.g. ``"lift"``).
        image_size: camera image side in pixels.
        camera: one of :data:`CAMERAS`.
        max_episode_steps: informational here; the registry's ``TimeLimit`` enforces it.
        render_mode: ``None`` or ``"rgb_array"``.
    """

    def __init__(
        self,
        name: str,
        *,
        image_size: int = 64,
        camera: str = CAMERAS[0],
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        self.name = name
        self._internal = _INTERNAL_NAMES[name]
        self._env = rx.make_robosuite_env(self._internal)
        # The registry's TimeLimit is the one time limit; robosuite's horizon would raise.
        self._env.ignore_done = True
        action_dim = int(self._env.action_dim)
        super().__init__(
            f"robosuite/{name}",
            image_size=image_size,
            camera=camera,
            state_dim=STATE_DIM,
            action_dim=action_dim,
            render_mode=render_mode,
        )
        self.max_episode_steps = max_episode_steps
        self._raw_obs: dict[str, np.ndarray] = {}

    @property
    def mj_model(self) -> mujoco.MjModel:
        return self._env.sim.model._model

    @property
    def mj_data(self) -> mujoco.MjData:
        return self._env.sim.data._data

    def _sim_reset(self, sim_seed: int) -> None:
        model_before = self.mj_model
        rx.reseed(self._env, sim_seed)
        self._raw_obs = self._env.reset()
        if self.mj_model is not model_before and self._renderer is not None:
            # robosuite rebuilt its model; a renderer bound to the old one would show stale frames.
            self._renderer.close()
            self._renderer = None

    def _sim_step(self, action: np.ndarray) -> float:
        self._raw_obs, reward, _, _ = self._env.step(action)
        return float(reward)

    def _sim_success(self) -> bool:
        return bool(self._env._check_success())

    def _sim_proprio(self) -> np.ndarray:
        return np.concatenate([np.asarray(self._raw_obs[k]).ravel() for k in _PROPRIO_KEYS])

    def _sim_privileged(self) -> dict[str, np.ndarray]:
        return {k: np.array(v) for k, v in self._raw_obs.items() if not k.endswith("_image")}

    def close(self) -> None:
        super().close()
        self._env.close()


class RobosuiteExpert:
    """Scripted expert for a robosuite task, reading the privileged observation dict."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._expert = rx.ROBOSUITE_EXPERTS[_INTERNAL_NAMES[name]]()

    def reset(self) -> None:
        self._expert.reset()

    def __call__(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        action = self._expert(info["privileged"])
        return np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
