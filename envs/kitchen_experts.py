"""Scripted experts for the Franka Kitchen tasks (:mod:`vw_robot.envs.kitchen_suite`).

Each subtask is a short script of end-effector targets (position, orientation, gripper) taken
from the target sites and joint axes in ``info["privileged"]``: reach a pre-grasp pose, grasp
or touch the handle, then follow the handle along its joint's path (an arc about a hinge, a
line along a slide) until the joint is past its goal. Targets become joint velocities by
differential inverse kinematics (damped least squares on the end-effector Jacobian, a pull
towards upstream's start posture in the null space), plus a feed-forward of gravity and joint
damping: upstream's action moves a position actuator's set point, which sags under gravity
(with zero actions the arm drifts ~0.6 rad in 4 s) and lags behind a moving set point.

``kitchen/d4rl-4`` chains the microwave, kettle, light switch and slide cabinet scripts with a
retreat between them. Only numpy and mujoco are imported.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import mujoco
import numpy as np

from vw_robot.envs.kitchen_suite import SEQUENCES, SUBTASKS

# Upstream's actuators and joints (franka_assets/actuator.xml, chain.xml): position gains and
# joint damping of the 7 arm joints, and its action scale (action 1 = 2 rad/s).
_KP = np.array([870.0, 870.0, 870.0, 870.0, 120.0, 120.0, 120.0])
_DAMPING = np.array([100.0, 100.0, 100.0, 100.0, 10.0, 10.0, 10.0])
_ACTION_SCALE = 2.0
# Upstream's start posture (KitchenEnv.init_qpos): the null-space pull keeps the elbow there.
_NOMINAL = np.array([0.148, -1.768, 1.844, -2.477, 0.260, 0.713, 1.595])

OPEN, CLOSE = 1.0, -1.0

Priv = dict[str, np.ndarray]
# A script yields (position, rotation matrix, gripper, top speed in m/s) targets and receives
# the next state.
Target = tuple[np.ndarray, np.ndarray, float, float]
Script = Generator[Target, Priv, None]


def rot_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# The end-effector site's frame: z along the fingers, y the fingers' closing axis. Level:
# fingers pointing forward (+y, at the kitchen), closing along x, site x up.
LEVEL = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])


def pitched(down: float) -> np.ndarray:
    """The level orientation with the fingers pitched ``down`` radians below horizontal."""
    return rot_x(-down) @ LEVEL


def rotvec(rot: np.ndarray) -> np.ndarray:
    """Axis-angle vector of a rotation matrix."""
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(rot).ravel())
    vel = np.zeros(3)
    mujoco.mju_quat2Vel(vel, quat, 1.0)
    return vel


def joint_point(priv: Priv, joint: str, point: np.ndarray, delta: float) -> np.ndarray:
    """Where ``point`` (moving with ``joint``) is after the joint moves ``delta`` more: rotated
    about a hinge's axis, or shifted along a slide's (``kind`` from the joint's name)."""
    value = priv[f"joint:{joint}"]
    anchor, axis = value[1:4], value[4:7]
    if joint in _SLIDES:
        return point + delta * axis
    rel = point - anchor
    # Rodrigues' rotation of rel about axis by delta.
    rotated = (
        rel * np.cos(delta)
        + np.cross(axis, rel) * np.sin(delta)
        + axis * np.dot(axis, rel) * (1 - np.cos(delta))
    )
    return anchor + rotated


_SLIDES = frozenset({"slide_cabinet"})


class Controller:
    """End-effector targets -> upstream's 9-D joint-velocity action."""

    def __init__(
        self,
        pos_gain: float = 5.0,
        rot_gain: float = 3.0,
        max_speed: float = 0.35,
        max_turn: float = 1.2,
        null_gain: float = 0.5,
        damping: float = 0.05,
    ) -> None:
        self.pos_gain, self.rot_gain = pos_gain, rot_gain
        self.max_speed, self.max_turn = max_speed, max_turn
        self.null_gain, self.damping = null_gain, damping

    def __call__(
        self, priv: Priv, pos: np.ndarray, rot: np.ndarray, grip: float, speed: float = 0.0
    ) -> np.ndarray:
        """The action towards one target; ``speed`` caps the hand's speed (0: the default)."""
        q = priv["qpos"][:7]
        dt = float(priv["dt"])
        ee_pos = priv["site:end_effector"]
        ee_rot = priv["ee_xmat"]
        vel = self.pos_gain * (np.asarray(pos) - ee_pos)
        top = speed or self.max_speed
        norm = np.linalg.norm(vel)
        if norm > top:
            vel *= top / norm
        turn = self.rot_gain * rotvec(np.asarray(rot) @ ee_rot.T)
        rate = np.linalg.norm(turn)
        if rate > self.max_turn:
            turn *= self.max_turn / rate
        jac = priv["ee_jacobian"][:, :7]  # (6, 7)
        twist = np.concatenate([vel, turn])
        jjt = jac @ jac.T + self.damping**2 * np.eye(6)
        qdot = jac.T @ np.linalg.solve(jjt, twist)
        # Null space: drift towards the start posture without moving the hand.
        pinv = jac.T @ np.linalg.solve(jjt, np.eye(6))
        qdot += (np.eye(7) - pinv @ jac) @ (self.null_gain * (_NOMINAL - q))
        # Set point = where the joints should be after this step, plus what the actuator needs
        # to hold them against gravity (qfrc_bias / kp) and to move them against the joint
        # damping (damping * qdot / kp).
        set_point = q + qdot * dt + (priv["qfrc_bias"][:7] + _DAMPING * qdot) / _KP
        action = np.empty(9)
        action[:7] = (set_point - priv["robot_qpos_obs"][:7]) / (_ACTION_SCALE * dt)
        action[7:] = grip
        return np.clip(action, -1.0, 1.0).astype(np.float32)


def _error(priv: Priv, pos: np.ndarray, rot: np.ndarray | None) -> tuple[float, float]:
    dist = float(np.linalg.norm(np.asarray(pos) - priv["site:end_effector"]))
    angle = 0.0 if rot is None else float(np.linalg.norm(rotvec(rot @ priv["ee_xmat"].T)))
    return dist, angle


# A move ends early when the hand moved less than this over that many steps.
_STALL_STEPS = 6
_STALL_DISTANCE = 0.004


def move(
    priv: Priv,
    target: Callable[[Priv], np.ndarray],
    rot: Callable[[Priv], np.ndarray] | np.ndarray,
    grip: float,
    *,
    tol: float = 0.015,
    rot_tol: float = 0.08,
    max_steps: int = 60,
    done: Callable[[Priv], bool] | None = None,
    speed: float = 0.0,
) -> Generator[Target, Priv, Priv]:
    """Yield one target until the hand is within ``tol`` m and ``rot_tol`` rad of it (or
    ``done`` says so, or ``max_steps`` pass, or the hand has stopped short: pressed against
    what it reaches for); return the last state."""
    trail: list[np.ndarray] = []
    for _ in range(max_steps):
        pos = target(priv)
        orient = rot(priv) if callable(rot) else rot
        if done is not None:
            if done(priv):
                break
        else:
            dist, angle = _error(priv, pos, orient)
            if dist < tol and angle < rot_tol:
                break
        trail.append(priv["site:end_effector"].copy())
        if len(trail) > _STALL_STEPS and (
            np.linalg.norm(trail[-1] - trail[-1 - _STALL_STEPS]) < _STALL_DISTANCE
        ):
            break
        priv = yield pos, orient, grip, speed
    return priv


def hold(
    priv: Priv, pos: np.ndarray, rot: np.ndarray, grip: float, steps: int
) -> Generator[Target, Priv, Priv]:
    """Yield one fixed target for ``steps`` steps (to close or open the gripper)."""
    for _ in range(steps):
        priv = yield pos, rot, grip, 0.0
    return priv


def joint_value(priv: Priv, joint: str) -> float:
    return float(priv[f"joint:{joint}"][0])


def _const(value: np.ndarray) -> Callable[[Priv], np.ndarray]:
    value = np.asarray(value, dtype=np.float64)
    return lambda _priv: value


def retreat(priv: Priv, back: float = 0.12) -> Script:
    """Open the hand and back away from what it held (towards the robot, -y)."""
    here = priv["site:end_effector"].copy()
    rot = priv["ee_xmat"].copy()
    priv = yield from hold(priv, here, rot, OPEN, 4)
    away = here + np.array([0.0, -back, 0.05])
    priv = yield from move(priv, _const(away), rot, OPEN, tol=0.03, rot_tol=0.5, max_steps=30)
    return priv


# ----------------------------------------------------------------------------- subtasks


def microwave(priv: Priv) -> Script:
    """Grasp the microwave handle from the front, the hand pitched 30 degrees down (level, the
    arm cannot reach it), and pull it along the door's arc."""
    rot0 = pitched(np.radians(30.0))
    approach = rot0[:, 2]  # the fingers' direction

    def handle(p: Priv) -> np.ndarray:
        return p["site:microhandle_site"]

    pre = lambda p: handle(p) - 0.10 * approach + np.array([0.0, 0.0, 0.0])  # noqa: E731
    priv = yield from move(priv, pre, rot0, OPEN, tol=0.02, max_steps=60)
    at = lambda p: handle(p) + 0.01 * approach  # noqa: E731
    priv = yield from move(priv, at, rot0, OPEN, tol=0.012, max_steps=40)
    priv = yield from hold(priv, at(priv), rot0, CLOSE, 6)

    def door_rot(p: Priv) -> np.ndarray:
        return rot_z(joint_value(p, "microwave")) @ rot0

    def ahead(p: Priv) -> np.ndarray:
        return joint_point(p, "microwave", at(p), -0.25)

    priv = yield from move(
        priv,
        ahead,
        door_rot,
        CLOSE,
        max_steps=80,
        done=lambda p: joint_value(p, "microwave") < -0.7,
    )
    priv = yield from retreat(priv)
    return priv


def slide_cabinet(priv: Priv) -> Script:
    """Put the closed hand on the left of the slide door's handle and push it right."""
    rot0 = LEVEL

    def handle(p: Priv) -> np.ndarray:
        return p["site:slide_site"]

    left = np.array([-0.07, -0.02, 0.0])
    pre = lambda p: handle(p) + left + np.array([0.0, -0.10, 0.0])  # noqa: E731
    priv = yield from move(priv, pre, rot0, CLOSE, tol=0.02, max_steps=60)
    at = lambda p: handle(p) + left  # noqa: E731
    priv = yield from move(priv, at, rot0, CLOSE, tol=0.012, max_steps=40)
    push = lambda p: handle(p) + left + np.array([0.12, 0.0, 0.0])  # noqa: E731
    priv = yield from move(
        priv,
        push,
        rot0,
        CLOSE,
        max_steps=60,
        done=lambda p: joint_value(p, "slide_cabinet") > 0.3,
    )
    priv = yield from retreat(priv)
    return priv


def light_switch(priv: Priv) -> Script:
    """Put the closed hand on the right of the switch's lever and push it left."""
    rot0 = LEVEL

    def lever(p: Priv) -> np.ndarray:
        return p["site:light_site"]

    right = np.array([0.05, 0.0, 0.0])
    pre = lambda p: lever(p) + right + np.array([0.0, -0.10, 0.0])  # noqa: E731
    priv = yield from move(priv, pre, rot0, CLOSE, tol=0.02, max_steps=60)
    at = lambda p: lever(p) + right + np.array([0.0, 0.01, 0.0])  # noqa: E731
    priv = yield from move(priv, at, rot0, CLOSE, tol=0.012, max_steps=40)
    push = lambda p: lever(p) + np.array([-0.10, 0.0, 0.0])  # noqa: E731
    priv = yield from move(
        priv,
        push,
        rot0,
        CLOSE,
        max_steps=60,
        done=lambda p: joint_value(p, "light_switch") < -0.6,
    )
    priv = yield from retreat(priv)
    return priv


def hinge_cabinet(priv: Priv) -> Script:
    """Grasp the right door's handle and pull it open along its arc, turning the hand with it."""
    rot0 = LEVEL

    def handle(p: Priv) -> np.ndarray:
        return p["site:hinge_site2"]

    pre = lambda p: handle(p) + np.array([0.0, -0.10, 0.0])  # noqa: E731
    priv = yield from move(priv, pre, rot0, OPEN, tol=0.02, max_steps=60)
    at = lambda p: handle(p) + np.array([0.0, 0.01, 0.0])  # noqa: E731
    priv = yield from move(priv, at, rot0, OPEN, tol=0.012, max_steps=40)
    priv = yield from hold(priv, at(priv), rot0, CLOSE, 6)

    def door_rot(p: Priv) -> np.ndarray:
        return rot_z(joint_value(p, "right_hinge_cabinet")) @ rot0

    def ahead(p: Priv) -> np.ndarray:
        return joint_point(p, "right_hinge_cabinet", at(p), 0.3)

    priv = yield from move(
        priv,
        ahead,
        door_rot,
        CLOSE,
        max_steps=120,
        done=lambda p: joint_value(p, "right_hinge_cabinet") > 1.35,
    )
    priv = yield from retreat(priv)
    return priv


def _burner(knob_site: str, joint: str) -> Callable[[Priv], Script]:
    def script(priv: Priv) -> Script:
        """Grasp the oven knob from the front and turn it by turning the hand about the
        fingers' axis."""
        rot0 = LEVEL

        def knob(p: Priv) -> np.ndarray:
            return p[f"site:{knob_site}"]

        # Lined up to within 8 mm first: off by 2 cm, a finger lands on the knob's face and
        # the hand slides off sideways.
        pre = lambda p: knob(p) + np.array([0.0, -0.10, 0.0])  # noqa: E731
        priv = yield from move(priv, pre, rot0, OPEN, tol=0.008, rot_tol=0.05, max_steps=60)
        at = lambda p: knob(p) + np.array([0.0, 0.02, 0.0])  # noqa: E731
        priv = yield from move(priv, at, rot0, OPEN, tol=0.01, max_steps=40, speed=0.15)
        grasp = at(priv)
        priv = yield from hold(priv, grasp, rot0, CLOSE, 6)
        # The knob turns about -y; its value goes negative as the hand turns about +y.
        turn = lambda p: rot_y(-joint_value(p, joint) + 0.5) @ rot0  # noqa: E731
        priv = yield from move(
            priv,
            _const(grasp),
            turn,
            CLOSE,
            max_steps=60,
            done=lambda p: joint_value(p, joint) < -1.0,
        )
        priv = yield from retreat(priv)
        return priv

    return script


KETTLE_PITCH = 50.0  # degrees


def kettle(priv: Priv) -> Script:
    """Grasp the kettle's handle (a bar along x on top) from above and in front, the fingers
    pitched 50 degrees down and closing across the bar, lift it, carry it to the top left
    burner and set it down. (Straight down, the wrist hits the oven's knobs over the goal.)"""
    rot0 = pitched(np.radians(KETTLE_PITCH)) @ rot_z(np.pi / 2)  # closing axis across the bar
    approach = rot0[:, 2]

    def handle(p: Priv) -> np.ndarray:
        return p["site:kettle_site"]

    pre = lambda p: handle(p) - 0.12 * approach  # noqa: E731
    priv = yield from move(priv, pre, rot0, OPEN, tol=0.02, max_steps=60)
    # The handle's bar is 6.4 cm thick; the finger pads reach 1-4 cm past the site.
    at = lambda p: handle(p) - 0.005 * approach  # noqa: E731
    priv = yield from move(priv, at, rot0, OPEN, tol=0.012, max_steps=40)
    grasp = at(priv)
    priv = yield from hold(priv, grasp, rot0, CLOSE, 8)
    lift = grasp + np.array([0.0, 0.0, 0.12])
    priv = yield from move(priv, _const(lift), rot0, CLOSE, tol=0.02, max_steps=40, speed=0.15)
    # Goal of the kettle's body (upstream's OBS_ELEMENT_GOALS) minus where it is now.
    goal = np.array([-0.23, 0.75, 1.62])
    shift = goal - priv["qpos"][23:26]
    over = priv["site:end_effector"] + np.array([shift[0], shift[1], 0.0])
    priv = yield from move(priv, _const(over), rot0, CLOSE, tol=0.02, max_steps=80, speed=0.2)
    down = over + np.array([0.0, 0.0, shift[2] + 0.01])
    priv = yield from move(priv, _const(down), rot0, CLOSE, tol=0.015, max_steps=40, speed=0.15)
    priv = yield from hold(priv, down, rot0, OPEN, 6)
    back = down - 0.12 * approach  # out of the handle the way the fingers came in
    priv = yield from move(priv, _const(back), rot0, OPEN, tol=0.03, max_steps=30)
    return priv


SCRIPTS: dict[str, Callable[[Priv], Script]] = {
    "microwave": microwave,
    "kettle": kettle,
    "light switch": light_switch,
    "slide cabinet": slide_cabinet,
    "hinge cabinet": hinge_cabinet,
    "bottom burner": _burner("knob2_site", "knob_Joint_2"),
    "top burner": _burner("knob4_site", "knob_Joint_4"),
}


def _sequence(subtasks: tuple[str, ...]) -> Callable[[Priv], Script]:
    def script(priv: Priv) -> Script:
        for subtask in subtasks:
            priv = yield from SCRIPTS[subtask](priv)
        return priv

    return script


class KitchenExpert:
    """Scripted expert for a kitchen task: ``expert(obs, info)`` -> 9-D action in [-1, 1].

    Args:
        name: a task name of :data:`vw_robot.envs.kitchen_suite.TASK_NAMES`.
    """

    def __init__(self, name: str, subtasks: tuple[str, ...] | None = None) -> None:
        self.name = name
        self.subtasks = subtasks or SEQUENCES.get(name) or (SUBTASKS[name],)
        self._controller = Controller()
        self._script: Script | None = None
        self._last: Target | None = None

    def reset(self) -> None:
        self._script = None
        self._last = None

    def __call__(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        priv = info["privileged"]
        try:
            if self._script is None:
                self._script = _sequence(self.subtasks)(priv)
                self._last = next(self._script)
            else:
                self._last = self._script.send(priv)
        except StopIteration:
            pass  # the script is over: hold the last target
        if self._last is None:
            return np.zeros(9, dtype=np.float32)
        return self._controller(priv, *self._last)
