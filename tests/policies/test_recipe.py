"""The head recipe's switches in a trained policy: task and state inputs recorded in
the checkpoint, a state of another size refused, ACT's temporal ensembling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vw_robot import checkpoint as ckpt
from vw_robot.cli import main
from vw_robot.data.dataset import split_validation
from vw_robot.envs import make_env
from vw_robot.policies import make_policy
from vw_robot.policies.videoworld import PolicyMismatchError, ensemble_action

SIZE = 32
TASKS = ["metaworld/reach-v3", "metaworld/drawer-close-v3"]
RUN = "bc-100pct_seed0"  # `vw-robot train stage=bc`'s run folder: every label, seed 0


@pytest.fixture(scope="module")
def bc(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    data = root / "data"
    collect = ["collect", f"tasks=[{','.join(TASKS)}]", "episodes_per_task=2"]
    assert main([*collect, f"image_size={SIZE}", f"out={data}"]) == 0
    train = [
        "train",
        "stage=bc",
        f"dataset={data}",
        f"out={root / 'runs'}",
        "experiment.bc.task_conditioning=true",
        "experiment.bc.use_state=true",
        "experiment.bc.augment_shift=2",
        *[f"experiment.bc.optim.{k}={v}" for k, v in (("steps", 4), ("batch_size", 4))],
        "experiment.bc.optim.warmup_steps=1",
    ]
    assert main(train) == 0
    return root / "runs" / RUN


def test_the_switches_are_recorded_in_the_checkpoint(bc):
    config = ckpt.read_info(bc).model_config
    assert config["num_tasks"] == 2 and config["state_dim"] == 4
    assert config["task_ids"] == sorted(TASKS)


def test_the_task_and_state_reach_the_head(bc):
    policy = make_policy(str(bc), execute=1)
    env = make_env(TASKS[0], image_size=SIZE)
    try:
        obs, info = env.reset(seed=0)
        policy.reset(task_id=TASKS[0], action_space=env.action_space)
        first = policy.select_action(obs, info)
        policy.reset(task_id=TASKS[1], action_space=env.action_space)
        other_task = policy.select_action(obs, info)
        policy.reset(task_id=TASKS[0], action_space=env.action_space)
        moved = policy.select_action({**obs, "state": obs["state"] + 0.1}, info)
    finally:
        env.close()
    assert not np.array_equal(first, other_task) and not np.array_equal(first, moved)


def test_a_state_of_another_size_is_refused_naming_both(bc):
    policy = make_policy(str(bc))
    policy.reset(task_id=TASKS[0])
    obs = {"pixels": np.zeros((SIZE, SIZE, 3), np.uint8), "state": np.zeros(9, np.float32)}
    with pytest.raises(PolicyMismatchError, match=r"4-D proprio state; the env's is \(9,\)"):
        policy.select_action(obs)
    with pytest.raises(PolicyMismatchError, match="has none"):
        policy.select_action({"pixels": obs["pixels"]})


def test_ensemble_action_on_a_hand_computed_example():
    predictions = [np.array([1.0, 0.0]), np.array([2.0, 0.0]), np.array([3.0, 1.0])]
    # weights exp(-ln2 * i): 1, 1/2, 1/4 -> (1 + 1 + 0.75) / 1.75, (0 + 0 + 0.25) / 1.75
    out = ensemble_action(predictions, math.log(2))
    np.testing.assert_allclose(out, [2.75 / 1.75, 0.25 / 1.75])
    np.testing.assert_allclose(ensemble_action(predictions, 0.0), [2.0, 1 / 3])


def test_ensembling_policy_plans_every_step_and_averages_the_chunks(bc):
    policy = make_policy(str(bc), ensemble=0.0)
    chunks, predict = [], policy.head.predict

    def spy(*args, **kwargs):
        out = predict(*args, **kwargs)
        chunks.append(out[0].numpy())
        return out

    policy.head.predict = spy
    env = make_env(TASKS[0], image_size=SIZE)
    actions = []
    try:
        obs, info = env.reset(seed=1)
        policy.reset(task_id=TASKS[0], action_space=env.action_space)
        for _ in range(5):
            actions.append(policy.select_action(obs, info))
            obs, _, _, _, info = env.step(actions[-1])
    finally:
        env.close()
    assert len(chunks) == 5  # a plan at every step
    k = len(chunks[0])
    for t in range(5):
        covering = [chunks[s][t - s] for s in range(max(0, t - k + 1), t + 1)]
        np.testing.assert_allclose(actions[t], np.mean(covering, axis=0), rtol=1e-6)


def test_split_validation_is_per_task_disjoint_and_fixed_by_its_seed():
    task_of = {f"a{i}": "a" for i in range(10)} | {f"b{i}": "b" for i in range(3)} | {"c0": "c"}
    ids = sorted(task_of)
    train, held = split_validation(ids, task_of, 0.2, seed=0)
    assert not set(train) & set(held) and sorted(train + held) == ids
    assert sorted(task_of[e] for e in held) == ["a", "a", "b"]  # 2 of 10, 1 of 3, none of 1
    assert split_validation(ids, task_of, 0.2, seed=0) == (train, held)
    assert split_validation(ids, task_of, 0.2, seed=1)[1] != held
    assert split_validation(ids, task_of, 0.0) == (ids, [])


def test_validation_episodes_choose_the_checkpoint(bc, tmp_path):
    data = bc.parent.parent / "data"
    out = tmp_path / "runs"
    train = [
        "train",
        "stage=bc",
        f"dataset={data}",
        f"out={out}",
        "experiment.bc.val_fraction=0.5",
        *[f"experiment.bc.optim.{k}={v}" for k, v in (("steps", 6), ("batch_size", 4))],
        "experiment.bc.optim.warmup_steps=1",
        "experiment.bc.optim.checkpoint_every=2",
    ]
    assert main(train) == 0
    run = out / RUN
    env = ckpt.read_info(run).model_config["env"]
    held, labelled = env["validation_episodes"], env["labelled_episodes"]
    assert len(held) == 2 and set(held) < set(labelled)  # one of each task's two
    rows = (run / "validation.csv").read_text().splitlines()
    assert rows[0] == "step,val_loss" and [r.split(",")[0] for r in rows[1:]] == ["2", "4", "6"]
    losses = {int(r.split(",")[0]): float(r.split(",")[1]) for r in rows[1:]}
    chosen = ckpt.resolve_checkpoint(run)
    assert ckpt.read_info(chosen).step == min(losses, key=lambda s: (losses[s], -s))
    assert ckpt.resolve_checkpoint(run / "checkpoints" / "last").name == "step_00000006"
    make_policy(str(run))  # the run folder loads the chosen checkpoint


def test_a_film_head_records_its_conditioning_and_acts(bc, tmp_path):
    data = bc.parent.parent / "data"
    out = tmp_path / "runs"
    train = [
        "train",
        "stage=bc",
        f"dataset={data}",
        f"out={out}",
        "experiment.bc.task_conditioning=true",
        "experiment.bc.conditioning=film",
        *[f"experiment.bc.optim.{k}={v}" for k, v in (("steps", 2), ("batch_size", 4))],
        "experiment.bc.optim.warmup_steps=1",
    ]
    assert main(train) == 0
    assert ckpt.read_info(out / RUN).model_config["conditioning"] == "film"
    assert "conditioning" not in ckpt.read_info(bc).model_config  # concat heads: as before
    policy = make_policy(str(out / RUN), execute=1)
    env = make_env(TASKS[0], image_size=SIZE)
    try:
        obs, info = env.reset(seed=0)
        policy.reset(task_id=TASKS[0], action_space=env.action_space)
        assert np.all(np.isfinite(policy.select_action(obs, info)))
    finally:
        env.close()
    refused = ["train", "stage=bc", f"dataset={data}", "experiment.bc.conditioning=film"]
    assert main([*refused, f"out={tmp_path / 'refused'}"]) == 2  # no task: nothing to condition
