"""Meta-World v3 tasks under the vw_robot env contract.

We build the raw task class from ``metaworld.env_dict`` rather than going through
``gym.make("Meta-World/MT1")``: the benchmark wrappers fix 50 pre-sampled configurations per
seed and ignore ``reset(seed=...)``, while here every episode's object and goal positions come
from the episode's own seed (the task's random vector is unfrozen and drawn from a generator
seeded at each reset). Same seed -> same configuration -> same first frame.
"""

from __future__ import annotations

import warnings
from typing import Any

import mujoco
import numpy as np

from vw_robot.envs.base import SimEnv
from vw_robot.envs.rendering import FreeCamera

MT10_TASKS = (
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "window-close-v3",
)

CAMERAS = (
    "corner2",
    "corner",
    "corner3",
    "corner4",
    "topview",
    "behindGripper",
    "gripperPOV",
    "workspace",
    "front",
    "top",
)
DEFAULT_CAMERA = "corner2"
# The view `vw-robot run` gives learned policies unless told otherwise: "front" and "top"
# stacked in one frame. It places the goals that float in the air, which no single camera does
# (BC with every label, MT10 selection seeds: 0.750 against 0.630 from corner2;
# docs/studies/mt10.md).
POLICY_CAMERA = "front+top"
# The corner cameras are mounted upside down in Meta-World's XML.
_FLIPPED_CAMERAS = frozenset({"corner", "corner2", "corner3", "corner4"})
# Cameras of our own (not in Meta-World's XML). "workspace" frames the table top where every
# MT10 object and goal lies, seen three-quarters from the front at 35 degrees down: at 64 px a
# goal marker or puck is 2-3 px wide and the hand's height shows against the table, where
# corner2 shows the whole room and them as a pixel or less (docs/studies/mt10.md, the head recipe).
FREE_CAMERAS = {
    "workspace": FreeCamera(lookat=(0.0, 0.65, 0.12), distance=1.2, azimuth=-130, elevation=-35),
    # Made to be stacked (camera="front+top", the head recipe): from the front, low, and straight
    # down, at right angles, so that between them a point's height and its place on the table
    # are both seen — a goal floating in the air shows on one pixel ray from any single camera.
    "front": FreeCamera(lookat=(0.0, 0.7, 0.15), distance=1.2, azimuth=-90, elevation=-25),
    "top": FreeCamera(lookat=(0.0, 0.7, 0.0), distance=1.2, azimuth=90, elevation=-90),
}
DEFAULT_MAX_EPISODE_STEPS = 500
STATE_DIM = 4  # end-effector xyz + gripper opening
ACTION_DIM = 4  # end-effector delta xyz + gripper effort


def all_task_names() -> tuple[str, ...]:
    """The 50 Meta-World v3 task names (MT50), in the package's order."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return tuple(ALL_V3_ENVIRONMENTS)


class MetaWorldEnv(SimEnv):
    """One Meta-World v3 task with a freshly sampled object/goal configuration per seed.

    Args:
        name: Meta-World task name, e.g. ``"reach-v3"``.
        image_size: camera image side in pixels.
        camera: one of :data:`CAMERAS`.
        max_episode_steps: Meta-World's own path-length limit; the registry adds the matching
            gymnasium ``TimeLimit``.
        render_mode: ``None`` or ``"rgb_array"``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 80}

    def __init__(
        self,
        name: str,
        *,
        image_size: int = 64,
        camera: str = DEFAULT_CAMERA,
        max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(
            f"metaworld/{name}",
            image_size=image_size,
            camera=camera,
            state_dim=STATE_DIM,
            action_dim=ACTION_DIM,
            render_mode=render_mode,
            flipped_cameras=_FLIPPED_CAMERAS,
            free_cameras=FREE_CAMERAS,
        )
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        # No render_mode here: we render with our own FastRenderer, not gymnasium's viewer.
        self._env = ALL_V3_ENVIRONMENTS[name]()
        env = self._env
        env._set_task_called = True
        env._freeze_rand_vec = False
        env.seeded_rand_vec = True
        # Goal in the privileged observation (the experts read it); pixels show the goal marker.
        if env._partially_observable:
            env.__dict__.pop("sawyer_observation_space", None)  # a cached_property
            env._partially_observable = False
        env.max_path_length = int(max_episode_steps)
        self.name = name
        self._raw_obs = np.zeros(39)
        self._success = False

    @property
    def mj_model(self) -> mujoco.MjModel:
        return self._env.model

    @property
    def mj_data(self) -> mujoco.MjData:
        return self._env.data

    def _sim_reset(self, sim_seed: int) -> None:
        # SawyerXYZEnv.reset ignores its seed argument; seed() reseeds the generator the
        # random vector (object and goal positions) is drawn from.
        self._env.seed(sim_seed)
        obs, _ = self._env.reset()
        # Meta-World moves the goal marker (a model site) after its last forward pass, so
        # without this the first frame of every episode showed the marker where the previous
        # episode (or the XML) left it. mj_kinematics recomputes positions only (mj_forward
        # would also change the solver's warm start, and so the episode: measured 1 cm apart
        # after 60 expert steps); with it every qpos of the expert's episodes stays bit-identical.
        mujoco.mj_kinematics(self._env.model, self._env.data)
        self._raw_obs = np.asarray(obs, dtype=np.float64)
        # Meta-World's success flag comes from a step's evaluation; a fresh episode is unsolved.
        self._success = False

    def _sim_step(self, action: np.ndarray) -> float:
        obs, reward, _, _, info = self._env.step(action.astype(np.float32))
        self._raw_obs = np.asarray(obs, dtype=np.float64)
        self._success = bool(info["success"])
        return float(reward)

    def _sim_success(self) -> bool:
        return self._success

    def _sim_proprio(self) -> np.ndarray:
        return self._raw_obs[:STATE_DIM]

    def _sim_privileged(self) -> dict[str, np.ndarray]:
        return {"obs": self._raw_obs.copy()}

    def close(self) -> None:
        super().close()
        self._env.close()


class MetaWorldExpert:
    """Meta-World's own scripted policy for a task, reading the privileged observation."""

    def __init__(self, name: str) -> None:
        from metaworld.policies import ENV_POLICY_MAP

        # The package's policies warn on every construction that their gains saturate.
        warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high")
        self.name = name
        self._policy = ENV_POLICY_MAP[name]()

    def reset(self) -> None:
        """The package's policies are stateless; nothing to clear."""

    def __call__(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        action = self._policy.get_action(info["privileged"]["obs"])
        return np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
