"""robosuite suite through the registry: contract, check_env, determinism, experts."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from tests.envs.contract import assert_contract, assert_reset_determinism, run_expert
from vw_robot.envs import list_tasks, make_env, make_expert

TASKS = list_tasks("robosuite/all")


@pytest.mark.parametrize("task_id", TASKS)
def test_contract_and_determinism(task_id):
    env = make_env(task_id, image_size=32)
    try:
        assert_contract(env, 32)
        assert_reset_determinism(env)
    finally:
        env.close()


@pytest.mark.parametrize("task_id", TASKS)
def test_check_env(task_id):
    env = make_env(task_id, image_size=32, render_mode="rgb_array")
    try:
        check_env(env.unwrapped)
    finally:
        env.close()


def test_two_envs_render_their_own_scene_in_one_process():
    # robosuite's own renderer returns the other env's image here; ours must not.
    lift = make_env("robosuite/lift", image_size=32)
    door = make_env("robosuite/door", image_size=32)
    try:
        lift_alone = lift.reset(seed=0)[0]["pixels"]
        door.reset(seed=0)
        lift_again = lift.reset(seed=0)[0]["pixels"]
        door_frame = door.step(np.zeros(7, np.float32))[0]["pixels"]
        np.testing.assert_array_equal(lift_alone, lift_again)
        assert not np.array_equal(lift_again, door_frame)
    finally:
        lift.close()
        door.close()


@pytest.mark.parametrize("task_id", TASKS)
def test_expert_succeeds_through_the_registry(task_id):
    env = make_env(task_id, image_size=16)
    try:
        success, steps = run_expert(env, make_expert(task_id), seed=0)
    finally:
        env.close()
    assert success, f"{task_id}: no success in {steps} steps"
