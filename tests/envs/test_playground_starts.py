"""Random starts of single playground subtasks (``start="random"``): valid, away from HOME,
reproducible, solved by the scripted expert; ``start="home"`` resets as before."""

from __future__ import annotations

import numpy as np
import pytest

from vw_robot.envs import make_expert
from vw_robot.envs import playground_tasks as pt
from vw_robot.envs.playground_experts import MIN_HOME_DISTANCE
from vw_robot.envs.playground_scene import HOME, SceneState
from vw_robot.envs.playground_suite import PlaygroundEnv, task_id
from vw_robot.errors import UserError

SIZE = 16


def _state(info) -> SceneState:
    return SceneState.from_privileged(info["privileged"])


@pytest.mark.parametrize("subtask", pt.SUBTASK_NAMES)
def test_random_start_holds_the_precondition_away_from_home(subtask):
    env = PlaygroundEnv(subtask, image_size=SIZE, start="random")
    kinds = set()
    for seed in range(4):
        _, info = env.reset(seed=seed)
        state = _state(info)
        assert pt.SUBTASKS[subtask].precondition(state, 0.0), (subtask, seed, info["start"])
        assert np.linalg.norm(state.grip - HOME) >= MIN_HOME_DISTANCE
        assert not info["is_success"]
        kinds.add(info["start"].split(":")[0])
    env.close()
    assert kinds <= {"arm", "after"}


def test_random_starts_vary_the_gripper_and_repeat_per_seed():
    env = PlaygroundEnv("open_drawer", image_size=SIZE, start="random")
    gaps, grips = set(), []
    for seed in range(12):
        _, info = env.reset(seed=seed)
        gaps.add(_state(info).gap > 0.05)
        grips.append(_state(info).grip)
    _, again = env.reset(seed=11)
    env.close()
    assert gaps == {True, False}  # open and closed grippers both occur
    np.testing.assert_array_equal(_state(again).grip, grips[-1])


def test_home_start_is_unchanged_and_options_override_per_reset():
    env = PlaygroundEnv("open_drawer", image_size=SIZE)
    _, info = env.reset(seed=5)
    expected = pt.sample_start("open_drawer", np.random.default_rng(5))
    assert info["start"] == "home"
    assert np.max(np.abs(_state(info).grip - expected.grip)) < 0.01
    _, info = env.reset(seed=5, options={"start": "random"})
    assert info["start"] != "home"
    _, info = env.reset(seed=5)  # back to the constructor's mode
    assert info["start"] == "home"
    env.close()


@pytest.mark.parametrize("subtask", ["open_drawer", "push_red_block_left", "stack_block"])
def test_expert_solves_from_random_starts(subtask):
    env = PlaygroundEnv(subtask, image_size=SIZE, start="random")
    expert = make_expert(task_id(subtask))
    solved = 0
    for seed in range(3):
        obs, info = env.reset(seed=seed)
        expert.reset()
        for _ in range(360):
            obs, _, _, _, info = env.step(expert(obs, info))
            if info["is_success"]:
                solved += 1
                break
    env.close()
    assert solved >= 2


def test_bad_start_modes_are_refused_naming_the_key():
    with pytest.raises(UserError, match="start='sideways'"):
        PlaygroundEnv("open_drawer", start="sideways")
    env = PlaygroundEnv("open_drawer", image_size=SIZE)
    with pytest.raises(UserError, match="start='up'"):
        env.reset(seed=0, options={"start": "up"})
    with pytest.raises(UserError, match="'speed'"):
        env.reset(seed=0, options={"speed": 2})
    env.close()
