"""Copy a dataset, plant one defect of each kind in it, and show what `vw-robot data check`
reports (the original is not touched).

Usage:
    python docs/plant_defects.py data/mt10 /tmp/mt10_defects
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np


def plant(root: Path) -> dict[str, str]:
    from vw_robot.data.video import read_video, write_video

    episodes = sorted(p for p in (root / "episodes").iterdir() if p.is_dir())
    planted = {}
    video = episodes[0] / "video.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    planted["truncated video"] = str(video)
    (episodes[1] / "video.mp4").unlink()
    planted["missing video"] = str(episodes[1] / "video.mp4")
    steps = dict(np.load(episodes[2] / "steps.npz"))
    steps["actions"][3, 1] = np.nan
    np.savez(episodes[2] / "steps.npz", **steps)
    planted["NaN in actions"] = str(episodes[2] / "steps.npz")
    meta = json.loads((episodes[3] / "meta.json").read_text())
    meta["num_frames"] += 7
    (episodes[3] / "meta.json").write_text(json.dumps(meta))
    planted["frame count differs from meta"] = str(episodes[3] / "meta.json")
    (episodes[4] / "meta.json").write_text('{"episode_id": "broken",')
    planted["malformed meta"] = str(episodes[4] / "meta.json")
    frames = read_video(episodes[5] / "video.mp4")
    write_video(episodes[5] / "video.mp4", frames[:, ::2, ::2].copy(), fps=20)
    planted["wrong resolution (and checksum)"] = str(episodes[5] / "video.mp4")
    steps = dict(np.load(episodes[6] / "steps.npz"))
    steps["actions"] = steps["actions"][:-2]
    np.savez(episodes[6] / "steps.npz", **steps)
    planted["actions rows do not match frames"] = str(episodes[6] / "steps.npz")
    return planted


def main() -> None:
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("cache"))
    for kind, path in plant(target).items():
        print(f"planted: {kind}: {path}")
    result = subprocess.run(
        ["vw-robot", "data", "check", str(target)], capture_output=True, text=True
    )
    print(f"\n$ vw-robot data check {target}   (exit {result.returncode})")
    print(result.stdout + result.stderr)


if __name__ == "__main__":
    main()
