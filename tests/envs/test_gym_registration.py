"""Every registry task is a gymnasium id under ``vw_robot/``: make, make_vec, spec, errors."""

from __future__ import annotations

import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from vw_robot.envs import get_spec, gym_id, list_tasks
from vw_robot.envs.registry import METAWORLD_V3_TASKS

# The cheapest scene to build and reset (no third-party simulator).
PLAYGROUND_ID = "vw_robot/playground-open-drawer-v0"


def _time_limits(env: gym.Env) -> list[gym.wrappers.TimeLimit]:
    found = []
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            found.append(env)
        env = env.env
    return found


def test_every_task_has_a_versioned_id_with_its_time_limit():
    registered = {k for k in gym.registry if k.startswith("vw_robot/")}
    tasks = list_tasks()
    assert registered == {gym_id(t) for t in tasks}
    assert len(registered) == len(tasks)  # the naming is one-to-one
    for task_id in tasks:
        spec = gym.spec(gym_id(task_id))
        assert spec.namespace == "vw_robot" and spec.version is not None
        assert spec.kwargs == {"task_id": task_id}
        assert spec.max_episode_steps == get_spec(task_id).max_episode_steps
    assert gym_id("metaworld/reach-v3") == "vw_robot/metaworld-reach-v3"
    assert gym_id("robosuite/lift") == "vw_robot/robosuite-lift-v0"


def test_metaworld_task_list_matches_the_package():
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    assert tuple(ALL_V3_ENVIRONMENTS) == METAWORLD_V3_TASKS


def test_registration_imports_no_simulator_and_module_prefix_works():
    code = (
        "import sys, gymnasium as gym\n"
        f"env = gym.make('vw_robot.envs:{PLAYGROUND_ID}', image_size=16)\n"
        "print(env.spec.id, 'metaworld' in sys.modules, 'robosuite' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == [PLAYGROUND_ID, "False", "False"]


def test_make_passes_kwargs_carries_spec_and_has_one_time_limit():
    env = gym.make(PLAYGROUND_ID, image_size=32, camera="top", seed=3)
    try:
        assert env.unwrapped.image_size == 32 and env.unwrapped.camera == "top"
        assert env.spec.id == PLAYGROUND_ID and env.unwrapped.spec.id == PLAYGROUND_ID
        assert env.spec.kwargs["image_size"] == 32
        assert [t._max_episode_steps for t in _time_limits(env)] == [360]
        obs, info = env.reset()
        assert obs["pixels"].shape == (32, 32, 3) and info["sim_seed"] == 3
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env.unwrapped)
        assert not [w for w in caught if "render mode" in str(w.message)]
    finally:
        env.close()


def test_max_episode_steps_is_gymnasiums_one_time_limit():
    env = gym.make(PLAYGROUND_ID, image_size=16, max_episode_steps=3)
    try:
        assert [t._max_episode_steps for t in _time_limits(env)] == [3]
        assert env.spec.max_episode_steps == 3
        env.reset(seed=0)
        zero = np.zeros(env.action_space.shape, np.float32)
        assert [env.step(zero)[3] for _ in range(3)] == [False, False, True]
    finally:
        env.close()


def test_make_vec_sync_two_envs():
    envs = gym.make_vec(PLAYGROUND_ID, num_envs=2, vectorization_mode="sync", image_size=16)
    try:
        obs, _ = envs.reset(seed=0)
        assert obs["pixels"].shape == (2, 16, 16, 3)
        obs, reward, terminated, truncated, _ = envs.step(envs.action_space.sample())
        assert obs["state"].shape[0] == 2 and reward.shape == (2,)
        assert envs.spec.id == PLAYGROUND_ID
    finally:
        envs.close()


def test_unknown_id_suggests_the_closest_and_bad_kwargs_name_the_value():
    with pytest.raises(gym.error.NameNotFound, match="metaworld-reach"):
        gym.make("vw_robot/metaworld-rech-v3")
    with pytest.raises(gym.error.VersionNotFound):
        gym.make("vw_robot/metaworld-reach-v9")
    with pytest.raises(ValueError, match="camera='agentview'.*corner2"):
        gym.make("vw_robot/metaworld-reach-v3", camera="agentview")


@pytest.mark.slow
def test_metaworld_runs_past_its_default_path_length():
    # Meta-World raises once a step passes its own path length; gymnasium's limit must win.
    env = gym.make("vw_robot/metaworld-reach-v3", image_size=16, max_episode_steps=503)
    try:
        env.reset(seed=0)
        zero = np.zeros(4, np.float32)
        steps = 1
        while not env.step(zero)[3]:
            steps += 1
        assert steps == 503
    finally:
        env.close()


def test_make_vec_async_with_spawn():
    # spawn, not fork: fork hangs once the parent holds a GL context (docs/simulators.md).
    envs = gym.make_vec(
        PLAYGROUND_ID,
        num_envs=2,
        vectorization_mode="async",
        vector_kwargs={"context": "spawn"},
        image_size=16,
    )
    try:
        obs, _ = envs.reset(seed=0)
        obs, *_ = envs.step(envs.action_space.sample())
        assert obs["pixels"].shape == (2, 16, 16, 3)
    finally:
        envs.close()
