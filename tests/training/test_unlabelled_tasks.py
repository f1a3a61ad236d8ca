"""Tasks without labels: a head given ``labelled_tasks`` never reads another task's actions,
yet it can be told every task of the data (so a policy that learned a task from video alone
can act on it, and BC acting on it is the control); a study passes the split to every learned
head and records it.

A hand-built dataset: three tasks of two labelled episodes each, random frames.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from omegaconf import OmegaConf

from tests.toy_data import write_toy_episode
from vw_robot import checkpoint as ckpt
from vw_robot.config import StudyConfig, StudyHeadConfig
from vw_robot.data import format as fmt
from vw_robot.errors import ConfigError
from vw_robot.eval.entries import trained_fields
from vw_robot.study import head_experiment, study_runs
from vw_robot.training import stages
from vw_robot.training.config import TrainConfig
from vw_robot.training.stages import run_stage

SIZE = 16
TASKS = ("toy/a", "toy/b", "toy/c")
LABELLED = ["toy/a", "toy/b"]  # toy/c: video only for the head
MODEL = {"channels": [4, 8], "num_res_blocks": 0, "feature_dim": 4, "hidden": 16, "chunk": 2}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("unlabelled") / "data"
    rng = np.random.default_rng(0)
    fmt.init_dataset(root, image_size=SIZE, fps=10, codec="lossless")
    for task in TASKS:
        for k in range(2):
            count = 6
            steps = {
                "actions": rng.uniform(-1, 1, (count - 1, 2)).astype(np.float32),
                "state": rng.normal(size=(count, 3)).astype(np.float32),
            }
            frames = rng.integers(0, 256, (count, SIZE, SIZE, 3), dtype=np.uint8)
            write_toy_episode(root, f"{task.split('/')[1]}{k}", task, frames, steps)
    fmt.write_manifest(root)
    return root


def _config(data: Path, out: Path, **changes) -> TrainConfig:
    cfg = TrainConfig(stage="bc", dataset=str(data), out=str(out), pictures=False)
    section = cfg.experiment.bc
    section.model = dataclasses.replace(section.model, **MODEL)
    section.optim = dataclasses.replace(section.optim, steps=3, batch_size=4, warmup_steps=1)
    section.task_conditioning = True
    section.use_state = True
    merged = OmegaConf.merge(
        OmegaConf.structured(cfg),
        OmegaConf.from_dotlist([f"experiment.bc.{key}={value}" for key, value in changes.items()]),
    )
    return OmegaConf.to_object(merged)


@pytest.fixture(scope="module")
def trained(data: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """BC trained with labels for toy/a and toy/b only, recording every episode whose actions
    (steps) it read and every episode its training and validation datasets were given."""
    read: list[str] = []
    given: list[str] = []
    load_steps, dataset = fmt.load_steps, stages.ActionChunkDataset

    def reading(root, meta, *args, **kwargs):
        read.append(meta.episode_id)
        return load_steps(root, meta, *args, **kwargs)

    class Recording(dataset):
        def __init__(self, root, key, chunk, episode_ids, **kwargs):
            given.extend(episode_ids)
            super().__init__(root, key, chunk, episode_ids, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fmt, "load_steps", reading)
        patch.setattr(stages, "ActionChunkDataset", Recording)
        out = tmp_path_factory.mktemp("runs")
        result = run_stage(
            _config(data, out, labelled_tasks=f"[{','.join(LABELLED)}]", val_fraction=0.5)
        )
    return SimpleNamespace(checkpoint=Path(result["checkpoint"]), read=read, given=given)


def test_no_label_of_an_unlabelled_task_reaches_the_head(trained: SimpleNamespace) -> None:
    info = ckpt.read_info(trained.checkpoint)
    env = info.model_config["env"]
    assert env["labelled_episodes"] == ["a0", "a1", "b0", "b1"]  # validation ones among them
    assert len(env["validation_episodes"]) == 2  # one of each labelled task held out
    assert trained.given and not [e for e in trained.given if e.startswith("c")]
    assert trained.read and not [e for e in trained.read if e.startswith("c")]


def test_the_head_can_be_told_every_task_of_the_data(trained: SimpleNamespace) -> None:
    info = ckpt.read_info(trained.checkpoint)
    assert info.model_config["task_ids"] == list(TASKS)
    assert info.model_config["num_tasks"] == 3
    assert trained_fields(trained.checkpoint)["labelled_tasks"] == LABELLED
    assert trained_fields(trained.checkpoint)["reads"] == ""  # BC: no generator
    assert trained_fields(trained.checkpoint)["labelled_per_task"] == {"toy/a": 2, "toy/b": 2}


def test_without_labelled_tasks_the_heads_tasks_are_its_labelled_ones(data, tmp_path) -> None:
    cfg = _config(data, tmp_path)
    cfg.tasks = ["toy/a", "toy/b"]
    info = ckpt.read_info(run_stage(cfg)["checkpoint"])
    assert info.model_config["task_ids"] == ["toy/a", "toy/b"]
    assert trained_fields(info.path)["labelled_tasks"] is None


def test_a_labelled_task_the_data_lacks_is_refused_naming_it(data, tmp_path) -> None:
    with pytest.raises(fmt.DatasetError, match=r"labelled_tasks names toy/d, which is not"):
        run_stage(_config(data, tmp_path, labelled_tasks="[toy/a,toy/d]"))


@pytest.mark.parametrize(
    ("tasks", "message"), [("[]", "empty"), ("[toy/a,toy/a]", "toy/a given more than once")]
)
def test_bad_labelled_tasks_are_refused(data, tmp_path, tasks, message) -> None:
    with pytest.raises(ConfigError, match=rf"experiment.bc.labelled_tasks: {message}"):
        _config(data, tmp_path, labelled_tasks=tasks).validate()


def _study(**changes) -> StudyConfig:
    return StudyConfig(
        study="unlabelled",
        tasks=["metaworld/reach-v3", "metaworld/push-v3"],
        heads=[StudyHeadConfig(policy="bc"), StudyHeadConfig(policy="expert")],
        **changes,
    )


def test_a_study_gives_every_learned_head_its_labelled_tasks() -> None:
    cfg = _study(labelled_tasks=["metaworld/reach-v3"])
    cfg.validate()
    run = next(r for r in study_runs(cfg) if r.label_fraction is not None)
    assert head_experiment(cfg, run).bc.labelled_tasks == ["metaworld/reach-v3"]
    assert head_experiment(_study(), run).bc.labelled_tasks is None


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        (["metaworld/pick-place-v3"], "are not training tasks"),
        (["metaworld/reach-v3", "metaworld/reach-v3"], "given more than once"),
        ([], "empty"),
    ],
)
def test_a_study_refuses_labelled_tasks_it_does_not_train(tasks, message) -> None:
    with pytest.raises(ConfigError, match=rf"labelled_tasks: .*{message}"):
        _study(labelled_tasks=tasks).validate()
