"""Do heads trained on the states chains start from act from them? A playground measurement.

Eight subtasks that need no block (the drawer, slider, lightbulb and LED, both ways), two views
(``front+wrist``), BC with the playground recipe (task, proprio state, 4 px shifts, 2000 steps)
trained on 30 expert demonstrations per subtask that start at HOME (the data every playground
study so far collected), or on 15 from HOME and 15 from random starts (half a random arm pose and
gripper, half where another subtask's expert leaves the scene: ``vw-robot collect
start=random``). Each policy is evaluated on every subtask from HOME and from random starts
(``vw-robot eval start=random``), 10 episodes each on the reporting seeds
``episode_seed(1000, task, i)``, 200 steps; one BC per training seed (``--seeds``). Every
step resumes; the results (the harness's
entries: per-task successes, seeds, labels, training seed, commit, command) are merged into
``--results``.

    python benchmarks/playground_starts.py --out runs/playground_starts --seeds 0 1 \\
        --results docs/results/playground_starts.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from vw_robot.cli import load_config
from vw_robot.config import CollectConfig, EvalConfig
from vw_robot.eval.entries import merge_entries, suite_entry
from vw_robot.io import atomic_write_text
from vw_robot.jobs import collect, evaluate
from vw_robot.training.stages import run_stage

TASKS = [
    f"playground/{name}"
    for name in (
        "open-drawer",
        "close-drawer",
        "move-slider-left",
        "move-slider-right",
        "turn-on-lightbulb",
        "turn-off-lightbulb",
        "turn-on-led",
        "turn-off-led",
    )
]
CAMERA = "front+wrist"
# dataset -> [(start, episodes per subtask)]: the same number of demonstrations in each
DATA = {"home": [("home", 30)], "mixed": [("home", 15), ("random", 15)]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/playground_starts")
    parser.add_argument("--results", default=None, help="results file the entries merge into")
    parser.add_argument("--episodes", type=int, default=10, help="evaluation episodes per task")
    parser.add_argument("--steps", type=int, default=2000, help="head training steps")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    args = parser.parse_args()
    out = Path(args.out)
    command = "python benchmarks/playground_starts.py " + shlex.join(sys.argv[1:])
    entries = []
    for data, parts in DATA.items():
        for start, count in parts:
            collect(
                CollectConfig(
                    tasks=TASKS,
                    episodes_per_task=count,
                    camera=CAMERA,
                    workers=args.workers,
                    out=str(out / f"data-{data}"),
                    start=start,
                )
            )
        for seed in args.seeds:
            entries += _train_and_evaluate(args, out, data, seed, command)
    if args.results:
        path = Path(args.results)
        before = json.loads(path.read_text()) if path.exists() else []
        atomic_write_text(path, json.dumps(merge_entries(before, entries), indent=1) + "\n")
    for e in entries:
        wins = sum(t["successes"] for t in e["tasks"].values())
        total = sum(t["episodes"] for t in e["tasks"].values())
        print(f"| {e['variant']} | {wins}/{total} | {e['mean_success']:.3f} |")
    return 0


def _train_and_evaluate(
    args: argparse.Namespace, out: Path, data: str, seed: int, command: str
) -> list[dict]:
    """BC on one dataset and training seed, evaluated from HOME and from random starts."""
    cfg = load_config(
        "train",
        [
            "stage=bc",
            "experiment=playground_cpu",
            f"experiment.bc.optim.steps={args.steps}",
            f"experiment.bc.optim.seed={seed}",
            f"dataset={out / f'data-{data}'}",
            f"out={out / f'runs-{data}'}",
            "pictures=false",
        ],
    )
    checkpoint = str(run_stage(cfg)["checkpoint"])
    entries = []
    for start in ("home", "random"):
        folder = out / "eval" / f"bc_{data}_seed{seed}-from_{start}"
        evaluate(
            EvalConfig(
                policy=checkpoint,
                suite=None,
                tasks=TASKS,
                episodes_per_task=args.episodes,
                seed=1000,
                workers=args.workers,
                max_episode_steps=200,
                videos_per_task=0,
                start=None if start == "home" else start,
                out=str(folder),
            )
        )
        entry = suite_entry(folder, policy="bc", command=command, checkpoint=checkpoint)
        entries.append({**entry, "trained_on": data, "evaluated_from": start})
    return entries


if __name__ == "__main__":
    sys.exit(main())
