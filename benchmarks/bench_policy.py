"""Control latency of VideoWorldPolicy (planning every step) with and without the KV cache and
with the plan decoded to frames every step, and evaluation episodes/min with 1 and 2 workers.

Usage:
    python benchmarks/bench_policy.py runs/demo/action_head
    python benchmarks/bench_policy.py runs/demo/action_head --task metaworld/reach-v3 --steps 60

Prints Markdown; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import vw_robot  # noqa: F401  (headless GL before mujoco)


def latency(path: str, task: str, steps: int, use_cache: bool, decode: bool) -> float:
    """Median ms of select_action (a new plan every step) on real observations."""
    from vw_robot.envs import make_env
    from vw_robot.policies.videoworld import load_policy

    policy = load_policy(path, execute=1, use_cache=use_cache)
    env = make_env(task, image_size=policy.image_size)
    obs, info = env.reset(seed=0)
    policy.reset(task_id=task, action_space=env.action_space)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        action = policy.select_action(obs, info)
        if decode:
            policy.plan_frames()
        times.append(time.perf_counter() - start)
        obs, _, _, _, info = env.step(action)
    env.close()
    return 1000 * statistics.median(times[3:])


def episodes_per_minute(path: str, task: str, episodes: int, workers: int, limit: int) -> float:
    from vw_robot.eval import evaluate

    start = time.perf_counter()
    evaluate(
        [task],
        policy=path,
        episodes_per_task=episodes,
        workers=workers,
        env_kwargs={"max_episode_steps": limit},
    )
    return episodes / ((time.perf_counter() - start) / 60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy")
    parser.add_argument("--task", default="metaworld/reach-v3")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--episodes", type=int, default=6)
    parser.add_argument("--limit", type=int, default=100, help="steps per evaluation episode")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    print(f"# policy latency — {args.policy} on {args.task}, a new plan every step\n")
    print("| mode | ms per control step (median) |")
    print("|---|---:|")
    for label, cache, decode in [
        ("KV cache (default)", True, False),
        ("no KV cache", False, False),
        ("KV cache + decode the plan's frames every step", True, True),
    ]:
        ms = latency(args.policy, args.task, args.steps, cache, decode)
        print(f"| {label} | {ms:.1f} |", flush=True)
    print(
        f"\n| evaluation ({args.episodes} episodes x {args.limit} steps, whole chunks) "
        "| episodes/min |\n|---|---:|"
    )
    for workers in (1, 2):
        rate = episodes_per_minute(args.policy, args.task, args.episodes, workers, args.limit)
        print(f"| {workers} worker(s) | {rate:.1f} |", flush=True)


if __name__ == "__main__":
    main()
