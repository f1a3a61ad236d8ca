"""One registry for every task: ``make_env``, ``list_tasks``, ``list_suites``, ``make_expert``.

Task ids are ``<suite family>/<task>``: ``metaworld/reach-v3``, ``robosuite/lift``,
``playground/open-drawer``, ``kitchen/microwave``. Suites are named lists of task ids:
``metaworld/mt10``, ``metaworld/mt50``, ``robosuite/all``, ``playground/all``,
``playground/videoworld12``, ``playground/long`` (chains and play episodes), ``kitchen/all``
(the seven subtasks), ``kitchen/long`` (the D4RL 4-subtask episode). The kitchen needs the
optional extra ``pip install -e ".[kitchen]"``; its tasks are listed without it.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

# The suite modules are cheap to import: each imports its simulator package only when an env
# is built (metaworld's task names are METAWORLD_V3_TASKS below).
from vw_robot.envs import kitchen_experts as kx
from vw_robot.envs import kitchen_suite as ks
from vw_robot.envs import metaworld_suite as mw
from vw_robot.envs import playground_suite as pg
from vw_robot.envs import robosuite_suite as rs
from vw_robot.envs.rendering import camera_problem, validate_image_size
from vw_robot.errors import UserError


@dataclass(frozen=True)
class TaskSpec:
    """What the registry knows about one task."""

    task_id: str
    cameras: tuple[str, ...]  # the scene's cameras
    max_episode_steps: int  # default time limit
    build: Callable[..., gym.Env]  # (image_size, camera, max_episode_steps, render_mode) -> env
    expert: Callable[[], Any]  # () -> scripted expert
    # The view learned policies train on by default (`vw-robot run camera=auto`), and so the
    # default camera of make_env and `vw-robot collect`; None: cameras[0]
    policy_camera: str | None = None
    # A multi-subtask episode's subtasks (their task ids, in order): a learned policy trained on
    # them acts on it one subtask at a time (vw_robot.eval.rollout), scored by how many it
    # completes (info["completed"]); () for a task of its own.
    subtasks: tuple[str, ...] = ()

    @property
    def default_camera(self) -> str:
        """The camera (or stacked views) ``make_env`` renders when none is asked for: the view
        learned policies train on, so that data, envs and policies agree by default."""
        return self.policy_camera or self.cameras[0]


# The 50 Meta-World v3 task names (MT50) in the package's order, written out so that listing
# tasks (and registering them with gymnasium on `import vw_robot.envs`) does not import
# metaworld (~0.3 s). tests/envs/test_gym_registration.py checks it against
# metaworld.env_dict.ALL_V3_ENVIRONMENTS.
METAWORLD_V3_TASKS = (
    "assembly-v3",
    "basketball-v3",
    "bin-picking-v3",
    "box-close-v3",
    "button-press-topdown-v3",
    "button-press-topdown-wall-v3",
    "button-press-v3",
    "button-press-wall-v3",
    "coffee-button-v3",
    "coffee-pull-v3",
    "coffee-push-v3",
    "dial-turn-v3",
    "disassemble-v3",
    "door-close-v3",
    "door-lock-v3",
    "door-open-v3",
    "door-unlock-v3",
    "hand-insert-v3",
    "drawer-close-v3",
    "drawer-open-v3",
    "faucet-open-v3",
    "faucet-close-v3",
    "hammer-v3",
    "handle-press-side-v3",
    "handle-press-v3",
    "handle-pull-side-v3",
    "handle-pull-v3",
    "lever-pull-v3",
    "pick-place-wall-v3",
    "pick-out-of-hole-v3",
    "pick-place-v3",
    "plate-slide-v3",
    "plate-slide-side-v3",
    "plate-slide-back-v3",
    "plate-slide-back-side-v3",
    "peg-insert-side-v3",
    "peg-unplug-side-v3",
    "soccer-v3",
    "stick-push-v3",
    "stick-pull-v3",
    "push-v3",
    "push-wall-v3",
    "push-back-v3",
    "reach-v3",
    "reach-wall-v3",
    "shelf-place-v3",
    "sweep-into-v3",
    "sweep-v3",
    "window-open-v3",
    "window-close-v3",
)


def _metaworld_specs() -> dict[str, TaskSpec]:
    def build(name: str) -> Callable[..., gym.Env]:
        return lambda **kw: mw.MetaWorldEnv(name, **kw)

    def expert(name: str) -> Callable[[], Any]:
        return lambda: mw.MetaWorldExpert(name)

    return {
        f"metaworld/{name}": TaskSpec(
            f"metaworld/{name}",
            mw.CAMERAS,
            mw.DEFAULT_MAX_EPISODE_STEPS,
            build(name),
            expert(name),
            mw.POLICY_CAMERA,
        )
        for name in METAWORLD_V3_TASKS
    }


def _robosuite_specs() -> dict[str, TaskSpec]:
    def build(name: str) -> Callable[..., gym.Env]:
        return lambda **kw: rs.RobosuiteEnv(name, **kw)

    def expert(name: str) -> Callable[[], Any]:
        return lambda: rs.RobosuiteExpert(name)

    return {
        f"robosuite/{name}": TaskSpec(
            f"robosuite/{name}",
            rs.CAMERAS,
            rs.default_max_episode_steps(name),
            build(name),
            expert(name),
        )
        for name in rs.TASK_NAMES
    }


def _playground_specs() -> dict[str, TaskSpec]:
    def build(name: str) -> Callable[..., gym.Env]:
        return lambda **kw: pg.build(name, **kw)

    def expert(name: str) -> Callable[[], Any]:
        return lambda: pg.make_playground_expert(name)

    return {
        f"playground/{name}": TaskSpec(
            f"playground/{name}",
            pg.CAMERAS,
            pg.default_max_episode_steps(name),
            build(name),
            expert(name),
        )
        for name in (*pg.SUBTASK_TASKS, *pg.LONG_TASKS)
    }


def _kitchen_specs() -> dict[str, TaskSpec]:
    def build(name: str) -> Callable[..., gym.Env]:
        return lambda **kw: ks.KitchenEnv(name, **kw)

    def expert(name: str) -> Callable[[], Any]:
        return lambda: kx.KitchenExpert(name)

    return {
        f"kitchen/{name}": TaskSpec(
            f"kitchen/{name}",
            ks.CAMERAS,
            ks.default_max_episode_steps(name),
            build(name),
            expert(name),
            subtasks=tuple(f"kitchen/{n}" for n in ks.subtask_names(name)),
        )
        for name in ks.TASK_NAMES
    }


_SPECS: dict[str, TaskSpec] | None = None


def _specs() -> dict[str, TaskSpec]:
    global _SPECS
    if _SPECS is None:
        _SPECS = {
            **_metaworld_specs(),
            **_robosuite_specs(),
            **_playground_specs(),
            **_kitchen_specs(),
        }
    return _SPECS


def list_suites() -> dict[str, list[str]]:
    """Every suite name with its task ids, in a stable order."""
    specs = _specs()
    return {
        "metaworld/mt10": [f"metaworld/{n}" for n in mw.MT10_TASKS],
        "metaworld/mt50": [t for t in specs if t.startswith("metaworld/")],
        "robosuite/all": [t for t in specs if t.startswith("robosuite/")],
        "playground/all": [f"playground/{n}" for n in pg.SUBTASK_TASKS],
        "playground/videoworld12": [pg.task_id(n) for n in pg.VIDEOWORLD_SUBTASKS],
        "playground/long": [f"playground/{n}" for n in pg.LONG_TASKS],
        "kitchen/all": [f"kitchen/{n}" for n in ks.SUBTASKS],
        "kitchen/long": [f"kitchen/{n}" for n in ks.SEQUENCES],
    }


def list_tasks(suite: str | None = None) -> list[str]:
    """Task ids of one suite (e.g. ``"metaworld/mt10"``), or of every registered task.

    Raises:
        ValueError: ``suite`` is unknown; the message lists the known suites.
    """
    if suite is None:
        return list(_specs())
    suites = list_suites()
    if suite not in suites:
        raise UserError(_unknown_message("suite", suite, list(suites), list(suites)))
    return list(suites[suite])


def resolve_tasks(suite: str | None = None, tasks: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The task ids a job should run: explicit ``tasks`` win over ``suite``; all are checked."""
    if tasks:
        for task_id in tasks:
            get_spec(task_id)
        return list(tasks)
    if suite is None:
        raise UserError("Give a suite (e.g. suite=metaworld/mt10) or a list of tasks.")
    return list_tasks(suite)


