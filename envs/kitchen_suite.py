"""Franka Kitchen (gymnasium-robotics ``FrankaKitchen-v1``) under the vw_robot env contract.

Needs the optional extra: ``pip install -e ".[kitchen]"`` (gymnasium-robotics 1.4.x). This module
imports it only when an env is built, so the task list and the rest of vw_robot work without it.

Tasks: one per upstream subtask (``kitchen/microwave``, ``kitchen/kettle``,
``kitchen/light-switch``, ``kitchen/slide-cabinet``, ``kitchen/hinge-cabinet``,
``kitchen/bottom-burner``, ``kitchen/top-burner``), and ``kitchen/d4rl-4``: microwave, kettle,
light switch and slide cabinet in one episode, D4RL style (a subtask counts once done, as
upstream's ``remove_task_when_completed``; ``info["completed"]`` lists the done ones,
``info["subtask"]`` names the next one in that order; success = all four).

What is upstream's and unchanged: the MuJoCo model (plus one wrist camera, added with
``MjSpec``: nothing else differs), the 9-D joint-velocity action in [-1, 1] at 12.5 Hz
(``FrankaRobot.step``, observation noise included), and the success check
(``KitchenEnv.compute_reward``: a subtask is done when its joints are within 0.3 of the goal,
``info["step_task_completions"]``). What is ours: each episode's seed moves the arm's start
pose (each arm joint within +-``ARM_START_RANGE`` rad of upstream's) and the kettle
(+-``KETTLE_START_RANGE`` m on the counter), and seeds upstream's observation noise; and the
renderer (fast visuals, an offscreen buffer the size of the image: upstream's 8x multisampled
2560x1920 buffer with four shadow-casting lights costs 0.7-2.1 s per frame on a CPU).
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import Any

import mujoco
import numpy as np

from vw_robot.envs.base import SimEnv
from vw_robot.envs.instructions import task_instruction
from vw_robot.envs.rendering import FreeCamera
from vw_robot.errors import UserError

EXTRA_HINT = 'pip install -e ".[kitchen]"'
# Registry task name -> upstream task name (KitchenEnv's OBS_ELEMENT_GOALS keys).
SUBTASKS = {
    "microwave": "microwave",
    "kettle": "kettle",
    "light-switch": "light switch",
    "slide-cabinet": "slide cabinet",
    "hinge-cabinet": "hinge cabinet",
    "bottom-burner": "bottom burner",
    "top-burner": "top burner",
}
# Episodes of several subtasks, in the order an expert does them.
SEQUENCES = {"d4rl-4": ("microwave", "kettle", "light switch", "slide cabinet")}
TASK_NAMES = (*SUBTASKS, *SEQUENCES)
_REGISTRY_NAME = {upstream: name for name, upstream in SUBTASKS.items()}

CAMERAS = ("static", "wrist", "left_cap", "right_cap")
# Ours: the model's two cameras (left_cap, right_cap) look from far behind the robot.
FREE_CAMERAS = {
    # The whole kitchen (microwave, kettle, knobs, light switch, both cabinets) and the arm,
    # from behind the robot, 25 degrees down.
    "static": FreeCamera(lookat=(-0.3, 0.5, 2.1), distance=2.0, azimuth=90.0, elevation=-25.0),
}
WRIST_CAMERA = "wrist"
STATE_DIM = 9  # 7 arm joints + 2 finger joints (upstream's observation, with its noise)
ACTION_DIM = 9  # joint velocities in [-1, 1] (upstream scales them to +-2 rad/s)
CONTROL_HZ = 12.5

# Start randomization per episode seed (ours; upstream's start is fixed).
ARM_START_RANGE = 0.05  # rad, each of the 7 arm joints
KETTLE_START_RANGE = 0.02  # m, the kettle's x and y on the counter
ARM_JOINTS = 7
_KETTLE_QPOS = slice(23, 25)  # the kettle free joint's x, y


def subtask_names(name: str) -> tuple[str, ...]:
    """A sequence's subtasks as task names (``d4rl-4`` -> microwave, kettle, ...); () for a
    subtask."""
    return tuple(_REGISTRY_NAME[s] for s in SEQUENCES.get(name, ()))


def default_max_episode_steps(name: str) -> int:
    """Time limit: 200 steps (16 s) for one subtask; 360 for the 4-subtask episode (upstream's
    default is 280: the scripted expert needs ~270 with its retreats between subtasks;
    ``make_env(..., max_episode_steps=280)`` gives upstream's)."""
    return 360 if name in SEQUENCES else 200


def _upstream() -> Any:
    """gymnasium_robotics' kitchen module, or a one-line error naming the extra."""
    try:
        # Heavy optional dependency (the kitchen extra): imported only when an env is built.
        # Its package __init__ prints a notice about its Adroit envs to stderr; not ours.
        with contextlib.redirect_stderr(io.StringIO()):
            from gymnasium_robotics.envs.franka_kitchen import kitchen_env
    except ImportError as error:
        raise UserError(f"kitchen tasks need gymnasium-robotics: {EXTRA_HINT} ({error}).") from None
    return kitchen_env


def build_model(image_size: int) -> mujoco.MjModel:
    """Upstream's kitchen model with a wrist camera and an offscreen buffer of ``image_size``.

    The camera is on the last link, behind the fingers and looking along them; a camera has no
    mass or contacts, so the physics are upstream's to the bit.
    """
    kitchen_env = _upstream()
    xml = os.path.join(
        os.path.dirname(kitchen_env.__file__),
        "../assets/kitchen_franka/kitchen_assets/kitchen_env_model.xml",
    )
    spec = mujoco.MjSpec.from_file(os.path.normpath(xml))
    camera = spec.body("panda0_link7").add_camera()
    camera.name = WRIST_CAMERA
    # In link7's frame the fingers point along +z, and the hand's "up" (the end-effector
    # site's x axis, world-up at the start pose) is at -45 deg about z: the camera sits 6 cm
    # that way, at the hand (15 cm behind the finger tips), looking along the fingers, tilted 15 deg
    # towards them, image up = the hand's up, so both fingers show at the bottom.
    up = np.array([np.cos(-np.pi / 4), np.sin(-np.pi / 4), 0.0])
    camera.pos = list(0.06 * up + np.array([0.0, 0.0, 0.10]))
    camera.quat = list(_wrist_quat(up))
    camera.fovy = 75.0
    model = spec.compile()
    # The offscreen buffer only needs the image: upstream's 2560x1920 with 8x multisampling
    # is most of a frame's cost (FastRenderer turns off shadows, multisampling, reflections).
    model.vis.global_.offwidth = image_size
    model.vis.global_.offheight = image_size
    model.vis.quality.shadowsize = 0
    return model


def _wrist_quat(side: np.ndarray) -> np.ndarray:
    """Orientation of the wrist camera in link7's frame: looking along +z (the fingers), tilted
    15 degrees towards the finger axis from its place at ``side``, image up along ``side``."""
    tilt = np.radians(15.0)
    forward = np.array([0.0, 0.0, 1.0]) * np.cos(tilt) - side * np.sin(tilt)
    up = side * np.cos(tilt) + np.array([0.0, 0.0, 1.0]) * np.sin(tilt)
    z_axis = -forward  # a camera looks along -z
    y_axis = up - np.dot(up, z_axis) * z_axis
    y_axis /= np.linalg.norm(y_axis)
    x_axis = np.cross(y_axis, z_axis)
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.column_stack([x_axis, y_axis, z_axis]).ravel())
    return quat


