"""The CALVIN-like playground under the vw_robot env contract: single subtasks and chains.

``playground/<subtask>`` (e.g. ``playground/open-drawer``) resets to a random scene the subtask
is valid from and reports success when the subtask's detector fires (start of the episode vs
now). ``playground/chain`` samples a chain of 5 distinct subtasks, each valid from the state
the previous one predicts, and gives each ``steps_per_subtask`` steps (360 by default): when a
detector fires the next subtask starts from the current state; when a budget runs out the chain
has failed and the episode terminates (a chain stops at its first failure).
``playground/play`` is a longer chain (8 subtasks) whose expert episodes are play data.

``info`` carries ``subtask`` (CALVIN-style name of the current subtask, e.g. ``open_drawer``)
and ``subtask_index`` in every mode; chains add ``chain``, ``completed``, ``subtask_valid``
(the precondition held in the actual state the subtask started from) and ``chain_failed``.
Everything is drawn from the reset seed: same seed, same scene, same chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from vw_robot.envs import playground_tasks as pt
from vw_robot.envs.base import SimEnv
from vw_robot.envs.instructions import task_instruction
from vw_robot.envs.playground_experts import (
    ChainExpert,
    SubtaskExpert,
    check_start,
    sample_random_start,
)
from vw_robot.envs.playground_scene import PlaygroundSim
from vw_robot.envs.rendering import validate_image_size
from vw_robot.errors import UserError

CAMERAS = ("front", "top", "side", "gripper", "wrist", "table")
STATE_DIM = 4  # grip point xyz + finger gap
ACTION_DIM = 4  # (dx, dy, dz, gripper)
STEPS_PER_SUBTASK = 360
CHAIN_LENGTH = 5
PLAY_LENGTH = 8
# Registry names (hyphenated like the other suites) -> CALVIN-style subtask names.
SUBTASK_TASKS = {t.task_name: name for name, t in pt.SUBTASKS.items()}
LONG_TASKS = ("chain", "play")
VIDEOWORLD_SUBTASKS = pt.VIDEOWORLD_SUBTASKS


def task_id(subtask: str) -> str:
    """``open_drawer`` -> ``playground/open-drawer``."""
    return f"playground/{pt.get_subtask(subtask).task_name}"


class _PlaygroundBase(SimEnv):
    """Shared plumbing: the simulator, rendering with the light states, proprio, privileged."""

    def __init__(
        self, task_id: str, *, image_size: int, camera: str, render_mode: str | None
    ) -> None:
        super().__init__(
            task_id,
            image_size=image_size,
            camera=camera,
            state_dim=STATE_DIM,
            action_dim=ACTION_DIM,
            render_mode=render_mode,
        )
        self._sim = PlaygroundSim()

    @property
    def mj_model(self) -> mujoco.MjModel:
        return self._sim.model

    @property
    def mj_data(self) -> mujoco.MjData:
        return self._sim.data

    @property
    def sim(self) -> PlaygroundSim:
        """The simulator (tests set states through it)."""
        return self._sim

    def _advance(self, action: np.ndarray) -> None:
        self._sim.step(action)
        if not self._sim.is_stable():
            raise RuntimeError(f"{self.task_id}: the simulation diverged (seed {self.sim_seed}).")

    def _render_pixels(self) -> np.ndarray:
        self._sim.update_visuals()
        return super()._render_pixels()

    def _sim_proprio(self) -> np.ndarray:
        return self._sim.proprio()

    def _sim_privileged(self) -> dict[str, np.ndarray]:
        return self._sim.state().to_privileged()


class PlaygroundEnv(_PlaygroundBase):
    """One playground subtask, reset to a random scene it is valid from.

    Args:
        subtask: CALVIN-style name (``open_drawer``) or registry name (``open-drawer``).
        image_size: camera image side in pixels.
        camera: one of :data:`CAMERAS`.
        max_episode_steps: informational; the registry's ``TimeLimit`` enforces it.
        render_mode: ``None`` or ``"rgb_array"``.
        start: ``"home"`` (the arm at HOME, gripper open) or ``"random"``: a random arm pose
            and gripper state, or the state another subtask's expert leaves, always one the
            subtask is valid from (:func:`~vw_robot.envs.playground_experts.sample_random_start`).
            ``reset(options={"start": ...})`` overrides it for one episode. ``info["start"]``
            says how the episode started (``home``, ``arm`` or ``after:<subtask>``).

    Raises:
        UserError: an unknown start mode (naming ``start``).
    """

    def __init__(
        self,
        subtask: str,
        *,
        image_size: int = 64,
        camera: str = CAMERAS[0],
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        start: str = "home",
    ) -> None:
        self.subtask = pt.get_subtask(subtask)
        self.start = check_start(start)
        super().__init__(
            f"playground/{self.subtask.task_name}",
            image_size=image_size,
            camera=camera,
            render_mode=render_mode,
        )
        self.max_episode_steps = max_episode_steps
        self._start = None
        self._episode_start = self.start
        self._start_kind = "home"

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        options = dict(options or {})
        self._episode_start = check_start(options.pop("start", self.start))
        if options:
            raise UserError(
                f"{self.task_id}: unknown reset option(s) {', '.join(map(repr, options))}; "
                "known: 'start'."
            )
        return super().reset(seed=seed)

    def _sim_reset(self, sim_seed: int) -> None:
        rng = np.random.default_rng(sim_seed)
        if self._episode_start == "random":
            _, self._start_kind = sample_random_start(self._sim, self.subtask.name, rng)
        else:
            self._sim.set_state(pt.sample_start(self.subtask.name, rng))
            self._start_kind = "home"
        self._start = self._sim.state()

    def _sim_step(self, action: np.ndarray) -> float:
        self._advance(action)
        return float(self._sim_success())

    def _sim_success(self) -> bool:
        return bool(self.subtask.detector(self._start, self._sim.state()))

    def _info(self) -> dict[str, Any]:
        info = super()._info()
        info["subtask"] = self.subtask.name
        info["subtask_index"] = 0
        info["start"] = self._start_kind
        return info


class PlaygroundChainEnv(_PlaygroundBase):
    """A chain of subtasks in one episode; it stops at the first failure.

    Args:
        chain_length: subtasks per chain (distinct within a chain).
        steps_per_subtask: step budget of each subtask.
        subtasks: the subtasks chains are drawn from (default: all).
        name: registry name after ``playground/`` (``chain`` or ``play``).
        image_size, camera, render_mode: as for :class:`PlaygroundEnv`.
        max_episode_steps: informational (``chain_length * steps_per_subtask`` by default).

    Raises:
        ValueError: a chain length or step budget that is not a positive int (naming it).
    """

    def __init__(
        self,
        *,
        chain_length: int = CHAIN_LENGTH,
        steps_per_subtask: int = STEPS_PER_SUBTASK,
        subtasks: Sequence[str] | None = None,
        name: str = "chain",
        image_size: int = 64,
        camera: str = CAMERAS[0],
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        pt.check_chain_args(chain_length, steps_per_subtask)
        self.subtasks = tuple(
            pt.get_subtask(s).name for s in (pt.SUBTASK_NAMES if subtasks is None else subtasks)
        )
        if chain_length > len(self.subtasks):
            raise UserError(
                f"chain_length={chain_length} exceeds the {len(self.subtasks)} subtasks given."
            )
        super().__init__(
            f"playground/{name}", image_size=image_size, camera=camera, render_mode=render_mode
        )
        self.chain_length = int(chain_length)
        self.steps_per_subtask = int(steps_per_subtask)
        self.max_episode_steps = max_episode_steps or self.chain_length * self.steps_per_subtask
        self.chain: tuple[str, ...] = ()
        self._start = None
        self._index = 0
        self._steps = 0
        self._completed = 0
        self._failed = False
        self._valid = True

    def _sim_reset(self, sim_seed: int) -> None:
        rng = np.random.default_rng(sim_seed)
        while True:
            scene = pt.sample_scene(rng)
            chain = pt.sample_chain(scene, rng, self.chain_length, subtasks=self.subtasks)
            if chain is not None:
                break
        self.chain = tuple(chain)
        self._sim.set_state(scene)
        self._begin(0)
        self._completed, self._failed = 0, False

    def _begin(self, index: int) -> None:
        self._index, self._steps = index, 0
        self._start = self._sim.state()
        self._valid = pt.SUBTASKS[self.chain[index]].precondition(self._start, 0.0)

    def _sim_step(self, action: np.ndarray) -> float:
        if self._failed or self._completed == len(self.chain):
            self._advance(action)
            return 0.0
        self._advance(action)
        self._steps += 1
        subtask = pt.SUBTASKS[self.chain[self._index]]
        if subtask.detector(self._start, self._sim.state()):
            self._completed += 1
            if self._completed < len(self.chain):
                self._begin(self._index + 1)
            return 1.0
        if self._steps >= self.steps_per_subtask:
            self._failed = True
        return 0.0

    def _sim_success(self) -> bool:
        return self._completed == len(self.chain)

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        obs, reward, _, truncated, info = super().step(action)
        # A chain stops at its first failure: the episode terminates there.
        return obs, reward, self._failed, truncated, info

    def _info(self) -> dict[str, Any]:
        info = super()._info()
        info.update(
            subtask=self.chain[self._index],
            # The current subtask's, as CALVIN gives the policy each subtask's instruction.
            instruction=task_instruction(task_id(self.chain[self._index])),
            subtask_index=self._index,
            chain=self.chain,
            completed=self._completed,
            subtask_valid=self._valid,
            chain_failed=self._failed,
        )
        return info


def make_chain_env(
    *,
    chain_length: int = CHAIN_LENGTH,
    steps_per_subtask: int = STEPS_PER_SUBTASK,
    subtasks: Sequence[str] | None = None,
    image_size: int = 64,
    camera: str = CAMERAS[0],
    seed: int | None = None,
    render_mode: str | None = None,
) -> gym.Env:
    """A chain env with a custom length / budget, behind the same ``TimeLimit`` as
    ``make_env("playground/chain")`` (the limit is ``chain_length * steps_per_subtask``).

    Raises:
        ValueError: bad ``chain_length``, ``steps_per_subtask``, subtask name or image size.
    """
    env = PlaygroundChainEnv(
        chain_length=chain_length,
        steps_per_subtask=steps_per_subtask,
        subtasks=subtasks,
        image_size=validate_image_size(image_size),
        camera=camera,
        render_mode=render_mode,
    )
    env.default_seed = seed
    if seed is not None:
        env.action_space.seed(seed)
    return gym.wrappers.TimeLimit(env, max_episode_steps=env.max_episode_steps)


def build(name: str, **kwargs: Any) -> SimEnv:
    """Registry builder: ``name`` is a subtask task name, ``chain`` or ``play``."""
    if name == "chain":
        return PlaygroundChainEnv(name="chain", **kwargs)
    if name == "play":
        return PlaygroundChainEnv(chain_length=PLAY_LENGTH, name="play", **kwargs)
    return PlaygroundEnv(SUBTASK_TASKS[name], **kwargs)


def default_max_episode_steps(name: str) -> int:
    """Time limit: one subtask budget, or the whole chain's."""
    if name == "chain":
        return CHAIN_LENGTH * STEPS_PER_SUBTASK
    if name == "play":
        return PLAY_LENGTH * STEPS_PER_SUBTASK
    return STEPS_PER_SUBTASK


def make_playground_expert(name: str) -> SubtaskExpert | ChainExpert:
    """Registry expert: a subtask's scripted expert, or one that follows a chain's subtasks."""
    if name in LONG_TASKS:
        return ChainExpert()
    return SubtaskExpert(SUBTASK_TASKS[name])
