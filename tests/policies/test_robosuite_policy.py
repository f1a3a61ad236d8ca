"""A learned policy on robosuite: a BC head with the robosuite_cpu recipe (task
embedding, proprio state, shifts) trains on the experts' 7-D actions and acts in closed loop."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vw_robot import checkpoint as ckpt
from vw_robot.cli import main
from vw_robot.envs import make_env
from vw_robot.policies import make_policy

SIZE = 32
TASKS = ["robosuite/lift", "robosuite/door"]


@pytest.fixture(scope="module")
def bc(tmp_path_factory):
    root = tmp_path_factory.mktemp("robosuite")
    data = root / "data"
    collect = ["collect", f"tasks=[{','.join(TASKS)}]", "episodes_per_task=1"]
    assert main([*collect, f"image_size={SIZE}", f"out={data}"]) == 0
    train = ["train", "stage=bc", "experiment=robosuite_cpu", "pictures=false"]
    steps = [f"experiment.bc.optim.{k}={v}" for k, v in (("steps", 4), ("batch_size", 4))]
    steps.append("experiment.bc.optim.warmup_steps=1")
    assert main([*train, f"dataset={data}", f"out={root / 'runs'}", *steps]) == 0
    return root / "runs" / "bc-100pct_seed0"  # the head, every label, seed 0


def test_the_head_predicts_7d_actions_from_the_9d_state_and_the_task(bc):
    config = ckpt.read_info(bc).model_config
    assert (config["action_dim"], config["state_dim"]) == (7, 9)
    assert config["num_tasks"] == 2 and config["task_ids"] == sorted(TASKS)
    policy = make_policy(str(bc), execute=1)
    env = make_env(TASKS[0], image_size=SIZE)
    try:
        obs, info = env.reset(seed=0)
        policy.reset(task_id=TASKS[0], action_space=env.action_space)
        action = policy.select_action(obs, info)
        policy.reset(task_id=TASKS[1], action_space=env.action_space)
        other_task = policy.select_action(obs, info)
        env.step(action)
    finally:
        env.close()
    assert action.shape == (7,) and np.all(np.isfinite(action))
    assert not np.array_equal(action, other_task)


def test_eval_of_the_robosuite_head_reports_every_task(bc, tmp_path):
    out = tmp_path / "eval"
    common = [f"policy={bc}", f"tasks=[{','.join(TASKS)}]", "episodes_per_task=1"]
    assert main(["eval", *common, f"image_size={SIZE}", "max_episode_steps=4", f"out={out}"]) == 0
    summary = json.loads((out / "results.json").read_text())["summary"]
    assert set(summary["tasks"]) == set(TASKS)
    assert all(row["episodes"] == 1 for row in summary["tasks"].values())
