"""Render the README's picture: the first frame of each MT10 task and each robosuite task.

Usage:
    python docs/make_pictures.py                # writes docs/images/tasks.png
    python docs/make_pictures.py --size 128 --out /tmp/tasks.png
"""

from __future__ import annotations

import argparse

import imageio.v2 as imageio
import numpy as np

import vw_robot  # noqa: F401  (headless GL before mujoco)
from vw_robot.envs import list_tasks, make_env


def first_frames(tasks: list[str], size: int, seed: int) -> list[np.ndarray]:
    frames = []
    for task_id in tasks:
        env = make_env(task_id, image_size=size)
        frames.append(env.reset(seed=seed)[0]["pixels"])
        env.close()
    return frames


def grid(frames: list[np.ndarray], columns: int, pad: int = 2) -> np.ndarray:
    h, w = frames[0].shape[:2]
    rows = -(-len(frames) // columns)
    canvas = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 255, np.uint8)
    for k, frame in enumerate(frames):
        r, c = divmod(k, columns)
        canvas[
            pad + r * (h + pad) : pad + r * (h + pad) + h,
            pad + c * (w + pad) : pad + c * (w + pad) + w,
        ] = frame
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/images/tasks.png")
    args = parser.parse_args()
    tasks = list_tasks("metaworld/mt10") + list_tasks("robosuite/all")
    frames = first_frames(tasks, args.size, args.seed)
    blank = np.full_like(frames[0], 255)
    # Two rows of Meta-World MT10, then robosuite padded to a full row.
    frames += [blank] * (-len(frames) % 5)
    imageio.imwrite(args.out, grid(frames, columns=5))
    print(f"wrote {args.out}: " + ", ".join(tasks))


if __name__ == "__main__":
    main()
