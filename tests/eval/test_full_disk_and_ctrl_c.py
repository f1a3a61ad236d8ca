"""A full disk and Ctrl-C end ``collect`` and ``eval`` with one line that says what was kept,
not a traceback."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from vw_robot.cli import main
from vw_robot.data import format as fmt

COLLECT = [
    "tasks=[metaworld/reach-v3]",
    "episodes_per_task=3",
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
    assert fmt.read_manifest(out)["num_episodes"] == 3
