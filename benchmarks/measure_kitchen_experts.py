"""Measure the Franka Kitchen scripted experts: success rate and steps to success per task.

Usage:
    python benchmarks/measure_kitchen_experts.py                          # 20 seeds, all tasks
    python benchmarks/measure_kitchen_experts.py --tasks kitchen/kettle --episodes 5

Needs the kitchen extra (``pip install -e ".[kitchen]"``). Episode i runs with reset seed
``--seed + i`` in the env ``make_env`` builds (frames rendered at --image-size every step:
the physics do not depend on it) until ``info["is_success"]`` or the task's time limit. Prints
a Markdown table: episodes, successes, rate, mean steps to success, failed seeds.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_tasks = [*list_tasks("kitchen/all"), *list_tasks("kitchen/long")]
    parser.add_argument("--tasks", nargs="+", default=default_tasks)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=16)
    args = parser.parse_args()
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
