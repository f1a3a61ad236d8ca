"""Every registry task under gymnasium's ``vw_robot/`` namespace.

Usage::

    import gymnasium as gym
    import vw_robot.envs  # registers the ids (cheap: no simulator is imported)

    env = gym.make("vw_robot/metaworld-reach-v3", image_size=64, camera="corner")
    envs = gym.make_vec("vw_robot/robosuite-lift-v0", num_envs=2, vectorization_mode="sync")
    # without importing vw_robot first, let gymnasium import it:
    env = gym.make("vw_robot.envs:vw_robot/playground-open-drawer-v0")
    # Franka Kitchen, registered always, built with the extra: pip install -e ".[kitchen]"
    env = gym.make("vw_robot/kitchen-microwave-v0", camera="static+wrist")

Ids are ``vw_robot/<suite>-<task>-v<N>``: a task name that already ends in a version keeps it
(``metaworld/reach-v3`` -> ``vw_robot/metaworld-reach-v3``), the others get ``-v0``
(``robosuite/lift`` -> ``vw_robot/robosuite-lift-v0``); :func:`gym_id` maps one to the other.

``gymnasium.make`` keyword arguments reach :func:`vw_robot.envs.make_env` (``image_size``,
``camera``, ``seed``, ``render_mode``), except ``max_episode_steps``, which is gymnasium's
own: it sets the one ``TimeLimit`` gymnasium adds (the task's default otherwise;
``max_episode_steps=-1`` for none). Gymnasium 1.x no longer loads ``gymnasium.envs`` entry
points, so ids exist once ``vw_robot.envs`` is imported, or with the ``"vw_robot.envs:"`` prefix.
"""

from __future__ import annotations

import re

import gymnasium as gym

from vw_robot.envs.registry import get_spec, list_tasks, make_env

NAMESPACE = "vw_robot"
ENTRY_POINT = "vw_robot.envs.gym_registration:make_gym_env"
# make_gym_env builds the simulator with this "limit" so that only gymnasium's TimeLimit ends
# episodes: gymnasium.make keeps its max_episode_steps= argument to itself, and Meta-World
# raises once a step passes its own path length.
_NO_LIMIT = 2**31 - 1
_VERSION = re.compile(r"-v\d+$")


def gym_id(task_id: str) -> str:
    """The gymnasium id of a task id: ``"robosuite/lift"`` -> ``"vw_robot/robosuite-lift-v0"``."""
    name = task_id.replace("/", "-")
    return f"{NAMESPACE}/{name}" if _VERSION.search(name) else f"{NAMESPACE}/{name}-v0"


def register_gym_envs() -> None:
    """Register every task of :func:`vw_robot.envs.list_tasks` with gymnasium (idempotent).

    Cheap: reads the registry's task table only; nothing is built and no simulator imported.
    """
    for task_id in list_tasks():
        env_id = gym_id(task_id)
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point=ENTRY_POINT,
            max_episode_steps=get_spec(task_id).max_episode_steps,
            kwargs={"task_id": task_id},
        )


def make_gym_env(
    task_id: str,
    *,
    image_size: int = 64,
    camera: str | None = None,
    seed: int | None = None,
    render_mode: str | None = None,
) -> gym.Env:
    """Entry point of the registered ids: the task's env without a time limit of its own.

    ``gymnasium.make`` wraps the result in ``TimeLimit`` (and its checker and order wrappers);
    the arguments are those of :func:`vw_robot.envs.make_env`.
    """
    env = make_env(
        task_id,
        image_size=image_size,
        camera=camera,
        seed=seed,
        max_episode_steps=_NO_LIMIT,
        render_mode=render_mode,
    )
    return env.env  # make_env's TimeLimit off: gymnasium.make adds the one time limit
