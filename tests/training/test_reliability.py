"""Training's rough edges: weights follow the umask, one process writes a run folder, a full
disk and Ctrl-C are one line naming the checkpoint kept, the seed seeds every generator."""

from __future__ import annotations

import errno
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.toy_train import make_model, run
from vw_robot import checkpoint as ckpt
from vw_robot import jobs, launch
from vw_robot.cli import load_config, main
from vw_robot.errors import DiskFullError
from vw_robot.eval.collect import collect
from vw_robot.io import folder_lock
from vw_robot.training.stages import run_stage

REPO = Path(__file__).resolve().parents[2]
TOY = Path(__file__).with_name("toy_train.py")
TINY = [
    "experiment.tokenizer.model.image_size=32",
    "experiment.ldm.model.image_size=32",
    "experiment.tokenizer.optim.steps=2",
    "experiment.tokenizer.optim.batch_size=2",
    "experiment.tokenizer.optim.warmup_steps=1",
    "experiment.tokenizer.optim.seed=7",
    "pictures=false",
]


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["022", "027"])
def test_weights_are_written_with_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        run(tmp_path, steps=3)
    finally:
        os.umask(old)
    folder = ckpt.latest_checkpoint(tmp_path)
    assert {ckpt.MODEL_FILE, ckpt.TRAINER_TENSORS} <= {p.name for p in folder.iterdir()}
    for path in folder.iterdir():
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path
    assert ckpt.verify_checkpoint(folder) is None


def _fail_writes_of(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make the atomic write of files called ``name`` fail as a full disk does."""
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def test_a_full_disk_names_the_checkpoint_and_the_one_kept(tmp_path, monkeypatch, capsys):
    run(tmp_path, steps=3)  # step 3 is saved
    _fail_writes_of(monkeypatch, ckpt.MODEL_FILE)
    with pytest.raises(DiskFullError) as raised:
        run(tmp_path, steps=6)
    message = str(raised.value)
    step_6 = tmp_path / "checkpoints" / "step_00000006"
    assert message.startswith(f"{step_6}: not written, no space left on the device (writing ")
    assert "model.safetensors" in message
    assert f"the last good checkpoint is kept: {tmp_path / 'checkpoints' / 'step_00000003'}" in (
        message
    )
    assert not step_6.exists() and not list((tmp_path / "checkpoints").glob(".tmp*"))
    assert ckpt.verify_checkpoint(ckpt.latest_checkpoint(tmp_path)) is None
    # The command line prints it as one line and exits with status 2.
    assert launch.call_job("train", lambda cfg: run(tmp_path, steps=6), None) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vw-robot train: {step_6}: not written") and err.count("\n") == 1
    assert "Traceback" not in err


def test_a_full_disk_before_any_checkpoint_says_so(tmp_path, monkeypatch):
    _fail_writes_of(monkeypatch, ckpt.TRAINER_TENSORS)
    with pytest.raises(DiskFullError, match="no checkpoint of this run is on disk yet"):
        ckpt.save_checkpoint(
            tmp_path,
            stage="toy",
            step=1,
            model=make_model(),
            model_config={},
            config_yaml="",
            optimizer=torch.optim.SGD(make_model().parameters(), lr=0.1),
        )


def test_a_second_training_into_a_run_folder_is_refused_and_a_killed_ones_lock_taken_over(
    tmp_path, caplog
):
    lock = tmp_path / ckpt.RUN_LOCK
    proc = subprocess.Popen(
        [sys.executable, str(TOY), str(tmp_path), "200", "0.05"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if lock.exists() and lock.read_text().strip() == str(proc.pid):
                break
            time.sleep(0.05)
        assert lock.read_text().strip() == str(proc.pid), "the run never took its lock"
        with pytest.raises(ckpt.RunFolderBusyError) as raised:
            run(tmp_path, steps=3)
        assert str(raised.value) == (
            f"{tmp_path}: process {proc.pid} is training into this run folder; wait for it to "
            "finish, or train into another one (run_name=... or another out=)."
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # Killed, it released the lock with its life; its PID is still in the file.
    assert lock.read_text().strip() == str(proc.pid)
    with caplog.at_level(logging.INFO, logger="vw_robot.io"):
        assert run(tmp_path, steps=3)["step"] >= 3
    assert f"taking over the lock left by process {proc.pid}" in caplog.text
    assert lock.read_text() == ""  # released: no PID left behind


def test_a_lock_file_naming_a_dead_process_is_taken_over(tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".x.lock").write_text(f"{dead.pid}\n")
    with caplog.at_level(logging.INFO, logger="vw_robot.io"), folder_lock(tmp_path, ".x.lock"):
        assert (tmp_path / ".x.lock").read_text() == f"{os.getpid()}\n"
    assert f"{tmp_path / '.x.lock'}: taking over the lock left by process {dead.pid}" in (
        caplog.text
    )


def _global_states() -> tuple:
    return (
        random.getstate(),
        repr(np.random.get_state(legacy=False)),
        torch.get_rng_state().tolist(),
    )


def test_two_runs_of_one_seed_leave_every_generator_in_the_same_state(tmp_path):
    data = tmp_path / "data"
    collect(data, ["metaworld/reach-v3"], episodes_per_task=1, image_size=32)
    states = []
    for k, noise in enumerate((1, 2)):  # whatever ran before in the process
        random.seed(noise)
        np.random.seed(noise)
        torch.manual_seed(noise)
        cfg = load_config(
            "train", ["stage=tokenizer", f"dataset={data}", f"out={tmp_path / str(k)}", *TINY]
        )
        run_stage(cfg)
        states.append(_global_states())
    assert states[0] == states[1]


def test_ctrl_c_during_train_names_the_checkpoint_kept(tmp_path, monkeypatch, capsys):
    kept = ckpt.save_checkpoint(
        tmp_path / "tokenizer",
        stage="tokenizer",
        step=1,
        model=make_model(),
        model_config={},
        config_yaml="",
    )

    def pressed(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(jobs, "run_stage", pressed)
    status = main(["train", "stage=tokenizer", f"dataset={tmp_path}", f"out={tmp_path}"])
    assert status == 130
    assert capsys.readouterr().err == (
        f"vw-robot train: interrupted; the last checkpoint is kept: {kept}; run the same "
        "command to resume from it\n"
    )


def test_a_full_disk_outside_a_checkpoint_during_train_names_the_run(tmp_path, monkeypatch, capsys):
    def full(cfg):  # metrics.csv's writes carry no file name
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(jobs, "run_stage", full)
    status = main(["train", "stage=tokenizer", f"dataset={tmp_path}", f"out={tmp_path}"])
    assert status == 2
    assert capsys.readouterr().err == (
        f"vw-robot train: a file in {tmp_path / 'tokenizer'}: not written: No space left on "
        f"device; no checkpoint of {tmp_path / 'tokenizer'} was written yet\n"
    )
