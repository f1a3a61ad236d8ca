"""What bounds evaluation on this machine: one env step (simulation + rendering) against one
policy step per env, alone and batched (``make_batch``), both on one torch thread.

Two cores give at most 2 / (env + policy per env) env steps/s; with a free policy 2 / env.

Usage:
    python benchmarks/bench_eval_bound.py runs/mt10_many_ft/videoworld-10pct_seed0 \\
        --task metaworld/push-v3 --camera front+top

Prints Markdown; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import vw_robot  # noqa: F401  (headless GL before mujoco)
from vw_robot.envs import make_env
from vw_robot.policies.videoworld import load_policy


def env_step_ms(task: str, camera: str | None, image_size: int, steps: int) -> float:
    """Median ms of env.step with random actions (resets not counted)."""
    env = make_env(task, image_size=image_size, **({"camera": camera} if camera else {}))
    env.reset(seed=0)
    times = []
    for i in range(steps):
        action = env.action_space.sample()
        start = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(action)
        times.append(time.perf_counter() - start)
        if terminated or truncated:
            env.reset(seed=i + 1)
    env.close()
    return 1000 * statistics.median(times[10:])


def policy_ms_per_env(path: str, rows: int, steps: int) -> float:
    """Median ms per env of one batched select_actions call on random frames (and states)."""
    policy = load_policy(path)
    batch = policy.make_batch(rows)
    for row in range(rows):
        batch.reset(row, task_id=policy.task_ids[row % len(policy.task_ids)])
    rng = np.random.default_rng(0)
    size, state_dim = policy.image_size, policy.head.config.state_dim
    obs = [
        {
            "pixels": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
            **({"state": rng.random(state_dim).astype(np.float32)} if state_dim else {}),
        }
        for _ in range(rows)
    ]
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        batch.select_actions(obs)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[8:]) / rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy", help="a learned policy checkpoint or run folder")
    parser.add_argument("--task", default="metaworld/push-v3")
    parser.add_argument("--camera", default=None, help="None: the policy's own camera")
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 2, 8])
    parser.add_argument("--steps", type=int, default=120)
    args = parser.parse_args()
    torch.set_num_threads(1)
    policy = load_policy(args.policy)
    camera = args.camera or policy.camera
    env = env_step_ms(args.task, camera, policy.image_size, args.steps)
    print(f"env step ({args.task}, {camera}, {policy.image_size} px): {env:.1f} ms\n")
    print("| envs per batch | policy ms per env | bound, 2 cores (env steps/s) |")
    print("|---:|---:|---:|")
    for rows in args.rows:
        ms = policy_ms_per_env(args.policy, rows, 40)
        print(f"| {rows} | {ms:.1f} | {2000 / (env + ms):.0f} |", flush=True)
    print(f"\nwith a policy that cost nothing: {2000 / env:.0f} env steps/s")


if __name__ == "__main__":
    main()
