"""A learned policy acts on frames of the camera it was trained on: evaluation takes the camera
from its checkpoint when none is asked for, and refuses another one."""

from __future__ import annotations

import numpy as np
import pytest

from tests.policies.test_batched import SIZE, TASKS, _save, build_tiny_policies
from vw_robot import checkpoint as ckpt
from vw_robot.envs import get_spec, make_env
from vw_robot.envs.rendering import ViewLayout
from vw_robot.errors import UserError
from vw_robot.eval import evaluate
from vw_robot.eval.rollout import check_policy_fits
from vw_robot.eval.seeding import episode_seed
from vw_robot.policies import make_policy
from vw_robot.policies.videoworld import PolicyMismatchError


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    root = tmp_path_factory.mktemp("camera")
    paths = build_tiny_policies(root, TASKS)  # cameras not recorded
    config = ckpt.read_info(paths["bc"]).model_config
    config = {**config, "env": {**config["env"], "camera": "corner3"}}
    paths["corner3"] = _save(root / "bc_corner3", "bc", "ActionHead", config, seed=3)
    return paths


def test_the_policys_camera_fills_an_unset_camera(policies):
    fitted = check_policy_fits(TASKS, str(policies["corner3"]), {"image_size": SIZE}, make_policy)
    assert fitted == {"image_size": SIZE, "camera": "corner3"}
    same = {"image_size": SIZE, "camera": "corner3"}
    assert check_policy_fits(TASKS, str(policies["corner3"]), same, make_policy) == same


def test_another_camera_is_refused_naming_both(policies):
    with pytest.raises(PolicyMismatchError, match=r"camera 'corner3'.*camera='corner2'"):
        check_policy_fits(
            TASKS, str(policies["corner3"]), {"image_size": SIZE, "camera": "corner2"}, make_policy
        )


def test_without_a_recorded_camera_the_arguments_stand(policies):
    given = {"image_size": SIZE, "camera": "corner2"}
    assert check_policy_fits(TASKS, str(policies["bc"]), given, make_policy) == given
    assert check_policy_fits(TASKS, "random", {"image_size": SIZE}, make_policy) == {
        "image_size": SIZE
    }


@pytest.mark.parametrize("batch", [None, 2])
def test_episodes_see_the_policys_camera(policies, batch):
    """The recorded frames of an evaluation with no camera asked for are corner3's."""
    task = TASKS[0]
    results = evaluate(
        [task],
        policy=str(policies["corner3"]),
        episodes_per_task=1,
        env_kwargs={"image_size": SIZE, "max_episode_steps": 2},
        videos_per_task=1,
        batch=batch,
    )
    (episode,) = results[task]
    env = make_env(task, image_size=SIZE, camera="corner3")
    try:
        first, _ = env.reset(seed=episode_seed(0, task, 0))
    finally:
        env.close()
    np.testing.assert_array_equal(episode.frames[0], first["pixels"])


# ------------------------------------------------------------------ the view an env reports
def test_an_env_says_what_its_frames_show():
    env = make_env("metaworld/reach-v3", image_size=SIZE)
    try:
        _, info = env.reset(seed=0)
        assert info["view"] == f"front+top@{SIZE}px"  # the default: the view policies train on
        assert env.unwrapped.view_layout == ViewLayout(("front", "top"), SIZE)
        _, _, _, _, info = env.step(env.action_space.sample())
        assert info["view"] == f"front+top@{SIZE}px"
    finally:
        env.close()


def test_view_layout_text_round_trips_and_bad_text_is_named():
    layout = ViewLayout.of("front+top", 64)
    assert ViewLayout.parse(str(layout)) == layout
    assert layout.describe() == "front+top at 64x64 px: rows 0-31 front, rows 32-63 top"
    with pytest.raises(UserError, match="'corner2' is not of the form"):
        ViewLayout.parse("corner2")


def test_collect_and_run_default_to_the_same_camera():
    from vw_robot.config import CollectConfig, RunConfig

    tasks = ["metaworld/reach-v3", "robosuite/lift", "playground/open-drawer"]
    assert CollectConfig().camera is None  # None: make_env's default, the policy camera
    for task in tasks:
        spec = get_spec(task)
        assert spec.default_camera == (RunConfig().run_camera([task]) or spec.cameras[0])


def test_a_policy_builds_the_env_it_expects_and_refuses_another_view(policies):
    policy = make_policy(str(policies["corner3"]))
    task = TASKS[0]
    assert policy.env_kwargs == {"image_size": SIZE, "camera": "corner3"}
    env = policy.make_env(task, max_episode_steps=3)
    other = make_env(task, image_size=SIZE, camera="corner2")  # same shape, another view
    try:
        obs, info = env.reset(seed=0)
        assert info["view"] == f"corner3@{SIZE}px"
        policy.reset(task_id=task, action_space=env.action_space, view=info["view"])
        assert policy.select_action(obs, info).shape == env.action_space.shape
        obs, info = other.reset(seed=0)
        assert obs["pixels"].shape == (SIZE, SIZE, 3)
        both = rf"trained on frames of corner3 at {SIZE}x{SIZE} px.*show corner2 at {SIZE}x"
        with pytest.raises(PolicyMismatchError, match=both):
            policy.select_action(obs, info)
        with pytest.raises(PolicyMismatchError, match=both):
            policy.reset(task_id=task, action_space=other.action_space, view=info["view"])
    finally:
        env.close()
        other.close()
    with pytest.raises(UserError, match=r"camera=\.\.\.\): the policy sets these"):
        policy.make_env(task, camera="corner2")


def test_the_view_is_checked_through_gymnasium_ids_and_the_server(policies):
    import gymnasium as gym

    from vw_robot.envs import gym_id
    from vw_robot.serving.client import PolicyClient, PolicyServerError
    from vw_robot.serving.server import serve_in_background

    task = TASKS[0]
    env = gym.make(gym_id(task), image_size=SIZE, camera="corner2")
    try:
        obs, info = env.reset(seed=0)
        policy = make_policy(str(policies["corner3"]))
        policy.reset(task_id=task, action_space=env.action_space)
        with pytest.raises(PolicyMismatchError, match="corner3.*corner2"):
            policy.select_action(obs, info)
        with (
            serve_in_background(str(policies["corner3"]), port=0) as server,
            PolicyClient(server.url, timeout=60) as remote,
        ):
            remote.reset(task, action_space=env.action_space, seed=0)
            with pytest.raises(PolicyServerError, match="corner3.*corner2"):
                remote.select_action(obs, info)
    finally:
        env.close()


def test_a_policy_without_a_recorded_camera_checks_only_the_size(policies):
    policy = make_policy(str(policies["bc"]))
    assert policy.view is None and policy.env_kwargs == {"image_size": SIZE}
    env = make_env(TASKS[0], image_size=SIZE, camera="corner2")
    try:
        obs, info = env.reset(seed=0)
        policy.reset(task_id=TASKS[0], action_space=env.action_space)
        policy.select_action(obs, info)
    finally:
        env.close()
