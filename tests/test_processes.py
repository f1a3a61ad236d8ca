"""Worker processes end with their parent (vw_robot.processes), by prctl and by the watchdog."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# A parent that starts one child which calls die_with_parent, prints the child's pid, waits.
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=subprocess.PIPE, text=True)
assert child.stdout.readline().strip() in ("prctl", "watchdog")
print(child.pid, flush=True)
time.sleep(120)
"""
CHILD = """
import os, time
from vw_robot.processes import die_with_parent
print(die_with_parent(os.getppid(), use_prctl={use_prctl}), flush=True)
time.sleep(120)
"""


def gone(pid: int) -> bool:
    """Whether ``pid`` has ended: no such process, or a zombie nobody has reaped yet."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("use_prctl", [True, False], ids=["prctl", "watchdog"])
def test_a_worker_ends_when_its_parent_is_killed(use_prctl):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = CHILD.format(use_prctl=use_prctl)
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, code], env=env, stdout=subprocess.PIPE, text=True
    )
    child = None
    try:
        child = int(parent.stdout.readline())
        assert not gone(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while not gone(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone(child), f"child {child} outlived its killed parent"
    finally:
        parent.kill()
        parent.wait()
        if child is not None and not gone(child):  # leave nothing running on failure
            os.kill(child, signal.SIGKILL)
