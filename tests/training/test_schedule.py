"""Training length and when to stop, on the toy regression: the learning-rate schedule
(warm-up then cosine), epochs instead of steps, and the patience rule on the validation loss
with the best checkpoint selected."""

from __future__ import annotations

import json
import math

import pytest
import torch
from omegaconf import OmegaConf

from tests.training.toy_train import ToyData, make_model
from vw_robot import checkpoint as ckpt
from vw_robot.cli import main
from vw_robot.errors import ConfigError
from vw_robot.eval.collect import collect
from vw_robot.training.loop import OptimConfig, lr_at, read_metrics, train


def _loss(model, batch):
    return torch.nn.functional.mse_loss(model(batch["x"]), batch["y"]), {}


def _train(run_dir, optim: OptimConfig, validate=None) -> dict:
    return train(
        stage="toy",
        model=make_model(),
        dataset=ToyData(64),
        loss_fn=_loss,
        optim=optim,
        run_dir=run_dir,
        model_config={"hidden": 16},
        config_yaml="toy: true\n",
        validate=validate,
    )


def test_the_schedule_warms_up_linearly_then_decays_by_cosine_to_a_tenth():
    optim = OptimConfig(lr=1.0, warmup_steps=4)
    total = 24
    assert [lr_at(s, optim, total) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(4, optim, total) == pytest.approx(1.0)  # the cosine starts at the peak
    assert lr_at(14, optim, total) == pytest.approx(0.55)  # halfway: 0.1 + 0.9 / 2
    assert lr_at(total, optim, total) == pytest.approx(0.1)
    decay = [lr_at(s, optim, total) for s in range(4, total + 1)]
    assert all(a > b for a, b in zip(decay, decay[1:], strict=False))
    assert lr_at(total + 10, optim, total) == pytest.approx(0.1)  # held at the floor


def test_epochs_set_the_length_and_the_schedule_spans_it(tmp_path):
    optim = OptimConfig(steps=None, epochs=3, batch_size=16, warmup_steps=2, log_every=1)
    result = _train(tmp_path, optim)
    rows = read_metrics(tmp_path)
    assert result["total_steps"] == 12 == result["step"] == len(rows)  # 3 x 64 / 16
    assert rows[-1]["lr"] == pytest.approx(lr_at(11, optim, 12))
    assert rows[-1]["lr"] < 0.13 * optim.lr  # near the floor: the cosine spans 12 steps
    assert (
        json.loads((ckpt.latest_checkpoint(tmp_path) / ckpt.INFO_FILE).read_text())["total_steps"]
        == 12
    )
    # A batch that does not divide the samples rounds the steps up.
    assert OptimConfig(steps=None, epochs=2, batch_size=24).total_steps(64) == math.ceil(128 / 24)
    assert OptimConfig(steps=None, epochs=2, batch_size=8).total_steps(64, world=2) == 8


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"steps": 10, "epochs": 2}, "optim.epochs: 2 and optim.steps: 10 are mutually exclusive"),
        ({"steps": None}, "optim.steps: null needs optim.epochs"),
        ({"steps": None, "epochs": 0}, "optim.epochs: 0 must be >= 1"),
        ({"patience": -1}, "optim.patience: -1 must be >= 0"),
        ({"threads": -1}, "optim.threads: -1 must be >= 0"),
    ],
)
def test_bad_length_settings_name_the_key(settings, message):
    with pytest.raises(ConfigError, match=message):
        OptimConfig(**settings).validate()


def test_patience_needs_held_out_data(tmp_path):
    with pytest.raises(ConfigError, match="optim.patience: 2 needs held-out data"):
        _train(tmp_path, OptimConfig(steps=6, patience=2))


def _scripted(values: list[float]):
    """A validation loss that returns ``values`` in turn (one per checkpoint)."""
    calls = iter(values)
    return lambda model: next(calls)


