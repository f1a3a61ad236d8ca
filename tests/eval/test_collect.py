"""`vw-robot collect` killed with SIGKILL: no worker survives it, and a rerun completes the
dataset."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_processes import gone
from vw_robot.cli import main
from vw_robot.data import format as fmt
from vw_robot.data.check import find_temp_files

REPO = Path(__file__).resolve().parents[2]
# Random actions run each episode to its 60-step limit: about a second per episode here, so
# the run is still going when its first episode is written.
ARGS = [
    "tasks=[metaworld/reach-v3,metaworld/drawer-close-v3]",
    "episodes_per_task=3",
    "image_size=16",
    "max_episode_steps=60",
    "policy=random",
    "keep_failed=true",
]


def children(pid: int) -> list[int]:
    """Pids of the live processes whose parent is ``pid`` (read from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            found.append(int(stat.parent.name))
    return found


def complete_episodes(out: Path) -> int:
    return len(list((out / fmt.EPISODES_DIR).glob(f"*/{fmt.META_FILE}")))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killed_collection_leaves_no_worker_and_a_rerun_completes_it(tmp_path, capsys):
    out = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    parent = subprocess.Popen(
        [sys.executable, "-m", "vw_robot.cli", "collect", *ARGS, "workers=2", f"out={out}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 180
        while complete_episodes(out) == 0 and parent.poll() is None:
            assert time.monotonic() < deadline, "no episode written in 180 s"
            time.sleep(0.05)
        workers = children(parent.pid)  # the 2 pool workers (and multiprocessing's tracker)
        parent.send_signal(signal.SIGKILL)
    finally:
        parent.kill()
        parent.wait()
    written = complete_episodes(out)
    assert parent.returncode == -signal.SIGKILL, "the collection ended before it was killed"
    assert len(workers) >= 2 and written < 6

    deadline = time.monotonic() + 10
    while not all(gone(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [pid for pid in workers if not gone(pid)]
    for pid in survivors:  # leave nothing running, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not survivors, "a worker outlived the killed collection"

    # What a kill mid-write leaves (whether this kill did depends on its moment).
    episode = out / fmt.EPISODES_DIR / "metaworld__drawer-close-v3__s0__00002"
    episode.mkdir(parents=True, exist_ok=True)
    planted = [episode / ".steps.npz.0badc0de.tmp", out / f".{fmt.MANIFEST_FILE}.0badc0de.tmp"]
    for path in planted:
        path.write_bytes(b"partial")
    assert main(["collect", *ARGS, "workers=1", f"out={out}"]) == 0
    capsys.readouterr()
    assert main(["data", "check", str(out)]) == 0
    assert "OK — 6 episodes" in capsys.readouterr().out
    assert not find_temp_files(out / fmt.EPISODES_DIR)
    assert not any(path.exists() for path in planted)
