"""Environments: one registry and one contract over Meta-World, robosuite and the playground.

Example:
    >>> from vw_robot.envs import make_env, make_expert, list_tasks
    >>> env = make_env("metaworld/reach-v3", image_size=64)
    >>> obs, info = env.reset(seed=0)
    >>> expert = make_expert("metaworld/reach-v3")
    >>> obs, reward, terminated, truncated, info = env.step(expert(obs, info))

Importing this package also registers every task with gymnasium under ``vw_robot/`` (see
:mod:`vw_robot.envs.gym_registration`): ``gymnasium.make("vw_robot/metaworld-reach-v3")``.
"""

from __future__ import annotations

import vw_robot  # noqa: F401  (selects the headless GL backend before mujoco is imported)
from vw_robot.envs.gym_registration import gym_id, register_gym_envs
from vw_robot.envs.registry import (
    TaskSpec,
    get_spec,
    list_suites,
    list_tasks,
    make_env,
    make_expert,
    make_vector_env,
    policy_camera,
    resolve_tasks,
)

__all__ = [
    "TaskSpec",
    "get_spec",
    "gym_id",
    "list_suites",
    "list_tasks",
    "make_env",
    "make_expert",
    "make_vector_env",
    "policy_camera",
    "resolve_tasks",
]

register_gym_envs()
