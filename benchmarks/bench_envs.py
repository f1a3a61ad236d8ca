"""Env throughput per suite: simulator steps alone, and steps with the camera frame rendered.

Usage:
    python benchmarks/bench_envs.py                      # default tasks, 64 and 128 px
    python benchmarks/bench_envs.py --steps 300 --tasks metaworld/reach-v3 robosuite/lift

Prints a Markdown table (median of --repeats runs); asserts nothing. One process, one core
busy: these are per-env figures on this machine's software renderer (Mesa llvmpipe).
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time

import numpy as np

import vw_robot  # noqa: F401  (headless GL before mujoco)
from vw_robot.envs import make_env
from vw_robot.envs.rendering import FastRenderer

DEFAULT_TASKS = [
    "metaworld/reach-v3",
    "metaworld/pick-place-v3",
    "robosuite/lift",
    "robosuite/door",
]


def _rate(fn, steps: int, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        rates.append(steps / (time.perf_counter() - start))
    return statistics.median(rates)


def bench_task(task_id: str, size: int, steps: int, repeats: int) -> dict[str, float]:
    env = make_env(task_id, image_size=size, max_episode_steps=10**6)
    inner = env.unwrapped
    # An untouched copy of the model (nothing has rendered yet) for the default-visuals figure.
    default_model = copy.deepcopy(inner.mj_model)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (steps, *env.action_space.shape)).astype(np.float32)
    it = iter(())

    def next_action():
        nonlocal it
        try:
            return next(it)
        except StopIteration:
            it = iter(actions)
            return next(it)

    sim = _rate(lambda: inner._sim_step(next_action().astype(np.float64)), steps, repeats)
    full = _rate(lambda: env.step(next_action()), steps, repeats)
    slow = FastRenderer(default_model, size, inner.camera, flip=False, fast=False)
    default_render = _rate(lambda: slow.render(inner.mj_data), max(10, steps // 5), repeats)
    slow.close()
    fast_render = _rate(lambda: inner._render_pixels(), steps, repeats)
    env.close()
    return {
        "sim": sim,
        "full": full,
        "fast_ms": 1000 / fast_render,
        "default_ms": 1000 / default_render,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS)
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 128])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(
        f"# env throughput — {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, MUJOCO_GL={os.environ.get('MUJOCO_GL')}\n"
    )
    print(
        "| task | px | sim steps/s (no render) | env steps/s (step + render) "
        "| render ms (fast visuals) | render ms (shadows, MSAA, reflections on) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for task_id in args.tasks:
        for size in args.sizes:
            r = bench_task(task_id, size, args.steps, args.repeats)
            print(
                f"| {task_id} | {size} | {r['sim']:.0f} | {r['full']:.0f} | "
                f"{r['fast_ms']:.1f} | {r['default_ms']:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
