"""Measure the Franka Kitchen scripted experts: success rate and steps to success per task.

Usage:
    python benchmarks/measure_kitchen_experts.py                          # 20 seeds, all tasks
    python benchmarks/measure_kitchen_experts.py --tasks kitchen/kettle --episodes 5
    python benchmarks/measure_kitchen_experts.py --timing --steps 200     # ms per step at 64 px

Needs the kitchen extra (``pip install -e ".[kitchen]"``). Episode i runs with reset seed
``--seed + i`` in the env ``make_env`` builds (frames rendered at --image-size every step:
the physics do not depend on it) until ``info["is_success"]`` or the task's time limit. Prints
a Markdown table: episodes, successes, rate, mean steps to success, failed seeds.

``--timing`` instead times ``env.step`` (physics + the 64 px frame + info) under random actions
for each camera, median over --repeats runs of --steps steps, and one frame of upstream's own
renderer with its shipped settings (four shadow-casting lights, 8x multisampling, a 2560x1920
offscreen buffer) at the same size.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import vw_robot  # noqa: F401  (headless GL before mujoco)
from vw_robot.envs import list_tasks, make_env, make_expert


def run_episode(env, expert, seed: int) -> int | None:
    """Steps to the first success of one episode, or None."""
    obs, info = env.reset(seed=seed)
    expert.reset()
    for step in range(1, 10**6):
        obs, _, terminated, truncated, info = env.step(expert(obs, info))
        if info["is_success"]:
            return step
        if terminated or truncated:
            return None
    return None


def _ms_per_call(fn, calls: int, repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - start) / calls * 1000)
    return statistics.median(runs)


def timing(task_id: str, size: int, steps: int, repeats: int) -> None:
    """Print ms per env step (with the frame) per camera, and upstream's own frame."""
    print(f"| {task_id} | camera | px | ms per step (physics + frame) | steps/s |")
    print("|---|---|---:|---:|---:|")
    for camera in ("static", "wrist", "static+wrist"):
        env = make_env(task_id, image_size=size, camera=camera, max_episode_steps=10**6)
        env.reset(seed=0)
        rng = np.random.default_rng(0)
        ms = _ms_per_call(
            lambda env=env, rng=rng: env.step(rng.uniform(-1, 1, 9).astype(np.float32)),
            steps,
            repeats,
        )
        env.close()
        print(f"| | {camera} | {size} | {ms:.1f} | {1000 / ms:.0f} |", flush=True)
    from gymnasium_robotics.envs.franka_kitchen.kitchen_env import KitchenEnv

    upstream = KitchenEnv(render_mode="rgb_array", width=size, height=size)
    upstream.reset(seed=0)
    upstream.render()  # the first frame builds the GL context
    ms = _ms_per_call(upstream.render, 3, 1)
    upstream.close()
    print(f"\nUpstream's own renderer, shipped settings, {size} px: {ms:.0f} ms per frame.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_tasks = [*list_tasks("kitchen/all"), *list_tasks("kitchen/long")]
    parser.add_argument("--tasks", nargs="+", default=default_tasks)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--timing", action="store_true", help="time steps at 64 px instead")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.timing:
        print(f"{os.cpu_count()} cores, MUJOCO_GL={os.environ.get('MUJOCO_GL')}\n")
        timing("kitchen/microwave", 64, args.steps, args.repeats)
        return
    start = time.perf_counter()
    print("| task | episodes | successes | rate | mean steps to success | failed seeds |")
    print("|---|---:|---:|---:|---:|---|")
    rates = []
    for task_id in args.tasks:
        env = make_env(task_id, image_size=args.image_size)
        expert = make_expert(task_id)
        seeds = [args.seed + i for i in range(args.episodes)]
        steps = {seed: run_episode(env, expert, seed) for seed in seeds}
        env.close()
        done = [s for s in steps.values() if s is not None]
        failed = [seed for seed, s in steps.items() if s is None]
        rate = len(done) / len(seeds)
        rates.append(rate)
        mean = f"{np.mean(done):.0f}" if done else "-"
        print(
            f"| {task_id} | {len(seeds)} | {len(done)} | {rate:.2f} | {mean} | "
            f"{', '.join(map(str, failed)) or '-'} |",
            flush=True,
        )
    print(f"| **mean over tasks** | | | **{np.mean(rates):.3f}** | | |")
    print(f"\n{time.perf_counter() - start:.0f} s wall")


if __name__ == "__main__":
    main()
