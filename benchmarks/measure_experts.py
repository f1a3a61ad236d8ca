"""Measure every scripted expert through the evaluation harness and write docs/experts.md.

Usage:
    python benchmarks/measure_experts.py                           # MT50 x 20, robosuite x 50
    python benchmarks/measure_experts.py --suites robosuite/all --episodes 50 --workers 2
    python benchmarks/measure_experts.py --suites metaworld/mt10 --episodes 5 --out /tmp/x.md

Episodes run to the first success or the task's time limit (Meta-World 500 steps, robosuite
per task); seeds are ``episode_seed(--seed, task, i)`` for i < episodes. Frames are rendered at
--image-size (the contract always renders; 16 px keeps that cheap).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from vw_robot.eval import evaluate, markdown_table, summarize
from vw_robot.io import atomic_write_text
from vw_robot.provenance import provenance

DEFAULT_SUITES = {"metaworld/mt50": 20, "robosuite/all": 50}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", nargs="+", default=list(DEFAULT_SUITES))
    parser.add_argument(
        "--episodes",
        type=int,
        default=None,
        help="episodes per task (default: 20 Meta-World, 50 robosuite)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--out", default="docs/experts.md")
    args = parser.parse_args()

    from vw_robot.envs import list_tasks

    out = Path(args.out)
    sections = _read_sections(out)
    for suite in args.suites:
        episodes = args.episodes or DEFAULT_SUITES.get(suite, 20)
        tasks = list_tasks(suite)
        start = time.perf_counter()
        results = evaluate(
            tasks,
            policy="expert",
            episodes_per_task=episodes,
            base_seed=args.seed,
            workers=args.workers,
            env_kwargs={"image_size": args.image_size},
        )
        minutes = (time.perf_counter() - start) / 60
        table = markdown_table(summarize(results))
        print(f"## {suite}\n{table}", flush=True)
        prov = provenance()
        versions = ", ".join(f"{k} {v}" for k, v in prov["packages"].items() if v)
        sections[suite] = (
            f"## {suite} — {episodes} episodes per task\n\n"
            f"Command: `python benchmarks/measure_experts.py --suites {suite} --episodes "
            f"{episodes} --workers {args.workers} --seed {args.seed} --image-size "
            f"{args.image_size}` ({minutes:.1f} min wall). Versions: {versions}; "
            f"git {prov['git_revision']}.\n\n{table}"
        )
    body = "".join(f"{_MARK.format(name)}\n{text}\n" for name, text in sections.items())
    atomic_write_text(out, _HEADER + body)
    print(f"wrote {out}")


_HEADER = """# Scripted experts — measured success

Each section is written by `benchmarks/measure_experts.py` with the command it names; rerunning
one suite replaces only its section. Success = `info["is_success"]` at any step before the
task's time limit (Meta-World 500 steps; robosuite per task); episode i of task t uses seed
`episode_seed(seed, t, i)`; intervals are Wilson 95%.

"""
_MARK = "<!-- suite: {} -->"


def _read_sections(path: Path) -> dict[str, str]:
    """Existing per-suite sections of ``path`` (empty when it does not exist)."""
    if not path.exists():
        return {}
    sections: dict[str, str] = {}
    current = None
    for line in path.read_text().splitlines(keepends=True):
        if line.startswith("<!-- suite: ") and line.rstrip().endswith("-->"):
            current = line[len("<!-- suite: ") :].rstrip()[:-3].strip()
            sections[current] = ""
        elif current is not None:
            sections[current] += line
    return {k: v.strip("\n") + "\n" for k, v in sections.items()}


if __name__ == "__main__":
    main()