def test_patience_stops_and_the_best_validation_checkpoint_is_the_policy(tmp_path):
    # Checkpoints every 2 steps; the loss is best at the 2nd evaluation (step 4), then does
    # not improve for 3 evaluations: training stops at step 10, before the loss would drop.
    values = [5.0, 3.0, 4.0, 3.2, 3.5, 1.0, 1.0, 1.0, 1.0, 1.0]
    optim = OptimConfig(steps=20, batch_size=8, checkpoint_every=2, patience=3, log_every=1)
    result = _train(tmp_path, optim, _scripted(values))
    assert result["stopped_early"] and result["step"] == 10 and result["total_steps"] == 20
    steps = sorted(p.name for p in (tmp_path / ckpt.CHECKPOINTS_DIR).glob("step_*"))
    assert steps == [f"step_{s:08d}" for s in (2, 4, 6, 8, 10)]
    selected = json.loads((tmp_path / ckpt.CHECKPOINTS_DIR / "selected.json").read_text())
    assert selected == {"path": "step_00000004", "val_loss": 3.0}
    assert ckpt.resolve_checkpoint(tmp_path).name == "step_00000004"
    assert result["checkpoint"].endswith("step_00000004")
    assert len(read_metrics(tmp_path)) == 10
    info = json.loads((ckpt.latest_checkpoint(tmp_path) / ckpt.INFO_FILE).read_text())
    assert info["evaluations_since_best"] == 3 and "total_steps" not in info  # sized in steps
    # Run again: the rule's state comes back from validation.csv, so it does not train on.
    again = _train(tmp_path, optim, _scripted([0.0]))
    assert again.get("resumed_complete") and again["step"] == 10
    assert again["checkpoint"].endswith("step_00000004")


def test_without_patience_a_run_trains_to_the_end_and_selects_the_best(tmp_path):
    values = [5.0, 3.0, 4.0, 4.0, 4.0]
    optim = OptimConfig(steps=10, batch_size=8, checkpoint_every=2)
    result = _train(tmp_path, optim, _scripted(values))
    assert not result["stopped_early"] and result["step"] == 10
    assert result["checkpoint"].endswith("step_00000004")


def test_an_interrupted_run_resumes_the_patience_count(tmp_path):
    # Evaluations at steps 2..: best at step 2, then 2 without improvement before the stop
    # at step 6; resumed, the third evaluation without improvement (step 8) ends the run.
    optim = OptimConfig(steps=20, batch_size=8, checkpoint_every=2, patience=3)
    train(
        stage="toy",
        model=make_model(),
        dataset=ToyData(64),
        loss_fn=_loss,
        optim=optim,
        run_dir=tmp_path,
        model_config={"hidden": 16},
        config_yaml="toy: true\n",
        validate=_scripted([1.0, 2.0, 2.0]),
        stop_at=6,
    )
    result = _train(tmp_path, optim, _scripted([2.0, 0.5]))
    assert result["stopped_early"] and result["step"] == 8
    assert result["checkpoint"].endswith("step_00000002")


def test_a_head_trained_in_epochs_with_patience_records_them_in_its_checkpoint(tmp_path):
    """The BC stage end to end: length in epochs, patience on its validation episodes; the
    checkpoint's config says so, and the run's policy is its best validation checkpoint."""
    data = tmp_path / "data"
    collect(data, ["metaworld/reach-v3"], episodes_per_task=2, image_size=32)
    args = [
        "train",
        "stage=bc",
        f"dataset={data}",
        f"out={tmp_path / 'runs'}",
        "experiment.bc.val_fraction=0.5",
        "experiment.bc.augment_shift=2",
        "experiment.bc.optim.steps=null",
        "experiment.bc.optim.epochs=2",
        "experiment.bc.optim.batch_size=32",
        "experiment.bc.optim.warmup_steps=1",
        "experiment.bc.optim.checkpoint_every=1",
        "experiment.bc.optim.patience=2",
    ]
    assert main(args) == 0
    run_dir = tmp_path / "runs" / "bc-100pct_seed0"  # vw_robot.heads.run_name
    config = ckpt.read_config_text(ckpt.latest_checkpoint(run_dir))
    optim = OmegaConf.create(config).experiment.bc.optim
    assert (optim.steps, optim.epochs, optim.patience) == (None, 2, 2)
    rows = (run_dir / "validation.csv").read_text().splitlines()[1:]
    losses = {int(r.split(",")[0]): float(r.split(",")[1]) for r in rows}
    best = min(losses.values())
    chosen = ckpt.resolve_checkpoint(run_dir)
    assert losses[ckpt.read_info(chosen).step] == best


def test_threads_apply_while_training_and_are_restored(tmp_path):
    seen = []
    before = torch.get_num_threads()

    def loss(model, batch):
        seen.append(torch.get_num_threads())
        return _loss(model, batch)

    optim = OptimConfig(steps=2, batch_size=8, threads=1)
    train(
        stage="toy",
        model=make_model(),
        dataset=ToyData(64),
        loss_fn=loss,
        optim=optim,
        run_dir=tmp_path,
        model_config={"hidden": 16},
        config_yaml="toy: true\n",
    )
    assert seen == [1, 1] and torch.get_num_threads() == before
