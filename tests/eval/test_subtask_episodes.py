"""A multi-subtask episode (Franka Kitchen's D4RL episode, kitchen/d4rl-4): a policy trained on
the subtasks is told each in turn and reset at every switch, as CALVIN's are; the episode is
scored by the subtasks completed, per process and batched alike."""

from __future__ import annotations

import pytest

from vw_robot.envs import get_spec, make_env, make_expert
from vw_robot.eval import evaluate
from vw_robot.eval.report import summarize
from vw_robot.eval.rollout import check_policy_fits, follows_subtasks, run_episode
from vw_robot.eval.seeding import episode_seed
from vw_robot.eval.tables import markdown_table
from vw_robot.policies.videoworld import PolicyMismatchError

EPISODE = "kitchen/d4rl-4"
SUBTASKS = ("kitchen/microwave", "kitchen/kettle", "kitchen/light-switch", "kitchen/slide-cabinet")


class SubtaskExperts:
    """Stands in for a learned policy trained on the four subtasks (``task_ids``), not on the
    episode: it acts with the expert of the subtask it was last reset with."""

    def __init__(self, task_ids=SUBTASKS):
        self.task_ids = list(task_ids)
        self.told: list[tuple[str, int]] = []

    def check_task(self, task_id, action_space=None):
        if task_id not in self.task_ids:
            raise PolicyMismatchError(f"not trained for {task_id!r}")

    def reset(self, *, task_id, action_space, seed=None):
        self.check_task(task_id)
        self.told.append((task_id, seed))
        self.expert = make_expert(task_id)

    def select_action(self, obs, info):
        return self.expert(obs, info)


def test_the_episode_names_its_subtasks_and_who_follows_them():
    assert get_spec(EPISODE).subtasks == SUBTASKS
    assert get_spec("kitchen/kettle").subtasks == ()
    assert follows_subtasks(SubtaskExperts(), EPISODE)
    assert not follows_subtasks(SubtaskExperts([*SUBTASKS, EPISODE]), EPISODE)  # trained on it
    assert not follows_subtasks(make_expert(EPISODE), EPISODE)  # scripted: the whole episode
    assert not follows_subtasks(SubtaskExperts(), "kitchen/kettle")


def test_a_subtask_policy_is_told_each_subtask_in_turn_and_scored_by_those_completed():
    # 90 steps: the microwave's expert opens it (by step 60 on this seed), the kettle's begins.
    env = make_env(EPISODE, image_size=16, max_episode_steps=90)
    policy = SubtaskExperts()
    seed = episode_seed(3, EPISODE, 0)
    try:
        result = run_episode(env, policy, EPISODE, seed=seed)
    finally:
        env.close()
    assert result.error is None and result.completed == 1 and not result.success
    assert policy.told == [(SUBTASKS[0], seed), (SUBTASKS[1], seed + 1)]
    assert result.success == (result.completed == 4)
    assert result.to_json()["completed"] == result.completed
    summary = summarize({EPISODE: [result]})
    row = summary["tasks"][EPISODE]
    assert row["mean_completed"] == result.completed and sum(row["completed_counts"]) == 1
    assert len(row["completed_counts"]) == 5
    assert f"{EPISODE}: {result.completed:.2f} subtasks completed" in markdown_table(summary)
    # Batched evaluation, the same episode: the same switches and score.
    batched = evaluate(
        [EPISODE],
        policy="subtasks",
        episodes_per_task=1,
        base_seed=3,
        env_kwargs={"image_size": 16, "max_episode_steps": 90},
        policy_factory=lambda _: SubtaskExperts(),
        batch=1,
    )[EPISODE][0]
    assert (batched.completed, batched.steps, batched.success) == (1, 90, False)


def test_a_policy_missing_a_subtask_is_refused_before_any_episode():
    policy = SubtaskExperts([s for s in SUBTASKS if s != "kitchen/kettle"])
    with pytest.raises(PolicyMismatchError, match="kitchen/kettle"):
        check_policy_fits([EPISODE], "subtasks", {"image_size": 16}, lambda _: policy)
