"""How closely a learned policy follows the expert on recorded episodes: under-fitting or
over-fitting, told apart without a simulator.

Usage:
    python benchmarks/action_error.py runs/mt10/bc-25pct_seed0 data/mt10
    python benchmarks/action_error.py runs/playground/videoworld-25pct_seed0 runs/playground/data \\
        --per-task 3 --execute 1

The policy acts on each recorded frame (and proprio state) in turn, replanning every step by
default (``--execute 1``: its own first predicted action at every step; the context of a
VideoWorld policy advances on the recorded frames), and its actions are compared with the
expert's. Per task, the mean absolute error (env units, averaged over action dimensions and
steps) on the episodes whose actions the head was trained on, on its held-out validation
episodes, and on the dataset's other episodes (never seen with actions; the generator stages
may have seen their video). A head that follows its own training episodes badly is
under-fitted; one that follows them closely and the others badly generalises poorly. Prints
Markdown; asserts nothing.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from vw_robot import checkpoint as ckpt
from vw_robot.data import format as fmt
from vw_robot.data.dataset import FrameCache
from vw_robot.policies.videoworld import load_policy

GROUPS = ("trained on", "validation", "other")


def episode_error(policy, task_id: str, frames: np.ndarray, steps: dict) -> float:
    """Mean |policy action - expert action| over the episode's steps and action dimensions."""
    policy.reset(task_id=task_id, seed=0)
    errors = []
    for t, expert in enumerate(steps["actions"]):
        obs = {"pixels": np.array(frames[t]), "state": steps["state"][t].astype(np.float32)}
        errors.append(np.abs(policy.select_action(obs) - expert).mean())
    return float(np.mean(errors))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy", type=Path, help="a policy checkpoint or run folder")
    parser.add_argument("dataset", type=Path, help="the dataset it was trained on")
    parser.add_argument("--per-task", type=int, default=2, help="episodes per task and group")
    parser.add_argument("--execute", type=int, default=1, help="actions executed per plan")
    args = parser.parse_args()
    info = ckpt.read_info(args.policy)
    env = info.model_config["env"]
    trained, held_out = set(env["labelled_episodes"]), set(env.get("validation_episodes") or [])
    trained -= held_out
    policy = load_policy(args.policy, execute=args.execute, device="cpu")
    tasks = set(policy.task_ids)
    ids, _ = fmt.list_episode_folders(args.dataset)
    metas = fmt.parsed_metas(args.dataset, ids)
    cache = FrameCache(args.dataset)
    chosen: dict[tuple[str, str], list[str]] = defaultdict(list)
    for episode_id in sorted(metas):
        meta = metas[episode_id]
        if meta.task_id not in tasks:
            continue
        group = (
            GROUPS[0]
            if episode_id in trained
            else GROUPS[1]
            if episode_id in held_out
            else GROUPS[2]
        )
        if len(chosen[(meta.task_id, group)]) < args.per_task:
            chosen[(meta.task_id, group)].append(episode_id)
    print(f"# {info.path} on {args.dataset} (execute={args.execute}; mean |action error|)\n")
    print("| task | " + " | ".join(GROUPS) + " |")
    print("|---|" + "---:|" * len(GROUPS))
    pooled: dict[str, list[float]] = defaultdict(list)
    for task_id in sorted(tasks):
        cells = []
        for group in GROUPS:
            errors = []
            for episode_id in chosen.get((task_id, group), []):
                meta = metas[episode_id]
                steps = fmt.load_steps(args.dataset, meta)
                errors.append(episode_error(policy, task_id, cache.frames(meta), steps))
            pooled[group] += errors
            cells.append(f"{np.mean(errors):.3f} ({len(errors)})" if errors else "—")
        print(f"| {task_id} | " + " | ".join(cells) + " |", flush=True)
    means = [f"{np.mean(pooled[g]):.3f}" if pooled[g] else "—" for g in GROUPS]
    print("| **all** | " + " | ".join(f"**{m}**" for m in means) + " |")


if __name__ == "__main__":
    main()
