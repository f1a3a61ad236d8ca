"""A learned policy acts on frames of the camera it was trained on: evaluation takes the camera
from its checkpoint when none is asked for, and refuses another one."""

from __future__ import annotations

import numpy as np
import pytest

from tests.policies.test_batched import SIZE, TASKS, _save, build_tiny_policies
from vw_robot import checkpoint as ckpt
from vw_robot.envs import make_env
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
