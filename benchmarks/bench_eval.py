"""Evaluation throughput: episodes/min with 1, 2, 4, 8 and 16 env slots, per process (today's
``workers``: each process runs its own policy and env) against batched (``batch``: the envs step
in worker processes, one policy in this process acts for all of them), for the scripted expert
and a learned policy.

Without a checkpoint it builds a randomly initialised VideoWorld policy of the experiment's
sizes (``tiny_cpu``: the default; positions as the experiment says) and saves it with
``save_checkpoint``, so it runs anywhere: random weights decode as many ids as trained ones,
so the timings carry over; only how soon episodes succeed differs (they never do here).

Usage:
    python benchmarks/bench_eval.py                                  # 3 tasks x 8 x 100 steps
    python benchmarks/bench_eval.py runs/demo/videoworld-100pct_seed0 --slots 2 8 16
    python benchmarks/bench_eval.py --policies expert --episodes 4 --limit 50
    python benchmarks/bench_eval.py --policies learned --set transformer.model.positions=rope

Prints Markdown; asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from vw_robot import checkpoint as ckpt
from vw_robot.cli import load_config
from vw_robot.eval import evaluate
from vw_robot.models.registry import build_model
from vw_robot.training.codes import sequence_layout

TASKS = ["metaworld/reach-v3", "metaworld/drawer-close-v3", "metaworld/button-press-topdown-v3"]


def build_random_policy(
    out: Path, experiment: str, tasks: list[str], image_size: int, overrides: Sequence[str] = ()
) -> Path:
    """Save randomly initialised tokenizer, LDM, transformer and action head checkpoints of
    ``experiment``'s sizes (and ``overrides``, ``KEY=VALUE`` under ``experiment.``) under
    ``out``; the action head's checkpoint (the policy)."""
    given = [f"experiment.{kv}" for kv in overrides]
    exp = load_config("train", [f"experiment={experiment}", *given]).experiment
    torch.manual_seed(0)

    def save(stage: str, kind: str, config: dict, parents: dict | None = None) -> Path:
        model = build_model(kind, config)
        return ckpt.save_checkpoint(
            out / stage,
            stage=stage,
            step=0,
            model=model,
            model_config=config,
            config_yaml=f"# random {experiment}-size weights (benchmarks/bench_eval.py)\n",
            parents=parents,
        )

    tok_config = {**dataclasses.asdict(exp.tokenizer.model), "image_size": image_size}
    ldm_config = {**dataclasses.asdict(exp.ldm.model), "image_size": image_size}
    tokenizer = save("tokenizer", "FrameTokenizer", tok_config)
    ldm = save("ldm", "LatentDynamicsModel", ldm_config)
    layout = sequence_layout(tok_config, ldm_config)
    transformer = save(
        "transformer",
        "VideoTransformer",
        {
            **dataclasses.asdict(exp.transformer.model),
            "layout": dataclasses.asdict(layout),
            "num_tasks": len(tasks),
            "task_ids": list(tasks),
        },
        {"tokenizer": tokenizer, "ldm": ldm},
    )
    head = exp.action_head.model
    return save(
        "action_head",
        "ActionHead",
        {
            "image_size": image_size,
            "down_factor": 2 ** len(head.channels),
            "channels": list(head.channels),
            "num_res_blocks": head.num_res_blocks,
            "feature_dim": head.feature_dim,
            "use_codes": True,
            "horizon": ldm_config["horizon"],
            "code_levels": list(ldm_config["levels"]),
            "code_embed_dim": head.code_embed_dim,
            "hidden": head.hidden,
            "action_dim": 4,  # Meta-World
            "chunk": head.chunk,
            "task_ids": list(tasks),
            "env": {"image_size": image_size, "camera": None, "labelled_episodes": []},
        },
        {"transformer": transformer, "tokenizer": tokenizer, "ldm": ldm},
    )


def episodes_per_minute(policy: str, args: argparse.Namespace, **mode: int | None) -> float:
    """Episodes/min of one whole ``evaluate`` call (process start, policy and env builds
    included, as a user's run pays them)."""
    start = time.perf_counter()
    results = evaluate(
        args.tasks,
        policy=policy,
        episodes_per_task=args.episodes,
        env_kwargs={"image_size": args.image_size, "max_episode_steps": args.limit},
        **mode,
    )
    episodes = sum(len(v) for v in results.values())
    return episodes / ((time.perf_counter() - start) / 60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy", nargs="?", help="a trained policy; none: random tiny_cpu")
    parser.add_argument("--policies", nargs="+", default=["expert", "learned"])
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    parser.add_argument("--episodes", type=int, default=8, help="per task")
    parser.add_argument("--limit", type=int, default=100, help="steps per episode at most")
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--experiment", default="tiny_cpu", help="sizes of the random policy")
    parser.add_argument(
        "--batch-workers", type=int, default=2, help="env processes when batched (2 cores)"
    )
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="experiment settings of the random policy, e.g. transformer.model.positions=rope",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        learned = args.policy or str(
            build_random_policy(Path(tmp), args.experiment, args.tasks, args.image_size, args.set)
        )
        names = {"expert": "expert", "learned": learned}
        print(
            f"# evaluation throughput — {len(args.tasks)} tasks x {args.episodes} episodes, at "
            f"most {args.limit} steps, {args.image_size} px, {os.cpu_count()} cores\n\n"
            "episodes/min of whole `evaluate` calls (process start, policy load and env builds "
            "included). Per process: `workers=N` processes, each with its own policy and env "
            f"(torch threads: cores / N). Batched: `batch=N` env slots in "
            f"`workers=min(N, {args.batch_workers})` processes (1: this process), one policy "
            "in this process (torch threads: cores - (workers - 1), at most "
            f"{torch.get_num_threads()}).\n"
        )
        settings = f" ({', '.join(args.set)})" if args.set else ""
        learned_label = args.policy or f"random {args.experiment} VideoWorld{settings}"
        print("| policy | N | per process (workers=N) | batched (batch=N) | batched / 2 workers |")
        print("|---|---:|---:|---:|---:|")
        for key in args.policies:
            label = "expert" if key == "expert" else learned_label
            rows = []
            for n in args.slots:  # alternate the two, so load from elsewhere falls on both
                per_process = episodes_per_minute(names[key], args, workers=n)
                batched = episodes_per_minute(
                    names[key], args, batch=n, workers=min(n, args.batch_workers)
                )
                rows.append((n, per_process, batched))
            base = next((p for n, p, _ in rows if n == 2), math.nan)
            for n, per_process, batched in rows:
                ratio = "—" if math.isnan(base) else f"{batched / base:.2f}x"
                line = f"| {label} | {n} | {per_process:.1f} | {batched:.1f} | {ratio} |"
                print(line, flush=True)


if __name__ == "__main__":
    main()
