"""Every registered task has a natural-language instruction, and each maps back to its id."""

from __future__ import annotations

import pytest

from vw_robot.envs.instructions import INSTRUCTIONS, task_for_instruction, task_instruction
from vw_robot.envs.registry import METAWORLD_V3_TASKS, list_tasks
from vw_robot.errors import UserError


def test_every_registered_task_has_one_instruction_of_its_own():
    tasks = list_tasks()
    assert set(INSTRUCTIONS) == set(tasks)
    assert len(set(INSTRUCTIONS.values())) == len(INSTRUCTIONS)  # one task per instruction
    assert len([t for t in tasks if t.startswith("metaworld/")]) == len(METAWORLD_V3_TASKS) == 50
    for task_id in tasks:
        text = task_instruction(task_id)
        assert text and text == text.strip() and text[0].islower() and not text.endswith(".")
        assert task_for_instruction(text) == task_id


def test_known_instructions_and_unknown_ids():
    assert task_instruction("metaworld/pick-place-v3") == "pick the puck and place it at the goal"
    assert task_instruction("playground/open-drawer") == "open the drawer"
    assert task_for_instruction("fold the towel") is None
    with pytest.raises(UserError, match=r"'metaworld/pick-place' is not a registered task.*"):
        task_instruction("metaworld/pick-place")


def test_envs_give_the_instruction_beside_the_id():
    from vw_robot.envs import make_env
    from vw_robot.envs.playground_suite import task_id

    env = make_env("metaworld/reach-v3", image_size=32)
    try:
        _, info = env.reset(seed=0)
        assert info["instruction"] == task_instruction("metaworld/reach-v3")
        _, _, _, _, info = env.step(env.action_space.sample())
        assert info["instruction"] == task_instruction("metaworld/reach-v3")
    finally:
        env.close()
    chain = make_env("playground/chain", image_size=32)
    try:
        _, info = chain.reset(seed=0)
        assert info["instruction"] == task_instruction(task_id(info["subtask"]))
    finally:
        chain.close()
