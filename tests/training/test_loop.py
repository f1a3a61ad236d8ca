"""Training loop: losses fall, exact resume after a stop or a kill, DDP on gloo, checkpoints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.training.toy_train import make_model, run
from vw_robot import checkpoint as ckpt
from vw_robot.training.loop import StepBatchSampler, read_metrics

TOY = Path(__file__).with_name("toy_train.py")
REPO = Path(__file__).resolve().parents[2]


def _losses(run_dir) -> list[float]:
    return [row["loss"] for row in read_metrics(run_dir)]


def test_loss_falls_and_checkpoints_are_written(tmp_path):
    result = run(tmp_path, steps=30)
    losses = _losses(tmp_path)
    assert len(losses) == 30 and losses[-1] < losses[0] / 3
    info = ckpt.read_info(tmp_path, stage="toy")
    assert info.step == 30 and Path(result["checkpoint"]) == info.path
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*")) == [
        f"step_{s:08d}" for s in range(3, 31, 3)
    ]


def test_stop_and_resume_gives_the_same_losses(tmp_path):
    run(tmp_path / "full", steps=12)
    run(tmp_path / "split", steps=12, stop_at=5)  # like a kill just after step 5's checkpoint
    run(tmp_path / "split", steps=12)
    assert _losses(tmp_path / "split") == _losses(tmp_path / "full")
    full = ckpt.load_weights(tmp_path / "full")
    split = ckpt.load_weights(tmp_path / "split")
    assert all(torch.equal(full[k], split[k]) for k in full)


def test_kill_and_resume_gives_the_same_losses(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run(tmp_path / "full", steps=12)
    proc = subprocess.Popen(
        [sys.executable, str(TOY), str(tmp_path / "killed"), "12", "0.2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = tmp_path / "killed" / "checkpoints" / "last.json"
    deadline = time.monotonic() + 120
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists(), "the run never wrote a checkpoint"
    killed_at = ckpt.read_info(tmp_path / "killed").step
    assert killed_at < 12
    run(tmp_path / "killed", steps=12)
    assert _losses(tmp_path / "killed") == _losses(tmp_path / "full")


def test_resume_refuses_another_stage_or_model(tmp_path):
    run(tmp_path, steps=3)
    with pytest.raises(ckpt.CheckpointError, match="'toy' checkpoint.*'tokenizer'"):
        ckpt.read_info(tmp_path, stage="tokenizer")
    from tests.training.toy_train import ToyData
    from vw_robot.training.loop import OptimConfig, train

    with pytest.raises(ckpt.CheckpointError, match="model config.*hidden: 16 -> 32"):
        train(
            stage="toy",
            model=make_model(),
            dataset=ToyData(),
            loss_fn=None,
            optim=OptimConfig(steps=6, device="cpu"),
            run_dir=tmp_path,
            model_config={"hidden": 32},
            config_yaml="",
        )


def test_config_differences_name_the_keys():
    from vw_robot.training.loop import config_differences

    old = {"hidden": 16, "env": {"labelled_episodes": [f"e{i}" for i in range(49)], "size": 64}}
    new = {"hidden": 16, "env": {"labelled_episodes": [f"e{i}" for i in range(20)], "size": 64}}
    assert config_differences(old, new) == ["env.labelled_episodes: 49 items -> 20 items"]
    new["env"]["labelled_episodes"] = [f"x{i}" for i in range(49)]
    new["chunk"] = 4
    assert config_differences(old, new) == [
        "chunk: absent -> present",
        "env.labelled_episodes: 49 items (other items) -> 49 items",
    ]
    assert config_differences(old, old) == []


def test_tampered_weights_are_refused(tmp_path):
    run(tmp_path, steps=3)
    weights = ckpt.resolve_checkpoint(tmp_path) / ckpt.MODEL_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ckpt.CheckpointError, match="checksum"):
        ckpt.load_weights(tmp_path)


def test_step_sampler_is_a_function_of_the_step():
    a = StepBatchSampler(10, 4, seed=1, start=0, steps=6)
    b = StepBatchSampler(10, 4, seed=1, start=3, steps=6)
    assert list(a)[3:] == list(b)
    ranks = [StepBatchSampler(12, 2, seed=1, start=0, steps=3, rank=r, world=2) for r in (0, 1)]
    seen = [i for step in range(3) for r in ranks for i in r.indices(step)]
    assert sorted(seen) == list(range(12))  # one epoch, split across ranks, no repeats


def test_ddp_two_gloo_processes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(TOY),
            str(tmp_path),
            "12",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    losses = _losses(tmp_path)
    assert len(losses) == 12 and losses[-1] < losses[0]
    assert ckpt.read_info(tmp_path).step == 12


def test_resolve_device_names_a_bad_value():
    from vw_robot.device import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="'tpu'"):
        resolve_device("tpu")
