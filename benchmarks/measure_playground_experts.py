"""Measure the playground's scripted experts: every subtask alone, then chains of 5.

Usage:
    python benchmarks/measure_playground_experts.py                   # 50 episodes, 200 chains
    python benchmarks/measure_playground_experts.py --episodes 10 --chains 20 --workers 2
    # from random starts (start=random), and with DART action noise of each std given:
    python benchmarks/measure_playground_experts.py --start random --episodes 20 --chains 0
    python benchmarks/measure_playground_experts.py --action-noise 0.1 0.2 0.3 --episodes 5 \
        --chains 0 --json docs/results/playground_experts_noise.json

Prints Markdown: one row per subtask (episodes, successes, rate, Wilson 95%, mean steps to
success) and the chain table (success after 1..5 subtasks, average length, per-subtask rates).
Episode i of subtask t uses ``episode_seed(--seed, t, i)``; chain i uses
``chain_seed(--seed, i)``. Episodes run in the same env as ``make_env`` builds (same physics,
rendering at --image-size every step) until success or the subtask's 360-step limit.

With ``--start random`` or a non-zero ``--action-noise`` the subtasks are rolled out here as
``vw-robot collect`` records them (``reset(options={"start": ...})``; the executed action is
the expert's plus Gaussian noise drawn from the episode seed, clipped to the action box), one
table column per noise level; ``--json`` writes the counts with the command and git revision.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from vw_robot.envs.playground_scene import FINGER_OPEN, HOME
from vw_robot.eval import episode_seed, evaluate, markdown_table, summarize, wilson_interval
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
    parser.add_argument("--start", choices=("home", "random"), default="home")
    parser.add_argument(
        "--action-noise", type=float, nargs="+", default=[0.0], help="noise stds, one column each"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the counts here")
    args = parser.parse_args()

    from vw_robot.envs import list_tasks

    prov = provenance()
    versions = ", ".join(f"{k} {v}" for k, v in prov["packages"].items() if v)
    variant = ""
    if args.start != "home" or args.action_noise != [0.0]:
        noise = " ".join(f"{n:g}" for n in args.action_noise)
        variant = f" --start {args.start} --action-noise {noise}"
        variant += f" --json {args.json}" if args.json else ""
    command = (
        f"python benchmarks/measure_playground_experts.py --episodes {args.episodes} "
        f"--chains {args.chains} --workers {args.workers} --seed {args.seed} --image-size "
        f"{args.image_size}{variant}"
    )
    print(f"Command: `{command}`. Versions: {versions}; git {prov['git_revision']}.\n", flush=True)
    tasks = list_tasks("playground/all")
    if variant:
        _measure_variants(args, tasks, command, prov)
        return
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


def _rollout(task: str, index: int, base_seed: int, start: str, noise: float, size: int) -> dict:
    """One expert episode of ``task`` as ``vw-robot collect`` records it (worker process)."""
    from vw_robot.envs import make_env
    from vw_robot.eval.collect import noise_rng
    from vw_robot.policies import make_policy

    env = make_env(task, image_size=size)
    expert = make_policy("expert")
    seed = episode_seed(base_seed, task, index)
    obs, info = env.reset(seed=seed, options={"start": start})
    expert.reset(task_id=task, action_space=env.action_space, seed=seed)
    rng = noise_rng(seed) if noise else None
    low, high = env.action_space.low, env.action_space.high
    how, steps, success = info["start"], 0, False
    grip, gap = info["privileged"]["grip"], float(info["privileged"]["gap"][0])
    where = {
        "home_distance": float(np.linalg.norm(grip - HOME)),
        "height": float(grip[2]),
        "gripper_open": gap >= 2 * FINGER_OPEN - 0.01,
    }
    while True:
        action = np.asarray(expert.select_action(obs, info), dtype=np.float32)
        if rng is not None:
            action = np.clip(action + noise * rng.standard_normal(action.shape), low, high)
        obs, _, terminated, truncated, info = env.step(action)
        steps += 1
        if info["is_success"]:
            success = True
            break
        if terminated or truncated:
            break
    env.close()
    return {
        "task": task,
        "noise": noise,
        "success": success,
        "steps": steps,
        "start": how,
        **where,
    }


def _start_stats(rows: list[dict]) -> dict[str, dict]:
    """Where the episodes started, per kind (home, arm, after) and over all of them."""
    kinds = {"all": rows}
    for row in rows:
        kinds.setdefault(row["start"].split(":")[0], []).append(row)
    stats = {}
    for kind, group in kinds.items():
        distance = np.array([r["home_distance"] for r in group])
        stats[kind] = {
            "count": len(group),
            "median_home_distance_m": float(np.median(distance)),
            "share_over_15cm": float(np.mean(distance > 0.15)),
            "share_hand_below_10cm": float(np.mean([r["height"] < 0.10 for r in group])),
            "share_gripper_not_open": float(np.mean([not r["gripper_open"] for r in group])),
        }
    return stats


def _measure_variants(args: argparse.Namespace, tasks: list[str], command: str, prov: dict) -> None:
    """Subtasks from ``args.start`` with each ``args.action_noise``: a Markdown table (+ JSON)."""
    jobs = [
        (t, i, args.seed, args.start, float(n), args.image_size)
        for n in args.action_noise
        for t in tasks
        for i in range(args.episodes)
    ]
    begin = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.workers, mp_context=context) as pool:
        rows = list(pool.map(_rollout, *zip(*jobs, strict=True), chunksize=4))
    minutes = (time.perf_counter() - begin) / 60
    counts: dict[str, dict[str, dict]] = {}
    for row in rows:
        cell = counts.setdefault(row["task"], {}).setdefault(
            f"{row['noise']:g}", {"episodes": 0, "successes": 0, "steps": [], "starts": {}}
        )
        cell["episodes"] += 1
        cell["successes"] += row["success"]
        if row["success"]:
            cell["steps"].append(row["steps"])
        kind = row["start"].split(":")[0]
        cell["starts"][kind] = cell["starts"].get(kind, 0) + 1
    levels = [f"{n:g}" for n in args.action_noise]
    print(
        f"### Subtasks, start={args.start}, {args.episodes} episodes per subtask and noise level "
        f"({minutes:.1f} min wall)\n"
    )
    header = " | ".join(f"noise {n}: successes (Wilson 95%), mean steps" for n in levels)
    print(f"| task | {header} |")
    print("|---|" + "---|" * len(levels))
    means = {n: [] for n in levels}
    for task in tasks:
        cells = []
        for n in levels:
            c = counts[task][n]
            low, high = wilson_interval(c["successes"], c["episodes"])
            steps = f"{np.mean(c['steps']):.0f}" if c["steps"] else "-"
            cells.append(f"{c['successes']}/{c['episodes']} ([{low:.2f}, {high:.2f}]), {steps}")
            means[n].append(c["successes"] / c["episodes"])
        print(f"| {task} | " + " | ".join(cells) + " |")
    mean_cells = " | ".join(f"**{np.mean(means[n]):.3f}**" for n in levels)
    print(f"| **mean over tasks** | {mean_cells} |\n", flush=True)
    starts = _start_stats(rows)
    for kind, row in starts.items():
        print(
            f"Starts {kind}: {row['count']}, median {row['median_home_distance_m']:.2f} m from "
            f"HOME, {row['share_over_15cm']:.0%} over 15 cm, {row['share_hand_below_10cm']:.0%} "
            f"with the hand below 10 cm, {row['share_gripper_not_open']:.0%} gripper not open."
        )
    print()
    if args.json is not None:
        for task in counts.values():
            for cell in task.values():
                steps = cell.pop("steps")
                cell["mean_steps"] = float(np.mean(steps)) if steps else None
        payload = {
            "command": command,
            "seed": args.seed,
            "episodes": args.episodes,
            "start": args.start,
            "action_noise": args.action_noise,
            "image_size": args.image_size,
            "git_revision": prov["git_revision"],
            "packages": prov["packages"],
            "minutes": round(minutes, 2),
            "starts": starts,
            "tasks": counts,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    main()
