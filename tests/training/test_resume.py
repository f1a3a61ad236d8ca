"""Resuming a run: a damaged checkpoint file is named with what is wrong and the run's intact
checkpoints; other training settings are refused unless resume_changed."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.training.toy_train import ToyData, make_model
from vw_robot import checkpoint as ckpt
from vw_robot.training.config import TrainConfig
from vw_robot.training.loop import OptimConfig, resume_differences, train

CONFIG = "dataset: data/demo\ntasks: []\nexperiment:\n  toy:\n    optim:\n      lr: 0.01\n"


def toy(run_dir: Path, steps: int, *, config: str = CONFIG, ema: float = 0.0, **kwargs) -> dict:
    def loss_fn(model, batch):
        return torch.nn.functional.mse_loss(model(batch["x"]), batch["y"]), {}

    optim = OptimConfig(
        steps=steps,
        batch_size=8,
        lr=1e-2,
        warmup_steps=2,
        checkpoint_every=3,
        device="cpu",
        ema=ema,
    )
    return train(
        stage="toy",
        model=make_model(),
        dataset=ToyData(),
        loss_fn=loss_fn,
        optim=optim,
        run_dir=run_dir,
        model_config={"hidden": 16},
        config_yaml=config,
        **kwargs,
    )


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def garble(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))


def forget_checksums(folder: Path) -> None:
    """Make a checkpoint look like one written before info.json recorded the trainer files."""
    info = json.loads((folder / ckpt.INFO_FILE).read_text())
    del info["files"]
    (folder / ckpt.INFO_FILE).write_text(json.dumps(info))


@pytest.mark.parametrize(
    ("name", "damage", "old", "fault"),
    [
        (ckpt.TRAINER_TENSORS, truncate, False, "SHA-256 checksum differs"),
        (ckpt.TRAINER_TENSORS, truncate, True, "not a readable safetensors file"),
        (ckpt.TRAINER_JSON, truncate, False, "SHA-256 checksum differs"),
        (ckpt.TRAINER_JSON, truncate, True, "not valid JSON"),
        (ckpt.MODEL_FILE, truncate, False, "SHA-256 checksum differs"),
        (ckpt.MODEL_FILE, garble, False, "SHA-256 checksum differs"),
        (ckpt.INFO_FILE, truncate, False, "not valid JSON"),
        (ckpt.CONFIG_FILE, garble, False, "SHA-256 checksum differs"),
        (ckpt.TRAINER_TENSORS, lambda p: p.unlink(), False, "missing"),
    ],
    ids=[
        "trainer.safetensors-cut",
        "trainer.safetensors-cut-old",
        "trainer.json-cut",
        "trainer.json-cut-old",
        "model-cut",
        "model-garbled",
        "info-cut",
        "config-garbled",
        "trainer.safetensors-missing",
    ],
)
def test_damaged_checkpoint_file_is_named_with_the_intact_ones(tmp_path, name, damage, old, fault):
    toy(tmp_path, steps=6)  # step_00000003, step_00000006
    last = tmp_path / "checkpoints" / "step_00000006"
    if old:
        forget_checksums(last)
    damage(last / name)
    with pytest.raises(ckpt.CheckpointError) as raised:
        toy(tmp_path, steps=9)
    message = str(raised.value)
    assert message.startswith(f"{last / name}: ") and fault in message
    assert "Intact checkpoint(s) of this run, newest first: step_00000003." in message
    # The advice works: point last.json at the intact one and the run resumes from it.
    pointer = json.dumps({"path": "step_00000003", "step": 3})
    assert f"write {pointer} into {tmp_path / 'checkpoints' / 'last.json'}" in message
    (tmp_path / "checkpoints" / "last.json").write_text(pointer)
    assert toy(tmp_path, steps=9)["step"] == 9
    assert ckpt.verify_checkpoint(last) is None  # step 6 was written again


def test_damaged_pointer_and_no_intact_checkpoint(tmp_path):
    toy(tmp_path, steps=3)
    pointer = tmp_path / "checkpoints" / "last.json"
    truncate(pointer)
    with pytest.raises(ckpt.CheckpointError, match="last.json: unreadable") as raised:
        ckpt.latest_checkpoint(tmp_path)
    assert "newest first: step_00000003." in str(raised.value)
    garble(tmp_path / "checkpoints" / "step_00000003" / ckpt.MODEL_FILE)
    with pytest.raises(ckpt.CheckpointError, match="No other checkpoint of this run verifies"):
        ckpt.latest_checkpoint(tmp_path)


def test_damaged_weights_outside_a_run_name_the_file(tmp_path):
    folder = ckpt.save_checkpoint(
        tmp_path, stage="toy", step=1, model=make_model(), model_config={}, config_yaml=""
    )
    exported = tmp_path / "policy"
    folder.rename(exported)
    truncate(exported / ckpt.MODEL_FILE)
    with pytest.raises(ckpt.CheckpointError, match="model.safetensors: its SHA-256 checksum"):
        ckpt.load_weights(exported)
    with pytest.raises(ckpt.CheckpointError, match="not a readable safetensors file"):
        ckpt.load_weights(exported, verify=False)


def test_resume_with_other_training_settings_is_refused_unless_told(tmp_path, caplog):
    toy(tmp_path, steps=3)
    faster = CONFIG.replace("lr: 0.01", "lr: 0.02").replace("data/demo", "data/other")
    with pytest.raises(ckpt.CheckpointError) as raised:
        toy(tmp_path, steps=6, config=faster)
    message = str(raised.value)
    assert "dataset: 'data/demo' -> 'data/other'" in message
    assert "experiment.toy.optim.lr: 0.01 -> 0.02" in message
    assert "resume_changed=true" in message
    # Bookkeeping (how often it logs and saves) is not a training setting.
    chatty = CONFIG.replace("      lr: 0.01\n", "      lr: 0.01\n      log_every: 1\n")
    assert toy(tmp_path, steps=4, config=chatty.replace("data/demo", "./data/demo"))["step"] == 4
    with caplog.at_level(logging.WARNING, logger="vw_robot.training.loop"):
        assert toy(tmp_path, steps=6, config=faster, resume_changed=True)["step"] == 6
    assert "experiment.toy.optim.lr: 0.01 -> 0.02" in caplog.text
    # The new settings are the run's now.
    assert toy(tmp_path, steps=7, config=faster)["step"] == 7


def test_resume_differences_on_train_configs():
    def yaml(**changes) -> str:
        cfg = TrainConfig(stage="action_head", dataset="data/a", tasks=["metaworld/reach-v3"])
        for key, value in changes.items():
            target = cfg
            *path, leaf = key.split("__")
            for part in path:
                target = getattr(target, part)
            setattr(target, leaf, value)
        return OmegaConf.to_yaml(OmegaConf.structured(cfg))

    base = yaml()
    assert resume_differences(base, base, "action_head") == []
    # Where things go, bookkeeping, other stages' sections and the model are not compared here.
    same = yaml(
        out="elsewhere",
        pictures=False,
        resume_changed=True,
        experiment__action_head__optim__checkpoint_every=7,
        experiment__tokenizer__optim__lr=1.0,
        experiment__action_head__model__hidden=8,
    )
    assert resume_differences(base, same, "action_head") == []
    changed = yaml(
        dataset="data/b",
        tasks=["metaworld/push-v3"],
        experiment__action_head__optim__lr=1e-3,
        experiment__action_head__label_fraction=0.5,
    )
    assert resume_differences(base, changed, "action_head") == [
        "dataset: 'data/a' -> 'data/b'",
        "experiment.action_head.label_fraction: None -> 0.5",
        "experiment.action_head.optim.lr: 0.0003 -> 0.001",
        "tasks: ['metaworld/reach-v3'] -> ['metaworld/push-v3']",
    ]
    # A setting a newer vw_robot added is not a difference.
    older = OmegaConf.create(base)
    del older.experiment.action_head["val_fraction"]
    assert resume_differences(OmegaConf.to_yaml(older), base, "action_head") == []
    with pytest.raises(ValueError, match="YAML"):
        resume_differences("a: [\n", base, "action_head")


def ema_toy(run_dir: Path, steps: int, ema: float, **kwargs) -> dict:
    return toy(run_dir, steps, config=CONFIG + f"    ema: {ema}\n", ema=ema, **kwargs)


def test_ema_checkpoints_hold_the_average_and_resume_exactly(tmp_path):
    """optim.ema: the saved model is the moving average (not the raw weights), and a run
    stopped and resumed saves the same average and raw weights as one that never stopped."""
    torch.manual_seed(0)
    whole = ema_toy(tmp_path / "whole", 8, 0.9)
    torch.manual_seed(0)
    ema_toy(tmp_path / "cut", 8, 0.9, stop_at=3)
    cut = ema_toy(tmp_path / "cut", 8, 0.9)
    torch.manual_seed(0)
    plain = ema_toy(tmp_path / "plain", 8, 0.0)
    averaged = ckpt.load_weights(whole["checkpoint"])
    for name, value in ckpt.load_weights(cut["checkpoint"]).items():
        torch.testing.assert_close(value, averaged[name], rtol=0, atol=0)
    raw = ckpt.load_weights(plain["checkpoint"])
    assert any(not torch.equal(averaged[k], raw[k]) for k in raw)
    extra: dict = {}
    params = list(make_model().parameters())
    groups = [[p for p in params if p.ndim >= 2], [p for p in params if p.ndim < 2]]
    optimizer = torch.optim.AdamW([{"params": g} for g in groups])  # as train() groups them
    ckpt.load_trainer_state(whole["checkpoint"], optimizer, extra)
    assert int(extra["extra.ema_updates"]) == 8
    for name, value in raw.items():  # the raw weights ride along, equal to a run without ema
        torch.testing.assert_close(extra[f"extra.raw.{name}"], value, rtol=0, atol=0)


def test_ema_out_of_range_is_refused():
    from vw_robot.config import ConfigError

    with pytest.raises(ConfigError, match="optim.ema: 1.0 must be in"):
        OptimConfig(ema=1.0).validate()
