"""Measure the playground's scripted experts: every subtask alone, then chains of 5.

Usage:
    python benchmarks/measure_playground_experts.py                   # 50 episodes, 200 chains
    python benchmarks/measure_playground_experts.py --episodes 10 --chains 20 --workers 2

Prints Markdown: one row per subtask (episodes, successes, rate, Wilson 95%, mean steps to
success) and the chain table (success after 1..5 subtasks, average length, per-subtask rates).
Episode i of subtask t uses ``episode_seed(--seed, t, i)``; chain i uses
``chain_seed(--seed, i)``. Episodes run in the same env as ``make_env`` builds (same physics,
rendering at --image-size every step) until success or the subtask's 360-step limit.
"""

from __future__ import annotations

import argparse
import time

from vw_robot.eval import evaluate, markdown_table, summarize
from vw_robot.eval.chains import evaluate_chains, summarize_chains
from vw_robot.eval.tables import chains_markdown
from vw_robot.provenance import provenance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=50, help="episodes per subtask")
    parser.add_argument("--chains", type=int, default=200, help="chains of 5 (0: skip)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args()

    from vw_robot.envs import list_tasks

    prov = provenance()
    versions = ", ".join(f"{k} {v}" for k, v in prov["packages"].items() if v)
    print(
        f"Command: `python benchmarks/measure_playground_experts.py --episodes {args.episodes} "
        f"--chains {args.chains} --workers {args.workers} --seed {args.seed} --image-size "
        f"{args.image_size}`. Versions: {versions}; git {prov['git_revision']}.\n",
        flush=True,
    )
    tasks = list_tasks("playground/all")
    start = time.perf_counter()
    results = evaluate(
        tasks,
        policy="expert",
        episodes_per_task=args.episodes,
        base_seed=args.seed,
        workers=args.workers,
        env_kwargs={"image_size": args.image_size},
    )
    minutes = (time.perf_counter() - start) / 60
    print(f"### Subtasks, {args.episodes} episodes each ({minutes:.1f} min wall)\n")
    print(markdown_table(summarize(results)), flush=True)
    if args.chains:
        start = time.perf_counter()
        chains = evaluate_chains(
            policy="expert",
            num_chains=args.chains,
            base_seed=args.seed,
            workers=args.workers,
            image_size=args.image_size,
        )
        minutes = (time.perf_counter() - start) / 60
        print(f"### Chains of 5, {args.chains} chains ({minutes:.1f} min wall)\n")
        print(chains_markdown(summarize_chains(chains, 5)), flush=True)


if __name__ == "__main__":
    main()