def get_spec(task_id: str) -> TaskSpec:
    """The registry entry of ``task_id``.

    Raises:
        ValueError: unknown id; the message lists the known suites and the closest task ids.
    """
    specs = _specs()
    if task_id not in specs:
        raise UserError(_unknown_message("task id", task_id, list(specs), list(list_suites())))
    return specs[task_id]


def policy_camera(task_ids: list[str] | tuple[str, ...]) -> str | None:
    """The view learned policies of these tasks train on by default: the tasks' shared
    ``policy_camera``, or ``None`` (each suite's default camera) when they do not share one."""
    cameras = {get_spec(task_id).policy_camera for task_id in task_ids}
    return cameras.pop() if len(cameras) == 1 else None


def make_env(
    task_id: str,
    *,
    image_size: int = 64,
    camera: str | None = None,
    seed: int | None = None,
    max_episode_steps: int | None = None,
    render_mode: str | None = None,
    start: str | None = None,
) -> gym.Env:
    """Build a registered task behind the vw_robot env contract (see ``vw_robot.envs.base``).

    Args:
        task_id: e.g. ``"metaworld/reach-v3"``, ``"robosuite/lift"``; see :func:`list_tasks`.
        image_size: side of the square RGB observation, in pixels.
        camera: a camera of the task's scene, or several joined by ``+`` (``"front+top"``:
            the views stacked in one image, each the middle rows of its camera's image);
            ``None`` picks the task's default, the view learned policies train on
            (``TaskSpec.default_camera``: ``front+top`` on Meta-World, ``agentview`` on
            robosuite, ``front`` in the playground). ``policy.make_env(task_id)`` builds the
            env a trained policy expects.
        seed: seed used by the first ``reset()`` that is given none (and the action space).
        max_episode_steps: time limit; ``None`` uses the task's default.
        render_mode: ``None`` or ``"rgb_array"``.
        start: where a single playground subtask starts: ``"home"`` (the default) or
            ``"random"`` (a random arm pose and gripper, or where another subtask's expert
            leaves the scene: the states chains start from); ``None``: the task's default.
            Other tasks take only ``None``.

    Returns:
        A ``gymnasium.Env`` wrapped in ``TimeLimit``.
    """
    spec = get_spec(task_id)
    image_size = validate_image_size(image_size)
    asked = camera
    if camera is None:
        camera = spec.default_camera
    if problem := camera_problem(camera, spec.cameras, image_size):
        default = "" if asked is not None else " (the default camera; pass camera=... for another)"
        raise UserError(f"camera={camera!r}{default} for {task_id}: {problem}.")
    if max_episode_steps is None:
        max_episode_steps = spec.max_episode_steps
    elif (
        isinstance(max_episode_steps, bool)
        or not isinstance(max_episode_steps, int)
        or (max_episode_steps < 1)
    ):
        raise UserError(f"max_episode_steps={max_episode_steps!r} must be a positive int.")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise UserError(f"seed={seed!r} must be a non-negative int or None.")
    extra = {}
    if start is not None:
        if task_id.split("/", 1)[-1] not in pg.SUBTASK_TASKS or not task_id.startswith(
            "playground/"
        ):
            raise UserError(
                f"start={start!r} for {task_id}: only single playground subtasks choose where "
                "they start."
            )
        extra["start"] = start
    env = spec.build(
        image_size=image_size,
        camera=camera,
        max_episode_steps=max_episode_steps,
        render_mode=render_mode,
        **extra,
    )
    env.default_seed = seed
    if seed is not None:
        env.action_space.seed(seed)
    return gym.wrappers.TimeLimit(env, max_episode_steps=max_episode_steps)


