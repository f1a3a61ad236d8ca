"""Where a learned policy pushes in the playground: for each push subtask, the block nearest to
the hand when it first comes down to pushing height, on the selection seeds
``episode_seed(5000, task, i)`` (never the reporting seeds).

Each episode is counted as one of: ``named block`` (the hand came down within ``--near`` of the
block the subtask names), ``another block`` (within ``--near`` of a block of another colour),
``no block`` (further than that from every block) or ``never down``; with its success.

    python benchmarks/push_target.py runs/pg_many/bc --episodes 5

A policy that comes down beside the wrong block cannot tell the blocks apart (or which one the
subtask names); one that comes down beside no block cannot place the blocks it sees.
"""

from __future__ import annotations

import argparse
import collections

import numpy as np
import torch

from vw_robot import envs
from vw_robot.envs.playground_scene import SceneState
from vw_robot.eval.seeding import episode_seed
from vw_robot.policies import make_policy

PUSH_HEIGHT = 0.03  # m: the grip point below this is at a block's side (blocks are 5 cm)
SELECTION_SEED_BASE = 5000


def classify(grip: np.ndarray, blocks: dict[str, np.ndarray], named: str, near: float) -> str:
    """Which block the hand is at, in the table plane: named / another / no block."""
    dist = {c: float(np.linalg.norm((grip - p)[:2])) for c, p in blocks.items()}
    nearest = min(dist, key=dist.__getitem__)
    if dist[nearest] > near:
        return "no block"
    return "named block" if nearest == named else "another block"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy", help="a checkpoint folder (or an exported policy)")
    parser.add_argument("--episodes", type=int, default=5, help="per push subtask")
    parser.add_argument("--near", type=float, default=0.06, help="m, block radius counted")
    parser.add_argument("--steps", type=int, default=360)
    args = parser.parse_args()
    torch.set_num_threads(1)
    policy = make_policy(args.policy)
    camera = policy.camera  # what it was trained on
    tally: collections.Counter[tuple[str, bool]] = collections.Counter()
    pushes = [t for t in envs.list_tasks("playground/videoworld12") if "/push-" in t]
    for task in pushes:  # playground/push-<colour>-block-<side>
        color = task.split("/push-")[1].split("-")[0]
        env = envs.make_env(task, image_size=64, camera=camera, max_episode_steps=args.steps)
        try:
            for i in range(args.episodes):
                obs, info = env.reset(seed=episode_seed(SELECTION_SEED_BASE, task, i))
                policy.reset(task_id=task, action_space=env.action_space)
                kind = "never down"
                for _ in range(args.steps):
                    obs, _, terminated, truncated, info = env.step(policy.select_action(obs))
                    state = SceneState.from_privileged(info["privileged"])
                    if kind == "never down" and state.grip[2] < PUSH_HEIGHT:
                        kind = classify(state.grip, state.blocks, color, args.near)
                    if info.get("is_success") or terminated or truncated:
                        break
                ok = bool(info.get("is_success"))
                tally[(kind, ok)] += 1
                print(f"{task} {i}: {'success' if ok else 'failure'}, came down at {kind}")
        finally:
            env.close()
    print("\n| came down at | episodes | successes |\n|---|---:|---:|")
    for kind in ("named block", "another block", "no block", "never down"):
        n = tally[(kind, True)] + tally[(kind, False)]
        print(f"| {kind} | {n} | {tally[(kind, True)]} |")


if __name__ == "__main__":
    main()
