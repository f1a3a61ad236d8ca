"""What each video codec preset keeps of real episode frames: bytes, PSNR, max error, speed.

Usage:
    python benchmarks/bench_codecs.py                              # pick-place expert, 64 px
    python benchmarks/bench_codecs.py --task robosuite/lift --image-size 128

Prints a Markdown table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

import numpy as np

import vw_robot  # noqa: F401  (headless GL before mujoco)
from vw_robot.data.video import CODECS, read_video, write_video


def expert_frames(task_id: str, size: int, steps: int, seed: int) -> np.ndarray:
    from vw_robot.envs import make_env, make_expert

    env, expert = make_env(task_id, image_size=size), make_expert(task_id)
    obs, info = env.reset(seed=seed)
    expert.reset()
    frames = [obs["pixels"]]
    for _ in range(steps):
        obs, _, _, truncated, info = env.step(expert(obs, info))
        frames.append(obs["pixels"])
        if truncated:
            break
    env.close()
    return np.stack(frames)  # (T, H, W, 3)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="metaworld/pick-place-v3")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    frames = expert_frames(args.task, args.image_size, args.steps, args.seed)
    print(
        f"# codec presets — {args.task}, {len(frames)} frames at {args.image_size} px "
        f"(raw {frames.nbytes:,} bytes)\n"
    )
    print(
        "| preset | bytes | ratio to raw | PSNR dB | max abs error | encode ms/frame "
        "| decode ms/frame |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in CODECS:
            path = os.path.join(tmp, f"{name}.mp4")
            start = time.perf_counter()
            write_video(path, frames, fps=20, codec=name)
            encode = (time.perf_counter() - start) * 1000 / len(frames)
            start = time.perf_counter()
            decoded = read_video(path)
            decode = (time.perf_counter() - start) * 1000 / len(frames)
            size = os.path.getsize(path)
            error = int(np.abs(decoded.astype(int) - frames.astype(int)).max())
            value = psnr(decoded, frames)
            shown = "exact" if value == float("inf") else f"{value:.1f}"
            print(
                f"| {name} | {size:,} | {frames.nbytes / size:.0f}x | {shown} | {error} | "
                f"{encode:.2f} | {decode:.2f} |"
            )


if __name__ == "__main__":
    main()
