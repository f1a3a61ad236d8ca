"""Scripted experts for every playground subtask, from privileged state.

Each expert is a plan written as a generator: it yields an action, receives the next
:class:`~vw_robot.envs.playground_scene.SceneState`, and re-reads object poses every step, so
it follows a block that slides or a drawer that is further out than predicted. A plan that ends
without success starts over from the current state (a retry); once ``info["is_success"]`` is
true the expert holds still. Every plan starts by releasing and rising from wherever the
previous subtask of a chain left the gripper, unless it needs the block it holds.

The arm is steered through its servo set-point: an action moves the set-point towards a target
by at most ``MAX_STEP`` per step, and the plan waits for the grip point to arrive.

:func:`sample_random_start` uses the experts to reset a subtask from where another one leaves
the scene (``start="random"`` of the single-subtask envs).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import numpy as np

from vw_robot.envs import playground_scene as ps
from vw_robot.envs import playground_tasks as pt
from vw_robot.envs.playground_scene import BLOCK_HALF, SceneState
from vw_robot.errors import UserError

OPEN, CLOSED = -1.0, 1.0
PUSHER = 0.7  # fingers 1.2 cm apart: two contacts on a block face, narrower than the block
SAFE_Z = 0.2  # clears the chest, the button, the switch and blocks (carried ones too)
SHELF_Z = 0.3  # clears blocks standing on the shelf while carrying one
_RELEASE_STEPS = 4
_CLOSE_STEPS = 6

Plan = Generator[np.ndarray, SceneState, SceneState]
Target = np.ndarray | Callable[[SceneState], np.ndarray]


def _steer(s: SceneState, target: np.ndarray, gripper: float, speed: float = 1.0) -> np.ndarray:
    """Action that moves the set-point towards ``target`` at up to ``speed`` * MAX_STEP."""
    delta = np.clip((np.asarray(target) - s.setpoint) / ps.MAX_STEP, -speed, speed)
    return np.array([*delta, gripper], dtype=np.float32)


def _go(
    s: SceneState,
    target: Target,
    gripper: float,
    *,
    tol: float = 0.006,
    speed: float = 1.0,
    max_steps: int = 60,
) -> Plan:
    """Steer until the grip point is within ``tol`` of ``target`` (re-evaluated each step)."""
    for _ in range(max_steps):
        goal = target(s) if callable(target) else target
        if np.max(np.abs(goal - s.grip)) < tol:
            break
        s = yield _steer(s, goal, gripper, speed)
    return s


def _wait(s: SceneState, gripper: float, steps: int) -> Plan:
    """Hold the set-point for ``steps`` steps while the gripper moves."""
    hold = s.setpoint.copy()
    for _ in range(steps):
        s = yield _steer(s, hold, gripper)
    return s


def _rise(s: SceneState, z: float, gripper: float) -> Plan:
    """Straight up (or down) to height ``z`` above the current grip point."""
    return (yield from _go(s, np.array([*s.grip[:2], z]), gripper))


def _retreat(s: SceneState, z: float = SAFE_Z) -> Plan:
    """Open the gripper and rise clear of whatever the fingers are around (from wherever the
    previous subtask of a chain left them): to ``z``, and at least 6 cm up."""
    if s.gap < 2 * ps.FINGER_OPEN - 0.01:
        s = yield from _wait(s, OPEN, _RELEASE_STEPS)
    if s.grip[2] < SHELF_Z:
        s = yield from _rise(s, min(max(z, s.grip[2] + 0.06), ps.WORKSPACE_HIGH[2]), OPEN)
    return s


def _approach(s: SceneState, target: Target, gripper: float, *, z: float = SAFE_Z) -> Plan:
    """Travel at height ``z`` (or higher) to above ``target``, then descend onto it.

    A straight line from anywhere to anywhere would sweep the fingers through the chest or the
    cabinet; travelling high and descending vertically does not.
    """

    def at(height: float) -> Callable[[SceneState], np.ndarray]:
        def where(s: SceneState) -> np.ndarray:
            goal = target(s) if callable(target) else target
            return np.array([goal[0], goal[1], height])

        return where

    height = max(z, float(s.grip[2]))
    if s.grip[2] < z - 0.01:
        s = yield from _rise(s, z, gripper)
    s = yield from _go(s, at(height), gripper, tol=0.01)
    return (yield from _go(s, target, gripper))


# --------------------------------------------------------------------------- articulated parts
def _handle(s: SceneState) -> np.ndarray:
    return ps.DRAWER_HANDLE + np.array([0.0, -s.drawer, 0.0])


def open_drawer(s: SceneState) -> Plan:
    s = yield from _retreat(s)
    s = yield from _approach(s, lambda s: _handle(s) + [0, 0, 0.05], OPEN)
    s = yield from _go(s, _handle, OPEN, tol=0.004)
    s = yield from _wait(s, CLOSED, _CLOSE_STEPS)
    pulled = ps.DRAWER_HANDLE + np.array([0.0, -0.19, 0.0])
    s = yield from _go(s, pulled, CLOSED, speed=0.6, tol=0.01, max_steps=50)
    s = yield from _wait(s, OPEN, _RELEASE_STEPS)
    return (yield from _rise(s, SAFE_Z, OPEN))


def close_drawer(s: SceneState) -> Plan:
    s = yield from _retreat(s)
    s = yield from _approach(s, lambda s: _handle(s) + [0, -0.05, 0.0], CLOSED)
    pushed = ps.DRAWER_HANDLE + np.array([0.0, -0.012, 0.0])
    s = yield from _go(s, pushed, CLOSED, speed=0.6, tol=0.008, max_steps=50)
    s = yield from _go(s, s.grip + [0, -0.03, 0], CLOSED, max_steps=10)
    return (yield from _rise(s, SAFE_Z, CLOSED))


def _slide(
    s: SceneState,
    knob: Callable[[SceneState], np.ndarray],
    side: float,
    end: np.ndarray,
    half: float,
) -> Plan:
    """Push a knob sideways with the closed fingers: start on ``side`` of it, push to ``end``."""
    offset = side * (half + 0.013 + 0.015)
    s = yield from _retreat(s)
    s = yield from _approach(s, lambda s: knob(s) + [offset, 0, 0.03], CLOSED)
    s = yield from _go(s, lambda s: knob(s) + [offset, 0, 0], CLOSED, tol=0.005)
    contact = end + np.array([side * (half + 0.013), 0.0, 0.0])
    s = yield from _go(s, contact, CLOSED, speed=0.6, tol=0.006, max_steps=50)
    s = yield from _go(s, s.grip + [side * 0.02, 0, 0], CLOSED, max_steps=8)
    return (yield from _rise(s, SAFE_Z, CLOSED))


def _slider_knob(s: SceneState) -> np.ndarray:
    return np.array([ps.SLIDER_X0 + s.slider, *ps.SLIDER_KNOB_YZ])


def _switch_knob(s: SceneState) -> np.ndarray:
    return np.array([ps.SWITCH_X0 + s.switch, *ps.SWITCH_YZ])


def move_slider_left(s: SceneState) -> Plan:
    end = np.array([ps.SLIDER_X0 + 0.015, *ps.SLIDER_KNOB_YZ])
    return (yield from _slide(s, _slider_knob, +1.0, end, ps.SLIDER_KNOB_HALF_X))


def move_slider_right(s: SceneState) -> Plan:
    end = np.array([ps.SLIDER_X0 + ps.SLIDER_RANGE[1] - 0.015, *ps.SLIDER_KNOB_YZ])
    return (yield from _slide(s, _slider_knob, -1.0, end, ps.SLIDER_KNOB_HALF_X))


def turn_on_led(s: SceneState) -> Plan:
    end = np.array([ps.SWITCH_X0 + ps.SWITCH_RANGE[1] - 0.004, *ps.SWITCH_YZ])
    return (yield from _slide(s, _switch_knob, -1.0, end, ps.SWITCH_KNOB_HALF_X))


def turn_off_led(s: SceneState) -> Plan:
    end = np.array([ps.SWITCH_X0 + 0.004, *ps.SWITCH_YZ])
    return (yield from _slide(s, _switch_knob, +1.0, end, ps.SWITCH_KNOB_HALF_X))


def press_button(s: SceneState) -> Plan:
    """Press the button once (toggles the lightbulb) and rise."""
    above = np.array([*ps.BUTTON_XY, 0.12])
    s = yield from _retreat(s)
    s = yield from _approach(s, above, CLOSED)
    deep = np.array([*ps.BUTTON_XY, ps.BUTTON_TOP_Z - 0.026 + 0.012])
    for _ in range(20):
        if s.button < ps.BUTTON_PRESSED - 0.003:
            break
        s = yield _steer(s, deep, CLOSED, speed=0.5)
    return (yield from _go(s, above, CLOSED))


# --------------------------------------------------------------------------- blocks
def _block(color: str) -> Callable[[SceneState], np.ndarray]:
    return lambda s: s.blocks[color].copy()


def _pick(s: SceneState, color: str, lift_to: float) -> Plan:
    """Grasp ``color`` from above (fingers straddle it along y) and lift it to ``lift_to``."""
    s = yield from _retreat(s)
    s = yield from _approach(s, lambda s: s.blocks[color] + [0, 0, 0.06], OPEN)
    s = yield from _go(s, _block(color), OPEN, tol=0.004, speed=0.6)
    s = yield from _wait(s, CLOSED, _CLOSE_STEPS)
    return (yield from _rise(s, lift_to, CLOSED))


def _place(s: SceneState, color: str, spot: Callable[[SceneState], np.ndarray], z: float) -> Plan:
    """Carry the held ``color`` at height ``z`` over ``spot``, lower it onto it, release."""

    def over(height: float) -> Callable[[SceneState], np.ndarray]:
        # Aim the block, not the grip: the block may sit off-centre between the fingers.
        def target(s: SceneState) -> np.ndarray:
            offset = s.grip - s.blocks[color]
            return np.array([*(spot(s)[:2] + offset[:2]), height + offset[2]])

        return target

    s = yield from _rise(s, z, CLOSED)
    s = yield from _go(s, over(z), CLOSED, tol=0.005)
    s = yield from _go(s, over(spot(s)[2] + 0.005), CLOSED, tol=0.004, speed=0.6)
    s = yield from _wait(s, OPEN, _RELEASE_STEPS)
    return (yield from _rise(s, SAFE_Z, OPEN))


def _push(color: str, direction: int) -> Callable[[SceneState], Plan]:
    def plan(s: SceneState) -> Plan:
        start_x = s.blocks[color][0]
        behind = -direction * (BLOCK_HALF + 0.012 + 0.02)
        s = yield from _retreat(s)
        s = yield from _approach(s, lambda s: s.blocks[color] + [behind, 0, 0.06], PUSHER)
        s = yield from _go(s, lambda s: s.blocks[color] + [behind, 0, 0.003], PUSHER, tol=0.005)
        end_x = start_x + direction * pt.PUSH_TARGET
        for _ in range(60):
            p = s.blocks[color]
            if direction * (p[0] - end_x) >= 0:
                break
            # Aim a little through the block; follow its y so it does not slip off the pusher.
            target = np.array([p[0] - direction * 0.01, p[1], ps.TABLE_REST_Z + 0.003])
            s = yield _steer(s, target, PUSHER, speed=0.4)
        s = yield from _go(s, s.grip + [-direction * 0.03, 0, 0], PUSHER, max_steps=8)
        return (yield from _rise(s, 0.12, PUSHER))

    return plan


def _lift(color: str) -> Callable[[SceneState], Plan]:
    def plan(s: SceneState) -> Plan:
        s = yield from _pick(s, color, ps.TABLE_REST_Z + 0.13)
        # Hold it up (single-subtask episodes continue after success); retry if it slipped.
        while pt.block_location(s, color) == "held":
            s = yield _steer(s, s.setpoint, CLOSED)
        return s

    return plan


def _source(s: SceneState, lift_to: float) -> Generator[np.ndarray, SceneState, tuple]:
    """The block to carry (held, else picked now); returns (state, colour or None)."""
    color = pt.source_block(s)
    if color is None:
        return s, None
    if pt.held_block(s) != color:
        s = yield from _pick(s, color, lift_to)
    return s, color


def place_in_drawer(s: SceneState) -> Plan:
    s, color = yield from _source(s, SAFE_Z)
    if color is None or pt.drawer_spot(s) is None:
        return s
    return (yield from _place(s, color, lambda s: pt.drawer_spot(s), SAFE_Z))


def place_in_slider(s: SceneState) -> Plan:
    s, color = yield from _source(s, SHELF_Z)
    spot = pt.shelf_spot(s)
    if color is None or spot is None:
        return s
    return (yield from _place(s, color, lambda s: spot, SHELF_Z))


def stack_block(s: SceneState) -> Plan:
    pair = pt.stack_pair(s)
    if pair is None:
        return s
    src, dst = pair
    if pt.held_block(s) != src:
        s = yield from _pick(s, src, SAFE_Z)

    def on_top(s: SceneState) -> np.ndarray:
        return s.blocks[dst] + np.array([0.0, 0.0, 2 * BLOCK_HALF])

    return (yield from _place(s, src, on_top, SAFE_Z))


def unstack_block(s: SceneState) -> Plan:
    pair = pt.unstack_pair(s)
    if pair is None:
        return s
    top, _ = pair
    spot = pt.aside_spot(s, top)
    if spot is None:
        return s
    s = yield from _retreat(s)
    s = yield from _pick(s, top, SAFE_Z)
    return (yield from _place(s, top, lambda s: spot, SAFE_Z))


PLANS: dict[str, Callable[[SceneState], Plan]] = {
    "open_drawer": open_drawer,
    "close_drawer": close_drawer,
    "move_slider_left": move_slider_left,
    "move_slider_right": move_slider_right,
    "turn_on_lightbulb": press_button,
    "turn_off_lightbulb": press_button,
    "turn_on_led": turn_on_led,
    "turn_off_led": turn_off_led,
    **{
        f"push_{c}_block_{side}": _push(c, d)
        for c in ps.BLOCK_COLORS
        for side, d in (("left", -1), ("right", 1))
    },
    **{f"lift_{c}_block": _lift(c) for c in ps.BLOCK_COLORS},
    "place_in_drawer": place_in_drawer,
    "place_in_slider": place_in_slider,
    "stack_block": stack_block,
    "unstack_block": unstack_block,
}


class SubtaskExpert:
    """Scripted expert for one subtask: ``reset()``, ``__call__(obs, info) -> action``.

    Reads ``info["privileged"]``; holds still once ``info["is_success"]`` is true.
    """

    def __init__(self, subtask: str) -> None:
        self.subtask = pt.get_subtask(subtask).name
        self._plan: Plan | None = None
        self._gripper = OPEN  # the last gripper command, kept while holding still

    def reset(self) -> None:
        self._plan, self._gripper = None, OPEN

    def __call__(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        state = SceneState.from_privileged(info["privileged"])
        if info["is_success"]:
            return _steer(state, state.setpoint, self._gripper)
        for _ in range(2):  # a plan that ends at once (nothing to do) is not restarted twice
            try:
                if self._plan is None:
                    self._plan = PLANS[self.subtask](state)
                    action = next(self._plan)
                else:
                    action = self._plan.send(state)
            except StopIteration:
                self._plan = None
                continue
            self._gripper = float(action[3])
            return action
        return _steer(state, state.setpoint, self._gripper)


class ChainExpert:
    """Follows ``info["subtask"]`` of a chain env: a fresh :class:`SubtaskExpert` per subtask."""

    def __init__(self) -> None:
        self._experts: dict[str, SubtaskExpert] = {}
        self._index: int | None = None
        self._current: SubtaskExpert | None = None

    def reset(self) -> None:
        self._index, self._current = None, None

    def __call__(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        if info["subtask_index"] != self._index or self._current is None:
            name = info["subtask"]
            if name not in self._experts:
                self._experts[name] = SubtaskExpert(name)
            self._current = self._experts[name]
            self._current.reset()
            self._index = info["subtask_index"]
        return self._current(obs, info)


# --------------------------------------------------------------------------- random starts
START_MODES = ("home", "random")
# Where a random arm pose is drawn (grip point): over the open table, clear of the chest, the
# cabinet, the button and the switch; blocks are avoided per draw.
ARM_BOX_LOW = np.array([-0.5, -0.32, 0.05])
ARM_BOX_HIGH = np.array([0.22, 0.12, 0.3])
MIN_HOME_DISTANCE = 0.05  # a random start this far from HOME at least (else drawn again)
HANDOVER_STEPS = 360  # a predecessor's expert gets one subtask budget to hand over
_SETTLE_TOLERANCE = 0.01  # a drawn arm pose must not push anything by more than this


def check_start(start: object) -> str:
    """``start`` as given when it is a known start mode; a UserError naming it otherwise."""
    if start not in START_MODES:
        modes = ", ".join(START_MODES)
        raise UserError(f"start={start!r} is not a start mode; use one of {modes}.")
    return str(start)


def _run_expert(sim: ps.PlaygroundSim, subtask: str, max_steps: int) -> bool:
    """Let ``subtask``'s expert act in ``sim`` until its detector fires (True) or the budget
    runs out (False); the simulator is left where the detector fired, as a chain hands over."""
    task = pt.SUBTASKS[subtask]
    expert = SubtaskExpert(subtask)
    start = sim.state()
    state = start
    for _ in range(max_steps):
        info = {"privileged": state.to_privileged(), "is_success": False}
        sim.step(np.clip(expert({}, info), -1.0, 1.0))
        if not sim.is_stable():
            return False
        state = sim.state()
        if task.detector(start, state):
            return True
    return False


def _moved(before: SceneState, after: SceneState) -> float:
    """Largest displacement of a block or an articulated part between two states."""
    parts = [abs(before.drawer - after.drawer), abs(before.slider - after.slider)]
    parts += [abs(before.switch - after.switch)]
    parts += [float(np.max(np.abs(before.blocks[c] - after.blocks[c]))) for c in before.blocks]
    return max(parts)


def _arm_start(
    sim: ps.PlaygroundSim, scene: SceneState, rng: np.random.Generator
) -> SceneState | None:
    """``scene`` with the arm at a random pose over the table, gripper open or closed."""
    grip = rng.uniform(ARM_BOX_LOW, ARM_BOX_HIGH)
    for p in scene.blocks.values():
        if np.hypot(*(grip[:2] - p[:2])) < 0.07 and grip[2] < p[2] + BLOCK_HALF + 0.06:
            return None
    closed = bool(rng.random() < 0.5)
    gap = 0.002 if closed else 2 * ps.FINGER_OPEN + 0.002
    sim.set_state(scene.copy(grip=grip, setpoint=grip.copy(), gap=gap))
    now = sim.state()
    # A pose inside something is pushed out of it, or pushes it: draw another.
    if np.max(np.abs(now.grip - grip)) > _SETTLE_TOLERANCE or _moved(scene, now) > 0.005:
        return None
    if scene.light != now.light or scene.led != now.led:
        return None
    return now


def _handover_start(
    sim: ps.PlaygroundSim, subtask: str, scene: SceneState, rng: np.random.Generator
) -> tuple[SceneState, str] | None:
    """The state another subtask's expert leaves when its detector fires (as in a chain),
    for a predecessor after which ``subtask`` is predicted valid."""
    task = pt.SUBTASKS[subtask]
    before = [
        name
        for name, other in pt.SUBTASKS.items()
        if name != subtask
        and other.precondition(scene, pt.CHAIN_MARGIN)
        and task.precondition(other.effect(scene), pt.CHAIN_MARGIN)
    ]
    if not before:
        return None
    name = before[int(rng.integers(len(before)))]
    sim.set_state(scene)
    if not _run_expert(sim, name, HANDOVER_STEPS):
        return None
    return sim.state(), name


def sample_random_start(
    sim: ps.PlaygroundSim, subtask: str, rng: np.random.Generator, max_tries: int = 200
) -> tuple[SceneState, str]:
    """Put ``sim`` in a random start ``subtask`` is valid from; return it and how it was made.

    Half the draws put the arm at a random pose over the table with the gripper open or
    closed (``"arm"``); the other half run the expert of another subtask, valid in the scene
    and predicted to leave ``subtask`` valid, until its detector fires (``"after:<name>"``):
    the state a chain hands over, hand low and gripper often closed. Either way the scene is
    one :func:`~vw_robot.envs.playground_tasks.sample_start` draws, and the start is kept only
    when the subtask's precondition holds in the simulated state and the grip point is at
    least :data:`MIN_HOME_DISTANCE` from HOME.
    """
    task = pt.get_subtask(subtask)
    for _ in range(max_tries):
        scene = pt.sample_start(task.name, rng)
        if rng.random() < 0.5:
            made = _handover_start(sim, task.name, scene, rng)
            if made is None:
                continue
            state, how = made[0], f"after:{made[1]}"
        else:
            state, how = _arm_start(sim, scene, rng), "arm"
            if state is None:
                continue
        if (
            task.precondition(state, 0.0)
            and np.linalg.norm(state.grip - ps.HOME) >= MIN_HOME_DISTANCE
        ):
            return state, how
    raise RuntimeError(f"no random start for {task.name} in {max_tries} draws")
