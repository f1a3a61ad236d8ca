"""A full disk and Ctrl-C end ``collect`` and ``eval`` with one line that says what was kept,
not a traceback."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_processes import gone
from vw_robot.cli import main
from vw_robot.data import format as fmt

COLLECT = [
    "tasks=[metaworld/reach-v3]",
    "episodes_per_task=2",
    "image_size=16",
    "max_episode_steps=10",
    "policy=random",
    "keep_failed=true",
    "workers=1",
]


def test_a_full_disk_during_collect_names_the_file_and_the_episodes_kept(
    tmp_path, monkeypatch, capsys
):
    out = tmp_path / "data"
    real, written = os.replace, []

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == fmt.STEPS_FILE:
            written.append(dst)
            if len(written) == 2:  # the second episode's arrays
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    assert main(["collect", *COLLECT, f"out={out}"]) == 2
    err = capsys.readouterr().err  # the progress bar, then one line
    assert "Traceback" not in err, err
    steps = Path(written[1])
    assert err.split("\r")[-1].splitlines()[-1] + "\n" == (
        f"vw-robot collect: {steps}: not written: No space left on device; the finished "
        f"episodes are kept in {out} (1 recorded by this run, 0 earlier); free some space and "
        "run the same command to record the rest\n"
    )
    monkeypatch.setattr(os, "replace", real)
    assert fmt.read_manifest(out)["num_episodes"] == 1
    assert main(["collect", *COLLECT, f"out={out}"]) == 0
    assert fmt.read_manifest(out)["num_episodes"] == 2


EVAL = [
    "tasks=[metaworld/reach-v3,metaworld/drawer-close-v3]",
    "episodes_per_task=2",
    "image_size=16",
    "max_episode_steps=100",
    "policy=random",
    "videos_per_task=0",
    "workers=2",
]


def _ctrl_c(command: list[str]) -> tuple[int, str, list[int]]:
    """Run ``vw-robot COMMAND`` in its own process group and press Ctrl-C (``SIGINT`` to the
    whole group, as a terminal does) once its two workers run; return the exit status, stderr
    and the workers' pids."""
    process = subprocess.Popen(
        [sys.executable, "-m", "vw_robot.cli", *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    workers: list[int] = []
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        workers = [int(pid) for pid in children.read_text().split()]
        if len(workers) >= 2:  # (and the multiprocessing resource tracker)
            break
        time.sleep(0.05)
    time.sleep(1.0)  # the workers are starting up or acting
    os.killpg(process.pid, signal.SIGINT)
    try:
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode, err, workers


def _all_gone(pids: list[int], within: float = 30.0) -> bool:
    """Whether every process in ``pids`` has ended, waiting up to ``within`` seconds: the
    resource tracker among them exits when it sees its parent's pipe close, a moment after."""
    deadline = time.monotonic() + within
    while not all(gone(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _quiet(err: str) -> str:
    """The last line, after checking that nothing but progress bars and logs came before."""
    for noise in ("Traceback", "KeyboardInterrupt", "Exception ignored", "Error"):
        assert noise not in err, err
    return err.split("\r")[-1].strip().splitlines()[-1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_during_eval_ends_quietly_saying_what_was_recorded(tmp_path):
    out = tmp_path / "eval"
    status, err, workers = _ctrl_c(["eval", *EVAL, f"out={out}"])
    assert status == 130, err
    assert re.fullmatch(
        rf"vw-robot eval: interrupted; \d+ episode\(s\) recorded in {out}/episodes.jsonl; run "
        "the same command to resume from them",
        _quiet(err),
    )
    assert workers and _all_gone(workers)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_during_collect_ends_quietly_saying_what_was_kept(tmp_path):
    out = tmp_path / "data"
    status, err, workers = _ctrl_c(["collect", *COLLECT[:-1], "workers=2", f"out={out}"])
    assert status == 130, err
    assert re.fullmatch(
        rf"vw-robot collect: interrupted; the finished episodes are kept in {out} \(\d+ "
        r"recorded by this run, 0 earlier\); run the same command to record the rest",
        _quiet(err),
    )
    assert workers and _all_gone(workers)