def make_vector_env(
    task_id: str,
    num_envs: int,
    *,
    asynchronous: bool = True,
    seed: int | None = None,
    **make_env_kwargs: Any,
) -> gym.vector.VectorEnv:
    """``num_envs`` copies of a task, stepped together (gymnasium's vector API).

    The async version starts its workers with ``spawn``: with ``fork`` it hangs as soon as the
    parent holds a GL context. Each worker builds its own simulator. With ``seed``, copy k
    uses ``seed + k`` for its first reset.
    """
    if num_envs < 1:
        raise UserError(f"num_envs={num_envs} must be >= 1.")
    get_spec(task_id)  # fail here, not inside a worker
    fns = [
        functools.partial(
            make_env, task_id, seed=None if seed is None else seed + k, **make_env_kwargs
        )
        for k in range(num_envs)
    ]
    if asynchronous:
        return gym.vector.AsyncVectorEnv(fns, context="spawn")
    return gym.vector.SyncVectorEnv(fns)


def make_expert(task_id: str) -> Any:
    """The scripted expert of ``task_id``.

    Returns:
        An object with ``reset()`` and ``__call__(obs, info) -> action`` (float32 in [-1, 1]);
        it reads ``info["privileged"]``, so it only drives envs made by :func:`make_env`.
    """
    return get_spec(task_id).expert()


def _unknown_message(kind: str, value: str, candidates: list[str], suites: list[str]) -> str:
    close = difflib.get_close_matches(value, candidates, n=5, cutoff=0.4)
    if not close:
        # Match on the part after the suite prefix too ("reach" -> "metaworld/reach-v3").
        tail = value.split("/")[-1]
        close = [c for c in candidates if tail and tail in c][:5]
    hint = f" Closest: {', '.join(close)}." if close else ""
    return f"Unknown {kind} {value!r}. Known suites: {', '.join(suites)}.{hint}"
