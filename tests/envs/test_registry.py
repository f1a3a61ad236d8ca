"""Registry: suites, ids, and the errors a user mistake gets."""

from __future__ import annotations

import pytest

from vw_robot.envs import list_suites, list_tasks, make_env, make_expert, policy_camera

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


@pytest.mark.parametrize(
    ("camera", "size", "message"),
    [
        ("front+nope", 64, r"camera='front\+nope'.*'nope' is not a camera.*corner2"),
        ("front+front", 64, "a view appears twice"),
        ("front+top+workspace", 64, "divisible by 3.*got 64"),
        ("front+top+workspace+corner2+corner", 80, "5 views; at most 4"),
    ],
)
def test_bad_stacked_views_name_the_view(camera, size, message):
    with pytest.raises(ValueError, match=message):
        make_env("metaworld/reach-v3", camera=camera, image_size=size)


@pytest.mark.parametrize("camera", ["front+top", "corner2+gripperPOV"])
def test_stacked_views_are_the_middle_rows_of_each_camera(camera):
    """camera="a+b": one square image, each view the middle half of its own camera's image at
    full resolution (a flipped corner camera too), the same pixels."""
    size = 32
    env, pristine = (
        make_env("metaworld/reach-v3", image_size=size, camera=camera),
        make_env("metaworld/reach-v3"),
    )
    try:
        stacked, _ = env.reset(seed=3)
        assert stacked["pixels"].shape == (size, size, 3)
        # Rendering narrows a view's field of view only while it builds the scene.
        model, unrendered = env.unwrapped.mj_model, pristine.unwrapped.mj_model
        assert model.vis.global_.fovy == unrendered.vis.global_.fovy
        assert (model.cam_fovy == unrendered.cam_fovy).all()
    finally:
        env.close()
        pristine.close()
    for i, view in enumerate(camera.split("+")):
        single = make_env("metaworld/reach-v3", image_size=size, camera=view)
        try:
            alone, _ = single.reset(seed=3)
        finally:
            single.close()
        band = stacked["pixels"][i * size // 2 : (i + 1) * size // 2]
        assert band.std() > 0
        assert (band == alone["pixels"][size // 4 : 3 * size // 4]).all(), view


def test_policy_camera_is_the_tasks_shared_view_for_learned_policies():
    mt10 = list_tasks("metaworld/mt10")
    assert policy_camera(mt10) == "front+top"
    make_env(mt10[0], image_size=64, camera=policy_camera(mt10)).close()  # a view that exists
    assert policy_camera(list_tasks("playground/all")) is None  # the suite's default camera
    assert policy_camera(list_tasks("robosuite/all")) is None
    assert policy_camera([mt10[0], "playground/open-drawer"]) is None  # no shared view


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
