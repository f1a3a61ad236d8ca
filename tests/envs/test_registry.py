"""Registry: suites, ids, and the errors a user mistake gets."""

from __future__ import annotations

import pytest

from vw_robot.envs import list_suites, list_tasks, make_env, make_expert

TASKS = list_tasks()


def test_suites_have_expected_sizes():
    suites = list_suites()
    assert len(suites["metaworld/mt10"]) == 10
    assert len(suites["metaworld/mt50"]) == 50
    assert set(suites["metaworld/mt10"]) <= set(suites["metaworld/mt50"])
    assert {
        "robosuite/lift",
        "robosuite/stack",
        "robosuite/pick-place-can",
        "robosuite/door",
    } <= set(suites["robosuite/all"])
    assert set(TASKS) == set().union(*suites.values())  # every task is in some suite


def test_unknown_task_lists_suites_and_closest_names():
    with pytest.raises(ValueError) as err:
        make_env("metaworld/reach-v2")
    message = str(err.value)
    assert "metaworld/mt10" in message and "robosuite/all" in message
    assert "metaworld/reach-v3" in message


def test_unknown_task_by_short_name_suggests_full_id():
    with pytest.raises(ValueError, match="robosuite/lift"):
        make_expert("lift")


def test_unknown_suite_lists_known_suites():
    with pytest.raises(ValueError, match="metaworld/mt50"):
        list_tasks("metaworld/mt11")


@pytest.mark.parametrize("size", [0, 8, 2048, 64.0, "64", True])
def test_bad_image_size_names_value_and_range(size):
    with pytest.raises(ValueError, match=r"image_size=.*\[16, 1024\]"):
        make_env("metaworld/reach-v3", image_size=size)


def test_bad_camera_lists_allowed_cameras():
    with pytest.raises(ValueError, match="camera='agentview'.*corner2"):
        make_env("metaworld/reach-v3", camera="agentview")


@pytest.mark.parametrize("steps", [0, -5, 2.5])
def test_bad_max_episode_steps(steps):
    with pytest.raises(ValueError, match="max_episode_steps"):
        make_env("metaworld/reach-v3", max_episode_steps=steps)


def test_mujoco_gl_default_is_headless_and_user_value_kept(monkeypatch):
    import os

    import vw_robot

    assert os.environ["MUJOCO_GL"]  # set by vw_robot on Linux when unset
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    vw_robot._select_headless_gl()
    assert os.environ["MUJOCO_GL"] == "osmesa"
    monkeypatch.delenv("MUJOCO_GL")
    vw_robot._select_headless_gl()
    assert os.environ["MUJOCO_GL"] == "egl"
