"""Render the playground pictures of docs/playground.md.

Usage:
    python docs/make_playground_pictures.py            # docs/images/playground_{64,large}.png
    python docs/make_playground_pictures.py --seed 3 --large 320 --out-dir /tmp

``playground_64.png`` is what a policy sees (front camera, 64 px, shown as is);
``playground_large.png`` is the same first frame of the same chain at --large pixels.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import imageio.v2 as imageio

import vw_robot  # noqa: F401  (headless GL before mujoco)
from vw_robot.envs import make_env


def first_frame(size: int, seed: int) -> tuple:
    env = make_env("playground/chain", image_size=size)
    try:
        obs, info = env.reset(seed=seed)
    finally:
        env.close()
    return obs["pixels"], info["chain"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=3)  # light on, blocks in view
    parser.add_argument("--large", type=int, default=480)
    parser.add_argument("--out-dir", default="docs/images")
    args = parser.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, size in (("playground_64.png", 64), ("playground_large.png", args.large)):
        frame, chain = first_frame(size, args.seed)
        imageio.imwrite(out / name, frame)
        print(f"wrote {out / name} ({size} px, seed {args.seed}, chain {', '.join(chain)})")


if __name__ == "__main__":
    main()