# Sites and joints the scripted experts read (info["privileged"]).
EXPERT_SITES = (
    "end_effector",
    "microhandle_site",
    "slide_site",
    "light_site",
    "kettle_site",
    "hinge_site1",
    "hinge_site2",
    "knob1_site",
    "knob2_site",
    "knob3_site",
    "knob4_site",
)
EXPERT_JOINTS = (
    "microwave",
    "slide_cabinet",
    "light_switch",
    "right_hinge_cabinet",
    "left_hinge_cabinet",
    "knob_Joint_2",
    "knob_Joint_4",
)


class KitchenEnv(SimEnv):
    """One Franka Kitchen task: a subtask, or the D4RL 4-subtask episode.

    Args:
        name: one of :data:`TASK_NAMES` (e.g. ``"microwave"``, ``"d4rl-4"``).
        image_size: camera image side in pixels.
        camera: one of :data:`CAMERAS`, or several joined by ``+`` (``"static+wrist"``).
        max_episode_steps: informational; the registry's ``TimeLimit`` enforces it.
        render_mode: ``None`` or ``"rgb_array"``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 12}

    def __init__(
        self,
        name: str,
        *,
        image_size: int = 64,
        camera: str = CAMERAS[0],
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        if name not in TASK_NAMES:
            raise UserError(f"unknown kitchen task {name!r}; known: {', '.join(TASK_NAMES)}.")
        super().__init__(
            f"kitchen/{name}",
            image_size=image_size,
            camera=camera,
            state_dim=STATE_DIM,
            action_dim=ACTION_DIM,
            render_mode=render_mode,
            free_cameras=FREE_CAMERAS,
        )
        kitchen_env = _upstream()
        self.name = name
        self.max_episode_steps = max_episode_steps
        self.subtasks: tuple[str, ...] = SEQUENCES.get(name, (SUBTASKS.get(name, ""),))
        self._sequence = name in SEQUENCES
        self._env = kitchen_env.KitchenEnv(
            tasks_to_complete=list(self.subtasks),
            terminate_on_tasks_completed=False,
            # One subtask: its flag says whether it is done now (as the other suites' do). A
            # sequence: a subtask counts once done, as in D4RL.
            remove_task_when_completed=self._sequence,
        )
        self._use_model(build_model(self.image_size))
        self._upstream_info: dict[str, Any] = {}
        self._robot_obs = np.zeros(18)
        self._arm_start = np.asarray(self._env.robot_env.init_qpos, dtype=np.float64).copy()

    def _use_model(self, model: mujoco.MjModel) -> None:
        """Point upstream's env at ``model`` (upstream's own plus the wrist camera)."""
        from gymnasium_robotics.utils.mujoco_utils import MujocoModelNames

        robot = self._env.robot_env
        data = mujoco.MjData(model)
        robot.model, robot.data = model, data
        self._env.model, self._env.data = model, data
        robot.model_names = MujocoModelNames(model)
        robot.init_qvel = np.zeros(model.nv)  # upstream's is a view of the replaced data
        self._model, self._data = model, data
        self._site_ids = {s: model.site(s).id for s in EXPERT_SITES}
        self._joint_ids = {j: model.joint(j).id for j in EXPERT_JOINTS}
        self._ee_site = self._site_ids["end_effector"]

    @property
    def mj_model(self) -> mujoco.MjModel:
        return self._model

    @property
    def mj_data(self) -> mujoco.MjData:
        return self._data

    def _sim_reset(self, sim_seed: int) -> None:
        env, robot = self._env, self._env.robot_env
        # Upstream's reset: fixed start, and its observation noise generator seeded.
        env.reset(seed=sim_seed)
        rng = np.random.default_rng([sim_seed, 1])  # the start pose: our own stream
        qpos = np.asarray(robot.init_qpos, dtype=np.float64).copy()
        qpos[:ARM_JOINTS] += rng.uniform(-ARM_START_RANGE, ARM_START_RANGE, ARM_JOINTS)
        qpos[_KETTLE_QPOS] += rng.uniform(-KETTLE_START_RANGE, KETTLE_START_RANGE, 2)
        robot.set_state(qpos, np.zeros(self._model.nv))
        # Upstream's velocity action integrates from the last observed joint positions: take
        # them from the moved start (this also draws upstream's first observation noise).
        self._robot_obs = robot._get_obs()
        env._get_obs(self._robot_obs)
        self._upstream_info = {"step_task_completions": [], "episode_task_completions": []}

    def _sim_step(self, action: np.ndarray) -> float:
        obs, reward, _, _, info = self._env.step(action)
        self._robot_obs = obs["observation"][:18]
        self._upstream_info = info
        return float(reward)

    def completed(self) -> list[str]:
        """Upstream names of the subtasks done: in the sequence, those done so far; for one
        subtask, whether it is done now."""
        if self._sequence:
            return list(self._upstream_info.get("episode_task_completions", []))
        return list(self._upstream_info.get("step_task_completions", []))

    def _sim_success(self) -> bool:
        return len(self.completed()) == len(self.subtasks)

    def _sim_proprio(self) -> np.ndarray:
        return self._robot_obs[:STATE_DIM]

    def _sim_privileged(self) -> dict[str, np.ndarray]:
        model, data = self._model, self._data
        jac = np.zeros((6, model.nv))
        mujoco.mj_jacSite(model, data, jac[:3], jac[3:], self._ee_site)
        privileged = {
            "qpos": data.qpos.copy(),
            "qvel": data.qvel.copy(),
            # What upstream integrates the velocity action from (the noisy observation).
            "robot_qpos_obs": np.array(self._env.robot_env._last_robot_qpos, copy=True),
            "qfrc_bias": data.qfrc_bias[:ACTION_DIM].copy(),
            "ee_jacobian": jac[:, :ACTION_DIM],  # (6, 9): position rows, then rotation rows
            "ee_xmat": data.site_xmat[self._ee_site].reshape(3, 3).copy(),
            "dt": np.array(self._env.robot_env.dt),
        }
        for site, i in self._site_ids.items():
            privileged[f"site:{site}"] = data.site_xpos[i].copy()
        for joint, i in self._joint_ids.items():
            privileged[f"joint:{joint}"] = np.array(
                [data.qpos[model.jnt_qposadr[i]], *data.xanchor[i], *data.xaxis[i]]
            )  # (7,): value, anchor xyz, axis xyz
        return privileged

    def _info(self) -> dict[str, Any]:
        info = super()._info()
        done = self.completed()
        info["completed"] = len(done) if self._sequence else int(bool(done))
        if self._sequence:
            info["completed_subtasks"] = done
            remaining = [s for s in self.subtasks if s not in done]
            info["subtask"] = remaining[0] if remaining else ""
            if remaining:
                # The current subtask's task id and instruction: a policy trained on the
                # subtasks is told each in turn, as CALVIN's policies are.
                info["subtask_task_id"] = f"kitchen/{_REGISTRY_NAME[remaining[0]]}"
                info["instruction"] = task_instruction(info["subtask_task_id"])
        else:
            info["subtask"] = self.subtasks[0]
        return info

    def close(self) -> None:
        super().close()
        self._env.close()
