"""Playground subtasks: preconditions, success detectors, predicted effects, chain sampling.

Like CALVIN's task oracle, a detector compares the state at the start of a subtask with the
current one and looks only at what its subtask changes (``push_red_block_left`` reads the red
block, never the drawer). Each subtask also has

- a **precondition**: the states it is valid from (``turn_on_lightbulb`` needs the light off;
  ``push_red_block_left`` needs the red block free on the table with room on its left);
- an **effect**: the state a successful execution predicts, used to sample chains of subtasks
  up front, each valid from where the previous one leaves the scene (CALVIN samples its 1000
  evaluation chains the same way, so every policy is evaluated on the same chains);
- a **force** step, used by single-subtask resets to put a random scene into a state the
  subtask is valid from.

Thresholds leave margins on purpose: a detector fires before its expert reaches its target
(``open_drawer`` fires at 0.15 m, the expert pulls to 0.19 m), and the next subtask's
precondition accepts the state at which the detector fired (``close_drawer`` needs >= 0.10 m).

Block choices are made by rules shared by experts and effects: the block to move is the held
one, else the first free one in the order red, blue, pink; places are taken from fixed spot
lists, first free first. So predicted and executed chains agree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from vw_robot.envs import playground_scene as ps
from vw_robot.envs.playground_scene import BLOCK_COLORS, BLOCK_HALF, SceneState
from vw_robot.errors import UserError

# Detector thresholds (metres of joint travel / block displacement).
DRAWER_OPEN = 0.15  # open_drawer fires at or above
DRAWER_CLOSED = 0.04  # close_drawer fires at or below
DRAWER_MOVE = 0.08  # and the drawer moved at least this far
SLIDER_LEFT = 0.06  # move_slider_left fires at or below (door joint)
SLIDER_RIGHT = 0.22  # move_slider_right fires at or above
SLIDER_MOVE = 0.12
PUSH_DISTANCE = 0.10  # push_*: block moved this far along x, still on the table
PUSH_TARGET = 0.14  # how far the expert pushes (and the room a push needs)
LIFT_HEIGHT = 0.05  # lift_*: block raised this far and held
# Preconditions.
OPEN_DRAWER_MAX = 0.06
CLOSE_DRAWER_MIN = 0.10
PLACE_DRAWER_MIN = 0.14
SLIDER_LEFT_MIN = 0.18  # move_slider_left valid from the door this far right
SLIDER_RIGHT_MAX = 0.10
BLOCK_ZONE_X = (-0.5, 0.16)  # pushes must end inside this band (clear of the chest)
BLOCK_ZONE_Y = (-0.3, 0.08)
CHAIN_MARGIN = 0.02  # extra clearance the chain sampler asks of block preconditions
# Predicted effects (where a detector fires, slightly past its threshold).
_EFFECT_DRAWER_OPEN = 0.16
_EFFECT_DRAWER_CLOSED = 0.03
_EFFECT_SLIDER_LEFT = 0.05
_EFFECT_SLIDER_RIGHT = 0.23
_EFFECT_PUSH = 0.11

# Fixed places (block centres) for place_in_drawer (drawer frame: y moves with the drawer),
# place_in_slider (the cabinet top) and unstack_block (the table).
DRAWER_SPOTS = ((0.33, ps.DRAWER_Y0[0] + 0.065), (0.45, ps.DRAWER_Y0[0] + 0.065))
SHELF_SPOTS = ((-0.38, 0.29), (-0.24, 0.29), (-0.10, 0.29))
ASIDE_SPOTS = tuple((x, y) for y in (-0.22, -0.06) for x in (-0.4, -0.25, -0.1, 0.05))

_GAP_OPEN = 2 * ps.FINGER_OPEN + 0.002
_GAP_HOLDING = 2 * BLOCK_HALF + 0.002
_TABLE_TOLERANCE = 0.012
_REST_TOLERANCE = 0.012


# --------------------------------------------------------------------------- block locations
def block_location(state: SceneState, color: str) -> str:
    """Where a block is: ``held`` (closed fingers around it), else ``drawer``, ``slider``
    (resting on the cabinet shelf), ``stacked`` (resting on another block), ``table`` or
    ``other`` (e.g. tipped over, or falling)."""
    p = state.blocks[color]
    if _in_grasp(state, p):
        return "held"
    if _in_drawer(state, p) and abs(p[2] - ps.DRAWER_REST_Z) < _REST_TOLERANCE:
        return "drawer"
    if (
        ps.SHELF_X[0] < p[0] < ps.SHELF_X[1]
        and ps.SHELF_Y[0] < p[1] < ps.SHELF_Y[1]
        and abs(p[2] - ps.SHELF_REST_Z) < _REST_TOLERANCE
    ):
        return "slider"
    if support_of(state, color) is not None:
        return "stacked"
    if abs(p[2] - ps.TABLE_REST_Z) < _TABLE_TOLERANCE and abs(p[0]) < 0.62 and abs(p[1]) < 0.42:
        return "table"
    return "other"


def _in_grasp(state: SceneState, p: np.ndarray) -> bool:
    """Closed fingers around the block: a block that is still held has not been placed."""
    return (
        state.gap < 2 * BLOCK_HALF + 0.01
        and np.hypot(*(state.grip[:2] - p[:2])) < 0.025
        and abs(state.grip[2] - p[2]) < 0.03
    )


def _in_drawer(state: SceneState, p: np.ndarray) -> bool:
    y0, y1 = ps.DRAWER_Y0[0] - state.drawer, ps.DRAWER_Y0[1] - state.drawer
    return ps.DRAWER_X[0] < p[0] < ps.DRAWER_X[1] and y0 < p[1] < y1 and p[2] < 0.1


def support_of(state: SceneState, color: str) -> str | None:
    """The block ``color`` rests on, or None."""
    p = state.blocks[color]
    for other in BLOCK_COLORS:
        if other == color:
            continue
        d = p - state.blocks[other]
        if np.hypot(d[0], d[1]) < 0.03 and abs(d[2] - 2 * BLOCK_HALF) < _REST_TOLERANCE:
            return other
    return None


def is_covered(state: SceneState, color: str) -> bool:
    """Another block rests on ``color``."""
    return any(support_of(state, c) == color for c in BLOCK_COLORS if c != color)


def held_block(state: SceneState) -> str | None:
    """The block in the gripper, or None."""
    for color in BLOCK_COLORS:
        if block_location(state, color) == "held":
            return color
    return None


def _free_on_table(state: SceneState, color: str) -> bool:
    return block_location(state, color) == "table" and not is_covered(state, color)


def _low_blocks(state: SceneState, exclude: str) -> list[np.ndarray]:
    """Positions of the other blocks that stand on the table (or on a block on it)."""
    return [
        state.blocks[c]
        for c in BLOCK_COLORS
        if c != exclude and block_location(state, c) in ("table", "stacked", "other")
    ]


def graspable(state: SceneState, color: str, margin: float = 0.0) -> bool:
    """Free on the table, with room for open fingers (they straddle the block along y)."""
    if not _free_on_table(state, color):
        return False
    p = state.blocks[color]
    return all(
        abs(q[0] - p[0]) >= 0.06 + margin or abs(q[1] - p[1]) >= 0.1 + margin
        for q in _low_blocks(state, color)
    )


def can_push(state: SceneState, color: str, direction: int, margin: float = 0.0) -> bool:
    """Block free on the table, target inside the block zone, corridor and pusher side free.

    ``direction`` is -1 (left, -x) or +1 (right, +x).
    """
    if not _free_on_table(state, color) or held_block(state) is not None:
        return False
    p = state.blocks[color]
    target = p[0] + direction * (PUSH_TARGET + margin)
    if not BLOCK_ZONE_X[0] <= target <= BLOCK_ZONE_X[1]:
        return False
    if not BLOCK_ZONE_Y[0] <= p[1] <= BLOCK_ZONE_Y[1]:
        return False
    # The corridor: from behind the pusher's start to past the block's target, one block wide
    # plus the sideways drift a push may have.
    a = p[0] - direction * (0.1 + margin)
    b = p[0] + direction * (PUSH_TARGET + 2 * BLOCK_HALF + margin)
    lo, hi = min(a, b), max(a, b)
    return all(
        not (lo <= q[0] <= hi and abs(q[1] - p[1]) < 0.075 + margin)
        for q in _low_blocks(state, color)
    )


# --------------------------------------------------------------------------- shared choices
def source_block(state: SceneState, margin: float = 0.0) -> str | None:
    """The block place/stack subtasks move: the held one, else the first graspable one."""
    held = held_block(state)
    if held is not None:
        return held
    for color in BLOCK_COLORS:
        if graspable(state, color, margin):
            return color
    return None


def stack_pair(state: SceneState, margin: float = 0.0) -> tuple[str, str] | None:
    """(block to move, block to stack it on) for stack_block, or None."""
    held = held_block(state)
    sources = (
        [held] if held is not None else [c for c in BLOCK_COLORS if graspable(state, c, margin)]
    )
    for src in sources:
        for dst in BLOCK_COLORS:
            if dst != src and _free_on_table(state, dst):
                return src, dst
    return None


def unstack_pair(state: SceneState) -> tuple[str, str] | None:
    """(top block, the block it rests on) for unstack_block, or None."""
    for color in BLOCK_COLORS:
        below = support_of(state, color)
        if below is not None and not is_covered(state, color):
            return color, below
    return None


def drawer_spot(state: SceneState, margin: float = 0.0) -> np.ndarray | None:
    """World xyz of the first free place in the (open) drawer, or None."""
    for x, y_rel in DRAWER_SPOTS:
        spot = np.array([x, y_rel - state.drawer, ps.DRAWER_REST_Z])
        if all(
            np.hypot(*(state.blocks[c][:2] - spot[:2])) >= 0.07 + margin
            for c in BLOCK_COLORS
            if block_location(state, c) == "drawer"
        ):
            return spot
    return None


def shelf_spot(state: SceneState, margin: float = 0.0) -> np.ndarray | None:
    """World xyz of the first free place on the cabinet shelf, or None."""
    for x, y in SHELF_SPOTS:
        spot = np.array([x, y, ps.SHELF_REST_Z])
        if all(
            np.hypot(*(state.blocks[c][:2] - spot[:2])) >= 0.08 + margin
            for c in BLOCK_COLORS
            if block_location(state, c) == "slider"
        ):
            return spot
    return None


def aside_spot(state: SceneState, moving: str, margin: float = 0.0) -> np.ndarray | None:
    """World xyz of the first free table place for ``moving`` (unstack_block), or None."""
    for x, y in ASIDE_SPOTS:
        spot = np.array([x, y, ps.TABLE_REST_Z])
        if all(
            abs(q[0] - x) >= 0.07 + margin or abs(q[1] - y) >= 0.12 + margin
            for q in _low_blocks(state, moving)
        ):
            return spot
    return None


# --------------------------------------------------------------------------- subtasks
@dataclass(frozen=True)
class Subtask:
    """One subtask: CALVIN-style name and its four functions."""

    name: str
    precondition: Callable[[SceneState, float], bool]  # (state, margin) -> valid
    detector: Callable[[SceneState, SceneState], bool]  # (start, now) -> success
    effect: Callable[[SceneState], SceneState]  # state -> predicted state after success
    force: Callable[[SceneState, np.random.Generator], SceneState]  # make it valid (resets)

    @property
    def task_name(self) -> str:
        """Registry name: ``open_drawer`` -> ``open-drawer``."""
        return self.name.replace("_", "-")


def _keep(state: SceneState, rng: np.random.Generator) -> SceneState:
    return state


def _nothing_held(state: SceneState) -> bool:
    return held_block(state) is None


def _raise_grip(state: SceneState) -> SceneState:
    """The gripper open and up where it finished (how every expert ends a subtask)."""
    grip = state.grip.copy()
    grip[2] = 0.2
    return state.copy(grip=grip, setpoint=grip.copy(), gap=_GAP_OPEN)


def _with_drawer(state: SceneState, q: float) -> SceneState:
    moved = {}
    for color in BLOCK_COLORS:
        p = state.blocks[color].copy()
        if block_location(state, color) == "drawer":
            p[1] -= q - state.drawer
        moved[color] = p
    return state.copy(drawer=q, blocks=moved)


def _move_block(state: SceneState, color: str, position: np.ndarray) -> SceneState:
    blocks = {c: p.copy() for c, p in state.blocks.items()}
    blocks[color] = np.asarray(position, dtype=np.float64).copy()
    return state.copy(blocks=blocks)


def _drawer_subtasks() -> list[Subtask]:
    return [
        Subtask(
            "open_drawer",
            lambda s, m: s.drawer <= OPEN_DRAWER_MAX and _nothing_held(s),
            lambda s0, s: s.drawer >= DRAWER_OPEN and s.drawer - s0.drawer >= DRAWER_MOVE,
            lambda s: _raise_grip(_with_drawer(s, _EFFECT_DRAWER_OPEN)),
            lambda s, rng: _with_drawer(s, rng.uniform(0.0, 0.03)),
        ),
        Subtask(
            "close_drawer",
            lambda s, m: s.drawer >= CLOSE_DRAWER_MIN and _nothing_held(s),
            lambda s0, s: s.drawer <= DRAWER_CLOSED and s0.drawer - s.drawer >= DRAWER_MOVE,
            lambda s: _raise_grip(_with_drawer(s, _EFFECT_DRAWER_CLOSED)),
            lambda s, rng: _with_drawer(s, rng.uniform(0.15, 0.2)),
        ),
    ]


def _slider_subtasks() -> list[Subtask]:
    return [
        Subtask(
            "move_slider_left",
            lambda s, m: s.slider >= SLIDER_LEFT_MIN and _nothing_held(s),
            lambda s0, s: s.slider <= SLIDER_LEFT and s0.slider - s.slider >= SLIDER_MOVE,
            lambda s: _raise_grip(s.copy(slider=_EFFECT_SLIDER_LEFT)),
            lambda s, rng: s.copy(slider=rng.uniform(0.25, 0.28)),
        ),
        Subtask(
            "move_slider_right",
            lambda s, m: s.slider <= SLIDER_RIGHT_MAX and _nothing_held(s),
            lambda s0, s: s.slider >= SLIDER_RIGHT and s.slider - s0.slider >= SLIDER_MOVE,
            lambda s: _raise_grip(s.copy(slider=_EFFECT_SLIDER_RIGHT)),
            lambda s, rng: s.copy(slider=rng.uniform(0.0, 0.03)),
        ),
    ]


def _light_subtasks() -> list[Subtask]:
    def led_state(on: bool, rng: np.random.Generator | None = None) -> dict[str, object]:
        if rng is None:
            return {"led": on, "switch": 0.07 if on else 0.01}
        return {"led": on, "switch": rng.uniform(0.065, 0.08) if on else rng.uniform(0.0, 0.015)}

    return [
        Subtask(
            "turn_on_lightbulb",
            lambda s, m: not s.light and _nothing_held(s),
            lambda s0, s: not s0.light and s.light,
            lambda s: _raise_grip(s.copy(light=True)),
            lambda s, rng: s.copy(light=False),
        ),
        Subtask(
            "turn_off_lightbulb",
            lambda s, m: s.light and _nothing_held(s),
            lambda s0, s: s0.light and not s.light,
            lambda s: _raise_grip(s.copy(light=False)),
            lambda s, rng: s.copy(light=True),
        ),
        Subtask(
            "turn_on_led",
            lambda s, m: not s.led and _nothing_held(s),
            lambda s0, s: not s0.led and s.led,
            lambda s: _raise_grip(s.copy(**led_state(True))),
            lambda s, rng: s.copy(**led_state(False, rng)),
        ),
        Subtask(
            "turn_off_led",
            lambda s, m: s.led and _nothing_held(s),
            lambda s0, s: s0.led and not s.led,
            lambda s: _raise_grip(s.copy(**led_state(False))),
            lambda s, rng: s.copy(**led_state(True, rng)),
        ),
    ]


def _push_subtask(color: str, direction: int) -> Subtask:
    side = "left" if direction < 0 else "right"

    def detector(s0: SceneState, s: SceneState) -> bool:
        return (
            block_location(s0, color) == "table"
            and block_location(s, color) == "table"
            and direction * (s.blocks[color][0] - s0.blocks[color][0]) >= PUSH_DISTANCE
        )

    def effect(s: SceneState) -> SceneState:
        p = s.blocks[color].copy()
        p[0] += direction * _EFFECT_PUSH
        return _raise_grip(_move_block(s, color, p))

    return Subtask(
        f"push_{color}_block_{side}",
        lambda s, m: can_push(s, color, direction, m),
        detector,
        effect,
        _keep,
    )


def _lift_subtask(color: str) -> Subtask:
    def detector(s0: SceneState, s: SceneState) -> bool:
        return (
            block_location(s0, color) == "table"
            and block_location(s, color) == "held"
            and s.blocks[color][2] - s0.blocks[color][2] >= LIFT_HEIGHT
        )

    def effect(s: SceneState) -> SceneState:
        p = s.blocks[color].copy()
        p[2] += LIFT_HEIGHT + 0.01
        s = _move_block(s, color, p)
        return s.copy(grip=p.copy(), setpoint=p.copy(), gap=_GAP_HOLDING)

    return Subtask(
        f"lift_{color}_block",
        lambda s, m: _nothing_held(s) and graspable(s, color, m),
        detector,
        effect,
        _keep,
    )


def _newly(location: str) -> Callable[[SceneState, SceneState], bool]:
    def detector(s0: SceneState, s: SceneState) -> bool:
        return any(
            block_location(s0, c) != location and block_location(s, c) == location
            for c in BLOCK_COLORS
        )

    return detector


def _place_subtasks() -> list[Subtask]:
    def place_drawer_effect(s: SceneState) -> SceneState:
        src, spot = source_block(s), drawer_spot(s)
        return _raise_grip(_move_block(s, src, spot).copy(grip=spot.copy()))

    def place_shelf_effect(s: SceneState) -> SceneState:
        src, spot = source_block(s), shelf_spot(s)
        return _raise_grip(_move_block(s, src, spot).copy(grip=spot.copy()))

    def stack_effect(s: SceneState) -> SceneState:
        src, dst = stack_pair(s)
        spot = s.blocks[dst] + np.array([0.0, 0.0, 2 * BLOCK_HALF])
        return _raise_grip(_move_block(s, src, spot).copy(grip=spot.copy()))

    def unstack_effect(s: SceneState) -> SceneState:
        top, _ = unstack_pair(s)
        spot = aside_spot(s, top)
        return _raise_grip(_move_block(s, top, spot).copy(grip=spot.copy()))

    def unstack_valid(s: SceneState, m: float) -> bool:
        pair = unstack_pair(s)
        return _nothing_held(s) and pair is not None and aside_spot(s, pair[0], m) is not None

    def unstack_force(s: SceneState, rng: np.random.Generator) -> SceneState:
        if unstack_pair(s) is not None:
            return s
        top, below = rng.choice(len(BLOCK_COLORS), size=2, replace=False)
        spot = s.blocks[BLOCK_COLORS[below]] + np.array([0.0, 0.0, 2 * BLOCK_HALF])
        return _move_block(s, BLOCK_COLORS[top], spot)

    def unstack_detector(s0: SceneState, s: SceneState) -> bool:
        return any(
            block_location(s0, c) == "stacked" and block_location(s, c) == "table"
            for c in BLOCK_COLORS
        )

    return [
        Subtask(
            "place_in_drawer",
            lambda s, m: (
                s.drawer >= PLACE_DRAWER_MIN
                and source_block(s, m) is not None
                and drawer_spot(s, m) is not None
            ),
            _newly("drawer"),
            place_drawer_effect,
            lambda s, rng: _with_drawer(s, rng.uniform(0.15, 0.2)),
        ),
        Subtask(
            "place_in_slider",
            lambda s, m: source_block(s, m) is not None and shelf_spot(s, m) is not None,
            _newly("slider"),
            place_shelf_effect,
            _keep,
        ),
        Subtask(
            "stack_block",
            lambda s, m: stack_pair(s, m) is not None,
            _newly("stacked"),
            stack_effect,
            _keep,
        ),
        Subtask("unstack_block", unstack_valid, unstack_detector, unstack_effect, unstack_force),
    ]


def _build() -> dict[str, Subtask]:
    subtasks = [*_drawer_subtasks(), *_slider_subtasks(), *_light_subtasks()]
    subtasks += [_push_subtask(c, d) for c in BLOCK_COLORS for d in (-1, 1)]
    subtasks += [_lift_subtask(c) for c in BLOCK_COLORS]
    subtasks += _place_subtasks()
    return {t.name: t for t in subtasks}


SUBTASKS: dict[str, Subtask] = _build()
SUBTASK_NAMES = tuple(SUBTASKS)
# The 12 subtasks VideoWorld reports on CALVIN, evaluated one at a time.
VIDEOWORLD_SUBTASKS = (
    *(f"push_{c}_block_{side}" for c in BLOCK_COLORS for side in ("left", "right")),
    "open_drawer",
    "close_drawer",
    "turn_on_lightbulb",
    "turn_off_lightbulb",
    "turn_on_led",
    "turn_off_led",
)


def get_subtask(name: str) -> Subtask:
    """The subtask called ``name`` (``open_drawer`` or ``open-drawer``).

    Raises:
        ValueError: unknown name; the message lists the known ones.
    """
    key = name.replace("-", "_")
    if key not in SUBTASKS:
        raise UserError(f"Unknown playground subtask {name!r}; known: {', '.join(SUBTASKS)}.")
    return SUBTASKS[key]


def valid_subtasks(state: SceneState, margin: float = 0.0) -> list[str]:
    """Names of the subtasks whose precondition holds in ``state``."""
    return [name for name, t in SUBTASKS.items() if t.precondition(state, margin)]


# --------------------------------------------------------------------------- scenes and chains
def sample_scene(rng: np.random.Generator, stack_probability: float = 0.25) -> SceneState:
    """A random start scene: drawer and door at either end, light and LED on or off, blocks on
    the table at random places and yaws (sometimes one stacked on another)."""
    drawer = rng.uniform(0.0, 0.03) if rng.random() < 0.5 else rng.uniform(0.15, 0.2)
    slider = rng.uniform(0.0, 0.03) if rng.random() < 0.5 else rng.uniform(0.25, 0.28)
    light, led = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
    switch = rng.uniform(0.065, 0.08) if led else rng.uniform(0.0, 0.015)
    while True:
        xy = np.column_stack(
            [
                rng.uniform(-0.45, 0.13, len(BLOCK_COLORS)),
                rng.uniform(-0.24, 0.05, len(BLOCK_COLORS)),
            ]
        )
        if all(
            abs(xy[i, 0] - xy[j, 0]) >= 0.08 or abs(xy[i, 1] - xy[j, 1]) >= 0.13
            for i in range(len(xy))
            for j in range(i)
        ):
            break
    blocks = {c: np.array([*xy[k], ps.TABLE_REST_Z]) for k, c in enumerate(BLOCK_COLORS)}
    yaw = {c: float(rng.uniform(-0.5, 0.5)) for c in BLOCK_COLORS}
    state = SceneState(
        grip=ps.HOME.copy(),
        gap=_GAP_OPEN,
        setpoint=ps.HOME.copy(),
        drawer=float(drawer),
        slider=float(slider),
        button=0.0,
        switch=float(switch),
        light=light,
        led=led,
        blocks=blocks,
        block_yaw=yaw,
    )
    if rng.random() < stack_probability:
        top, below = rng.choice(len(BLOCK_COLORS), size=2, replace=False)
        spot = blocks[BLOCK_COLORS[below]] + np.array([0.0, 0.0, 2 * BLOCK_HALF])
        state = _move_block(state, BLOCK_COLORS[top], spot)
    return state


def sample_start(subtask: str, rng: np.random.Generator, max_tries: int = 1000) -> SceneState:
    """A random scene the subtask is valid from (with the chain sampler's margin)."""
    task = get_subtask(subtask)
    for _ in range(max_tries):
        state = task.force(sample_scene(rng), rng)
        if task.precondition(state, CHAIN_MARGIN):
            return state
    raise RuntimeError(f"no valid start for {subtask} in {max_tries} scenes")


def check_chain_args(length: object, steps_per_subtask: object) -> None:
    """Raise a ValueError naming the bad value when a chain's length or budget is not usable."""
    for key, value in (("chain_length", length), ("steps_per_subtask", steps_per_subtask)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise UserError(f"{key}={value!r} must be a positive int.")
    if length > len(SUBTASKS):
        raise UserError(
            f"chain_length={length} exceeds the {len(SUBTASKS)} subtasks a chain can hold "
            "(subtasks do not repeat within a chain)."
        )


def sample_chain(
    state: SceneState,
    rng: np.random.Generator,
    length: int = 5,
    *,
    subtasks: Sequence[str] = SUBTASK_NAMES,
    margin: float = CHAIN_MARGIN,
    max_tries: int = 200,
) -> list[str] | None:
    """Sample ``length`` distinct subtasks, each valid from the predicted state before it.

    Each step draws uniformly among the valid subtasks not yet in the chain, then applies its
    predicted effect. Returns None when no chain of that length exists from ``state`` within
    ``max_tries`` attempts (the caller samples another scene).
    """
    check_chain_args(length, 1)
    for _ in range(max_tries):
        current, chain = state, []
        for _ in range(length):
            valid = [
                name
                for name in subtasks
                if name not in chain and SUBTASKS[name].precondition(current, margin)
            ]
            if not valid:
                break
            name = valid[int(rng.integers(len(valid)))]
            chain.append(name)
            current = SUBTASKS[name].effect(current)
        if len(chain) == length:
            return chain
    return None


def predicted_states(state: SceneState, chain: Sequence[str]) -> list[SceneState]:
    """The state before each subtask of ``chain`` and after the last, as the effects predict."""
    states = [state]
    for name in chain:
        states.append(SUBTASKS[name].effect(states[-1]))
    return states
