"""The one env contract every vw_robot task meets.

Observation: ``{"pixels": (H, W, 3) uint8 upright, "state": (D,) float32 proprio}``.
Action: a ``Box`` in [-1, 1]. ``info["is_success"]`` is a plain bool at every step (and at reset).
``info["view"]`` names what the frames show (``"front+top@64px"``: the cameras, stacked top to
bottom, and the image size; :class:`~vw_robot.envs.rendering.ViewLayout`), so that a policy
trained on another view can refuse them; ``info["instruction"]`` says the task in words
(``"open the drawer"``, :mod:`vw_robot.envs.instructions`). ``info["privileged"]`` carries
the simulator's full state for scripted experts only — learned policies must not read it.
``reset(seed=s)`` is reproducible: the same seed gives the same first frame and state. Without
a seed, the next episode's simulator seed is drawn from the env's ``np_random``, so a seeded
first reset fixes the whole sequence.

The time limit is added by :func:`vw_robot.envs.make_env` with gymnasium's ``TimeLimit``.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Mapping
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from vw_robot.envs.instructions import task_instruction
from vw_robot.envs.rendering import (
    FreeCamera,
    ViewLayout,
    ViewsRenderer,
    split_views,
    validate_image_size,
)
from vw_robot.errors import UserError

# Simulator seeds are drawn below this bound so every simulator's seeding accepts them.
_SIM_SEED_BOUND = 2**31 - 1


class SimEnv(gym.Env, abc.ABC):
    """Base class: pixels + proprio observations over a MuJoCo simulator.

    Subclasses build their simulator in ``__init__`` (lazily, inside the process that uses
    it: GL contexts and MuJoCo handles do not survive ``fork``) and implement the ``_sim_*``
    hooks.

    Args:
        task_id: registry id, e.g. ``"metaworld/reach-v3"``.
        image_size: side of the square camera image.
        camera: the camera's name: one in the simulator's model, or one of the suite's own
            (then ``free_cameras`` says where it is); or several joined by ``+``, stacked in
            one image (:class:`~vw_robot.envs.rendering.ViewsRenderer`).
        flipped_cameras: cameras whose image rows are flipped (mounted upside down).
        state_dim: size of the proprio vector.
        action_dim: size of the action vector.
        render_mode: ``None`` or ``"rgb_array"`` (``render()`` returns the current camera image).
        free_cameras: the poses of the suite's own cameras, which the model does not define.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        task_id: str,
        *,
        image_size: int,
        camera: str,
        state_dim: int,
        action_dim: int,
        render_mode: str | None = None,
        flipped_cameras: Collection[str] = (),
        free_cameras: Mapping[str, FreeCamera] | None = None,
    ) -> None:
        super().__init__()
        if render_mode not in (None, "rgb_array"):
            raise UserError(
                f"render_mode={render_mode!r} is not supported; use None or 'rgb_array'."
            )
        self.task_id = task_id
        self.image_size = validate_image_size(image_size)
        self.camera = camera
        # What every frame shows; info["view"] says it at every step (str(view_layout)).
        self.view_layout = ViewLayout.of(camera, self.image_size)
        self._view_text = str(self.view_layout)
        # What to do in words (CALVIN / LIBERO style), beside the id: info["instruction"].
        self.instruction = task_instruction(task_id)
        self.render_mode = render_mode
        self._flipped_cameras = frozenset(flipped_cameras)
        self._free_cameras = dict(free_cameras or {})
        self._renderer: ViewsRenderer | None = None
        self.observation_space = gym.spaces.Dict(
            {
                "pixels": gym.spaces.Box(
                    0, 255, (self.image_size, self.image_size, 3), dtype=np.uint8
                ),
                "state": gym.spaces.Box(-np.inf, np.inf, (state_dim,), dtype=np.float32),
            }
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, (action_dim,), dtype=np.float32)
        self.sim_seed: int | None = None
        # Set by make_env(seed=...): used by the first reset() that is given no seed.
        self.default_seed: int | None = None

    # ----------------------------------------------------------------- simulator hooks
    @property
    @abc.abstractmethod
    def mj_model(self) -> mujoco.MjModel:
        """The simulator's MuJoCo model (rendered by :class:`FastRenderer`)."""

    @property
    @abc.abstractmethod
    def mj_data(self) -> mujoco.MjData:
        """The simulator's MuJoCo data."""

    @abc.abstractmethod
    def _sim_reset(self, sim_seed: int) -> None:
        """Reset the simulator to the initial state that ``sim_seed`` determines."""

    @abc.abstractmethod
    def _sim_step(self, action: np.ndarray) -> float:
        """Apply one action (already clipped to [-1, 1], float64); return the reward."""

    @abc.abstractmethod
    def _sim_success(self) -> bool:
        """Whether the task is solved in the current state."""

    @abc.abstractmethod
    def _sim_proprio(self) -> np.ndarray:
        """Proprioceptive state of the robot, shape (state_dim,)."""

    @abc.abstractmethod
    def _sim_privileged(self) -> dict[str, np.ndarray]:
        """Full simulator state for scripted experts (object poses, goals, ...)."""

    # ----------------------------------------------------------------- gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if seed is None and self.default_seed is not None:
            seed, self.default_seed = self.default_seed, None
        super().reset(seed=seed)
        if seed is not None:
            if not 0 <= int(seed) < _SIM_SEED_BOUND:
                raise UserError(f"seed={seed} must be in [0, {_SIM_SEED_BOUND}).")
            self.sim_seed = int(seed)
        else:
            self.sim_seed = int(self.np_random.integers(_SIM_SEED_BOUND))
        self._sim_reset(self.sim_seed)
        info = self._info()
        info["sim_seed"] = self.sim_seed
        return self._observation(), info

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_space.shape:
            raise ValueError(
                f"{self.task_id}: action has shape {action.shape}, expected "
                f"{self.action_space.shape}."
            )
        if not np.all(np.isfinite(action)):
            raise ValueError(f"{self.task_id}: action contains NaN or inf: {action}.")
        reward = self._sim_step(np.clip(action, -1.0, 1.0))
        # Episodes end by the time limit only; success is reported, not terminal, so that
        # evaluation decides whether to stop early.
        return self._observation(), float(reward), False, False, self._info()

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self._render_pixels()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        super().close()

    # ----------------------------------------------------------------- helpers
    def view(self, name: str) -> tuple[str | FreeCamera, bool]:
        """One camera of the scene: what the renderer takes for it (its name, or the pose of a
        camera of the suite's own) and whether its rows are flipped."""
        return self._free_cameras.get(name, name), name in self._flipped_cameras

    def _render_pixels(self) -> np.ndarray:
        if self._renderer is None:
            # Built on first use so an env made in a parent process never holds a GL context.
            self._renderer = ViewsRenderer(
                self.mj_model,
                self.image_size,
                [self.view(name) for name in split_views(self.camera)],
            )
        return self._renderer.render(self.mj_data)

    def _observation(self) -> dict[str, np.ndarray]:
        return {
            "pixels": self._render_pixels(),
            "state": np.asarray(self._sim_proprio(), dtype=np.float32),
        }

    def _info(self) -> dict[str, Any]:
        return {
            "is_success": bool(self._sim_success()),
            "view": self._view_text,
            "instruction": self.instruction,
            "privileged": self._sim_privileged(),
        }
