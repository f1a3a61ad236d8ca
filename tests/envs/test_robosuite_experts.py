"""robosuite_experts: task table, seeded-reset determinism and scripted experts (fast subset).

The full measurement (50 seeded episodes per task) is ``python -m vw_robot.envs.robosuite_experts``.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("robosuite")

from vw_robot.envs.robosuite_experts import (  # noqa: E402  (after the importorskip)
    ROBOSUITE_EXPERTS,
    ROBOSUITE_TASKS,
    make_expert,
    make_robosuite_env,
    reseed,
    run_expert_episode,
)

TASKS = sorted(ROBOSUITE_TASKS)
EXPERT_SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def envs():
    """One env per task, shared by this module's tests (construction costs ~1-3 s)."""
    cache: dict[str, object] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = make_robosuite_env(name)
        return cache[name]

    yield get
    for env in cache.values():
        env.close()


def test_registry_keys_match():
    names = {"lift", "stack", "pick_place_can", "door"}
    assert set(ROBOSUITE_TASKS) == set(ROBOSUITE_EXPERTS) == names
    for kwargs in ROBOSUITE_TASKS.values():
        assert callable(kwargs["controller_configs"])  # built lazily, per env
        assert kwargs["hard_reset"] is False and kwargs["use_camera_obs"] is False
        assert kwargs["control_freq"] == 20 and kwargs["horizon"] >= 200


def test_unknown_task_lists_known_names():
    with pytest.raises(ValueError, match="pick_place_can"):
        make_robosuite_env("no_such_task")
    with pytest.raises(ValueError, match="lift"):
        make_expert("Lift")


def _reset(env, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    reseed(env, seed)
    obs = env.reset()
    return env.sim.data.qpos.copy(), {k: np.array(v, copy=True) for k, v in obs.items()}


@pytest.mark.parametrize("name", TASKS)
def test_reseed_makes_reset_deterministic(envs, name):
    env = envs(name)
    rng = np.random.default_rng(0)
    qpos_a, obs_a = _reset(env, 3)
    for _ in range(5):  # disturb the sim and the RNG stream in between
        env.step(rng.uniform(-1, 1, env.action_dim))
    qpos_other, obs_other = _reset(env, 4)
    qpos_b, obs_b = _reset(env, 3)

    np.testing.assert_array_equal(qpos_a, qpos_b)
    assert obs_a.keys() == obs_b.keys()
    for key in obs_a:
        np.testing.assert_array_equal(obs_a[key], obs_b[key], err_msg=key)
    # A different seed moves the objects (and the robot's init noise).
    assert not np.array_equal(obs_a["object-state"], obs_other["object-state"])
    assert not np.array_equal(obs_a["robot0_joint_pos"], obs_other["robot0_joint_pos"])


def test_same_seed_same_reset_across_env_instances(envs):
    other = make_robosuite_env("lift")
    try:
        qpos_a, _ = _reset(envs("lift"), 7)
        qpos_b, _ = _reset(other, 7)
        np.testing.assert_array_equal(qpos_a, qpos_b)
    finally:
        other.close()


@pytest.mark.parametrize("name", TASKS)
def test_expert_succeeds(envs, name):
    env = envs(name)
    expert = make_expert(name, env)
    # Action format: float32, env action dim, within [-1, 1].
    reseed(env, 0)
    action = expert(env.reset())
    assert action.dtype == np.float32 and action.shape == (env.action_dim,)
    assert np.all(np.abs(action) <= 1.0)

    results = [run_expert_episode(env, expert, seed) for seed in EXPERT_SEEDS]
    assert all(ok for ok, _ in results), results


def test_expert_reset_clears_phase(envs):
    env = envs("lift")
    expert = ROBOSUITE_EXPERTS["lift"]()
    reseed(env, 0)
    obs = env.reset()
    for _ in range(40):
        obs, *_ = env.step(expert(obs))
    assert expert.phase > 0
    expert.reset()
    assert expert.phase == 0 and expert.counter == 0
