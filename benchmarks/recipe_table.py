"""Summarise benchmarks/mt10_recipe.sh: a Markdown table (one row per variant) and the results
as data (docs/results/mt10_recipe.json, one entry per variant in the schema of issue #11).

Usage:
    python benchmarks/recipe_table.py runs/recipe                       # print the table
    python benchmarks/recipe_table.py runs/recipe --json docs/results/mt10_recipe.json

Reads only what the harness wrote (OUT/eval/<variant>/results.json and the checkpoints'
info.json); asserts nothing. With --json, the variants found in OUT replace their entries in
the file and the file's other entries (variants measured from another folder) are kept.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from omegaconf import OmegaConf

from vw_robot import checkpoint as ckpt
from vw_robot.eval.metrics import wilson_interval

ORDER = [
    "base",
    "base_execute1",
    "base_ensemble",
    "task",
    "task_shift",
    "task_state",
    "task_shift_state",
    "task_shift_state_execute1",
    "task_shift_state_ensemble",
    "task_shift_state_2k_val",
    "task_shift_state_2k_val_ema",
    "task_shift_state_2k_val_big",
    "task_shift_state_2k_val_workspace",
    "task_shift_state_2k_val_fronttop",
    "task_shift_state_2k_val_fronttop_big",
    "task_shift_state_2k_val_frontgripper",
    "task_shift_state_2k_val_fronttop_96",
    "task_shift_state_2k_val_fronttop_128",
]


def entry(out: Path, name: str) -> dict:
    payload = json.loads((out / "eval" / name / "results.json").read_text())
    config, summary = payload["config"], payload["summary"]
    info = ckpt.read_info(config["policy"])
    model = info.model_config
    tasks = {
        task: {"successes": row["successes"], "episodes": row["episodes"]}
        for task, row in summary["tasks"].items()
    }
    switches = {
        "task_conditioning": bool(model.get("num_tasks", 0)),
        "use_state": bool(model.get("state_dim", 0)),
        "execute": config.get("execute"),
        "ensemble": config.get("ensemble"),
    }
    run_config = OmegaConf.load(info.path / ckpt.CONFIG_FILE)
    bc = run_config.experiment.bc
    switches["augment_shift"] = int(bc.get("augment_shift", 0))
    switches["val_fraction"] = float(bc.get("val_fraction", 0.0))
    switches["ema"] = float(bc.optim.get("ema", 0.0))
    switches["trunk_channels"] = [int(c) for c in model["channels"]]
    switches["trunk_res_blocks"] = int(model["num_res_blocks"])
    switches["camera"] = model["env"].get("camera") or "corner2"  # recorded since the camera check
    switches["image_size"] = int(model["env"].get("image_size") or config["image_size"])
    return {
        "policy": "bc_all",
        "variant": name,
        "switches": switches,
        "label_fraction": 1.0,
        "labelled_episodes": len(model["env"]["labelled_episodes"]),
        "train_seed": 0,
        "train_steps": int(run_config.experiment.bc.optim.steps),
        "chosen_step": info.step,
        "mean_success": summary["mean_success"],
        "tasks": tasks,
        "eval_seed_base": config["seed"],
        "max_steps": config["max_episode_steps"],
        "commit": payload["provenance"]["git_revision"],
        "command": f"bash benchmarks/mt10_recipe.sh  # variant {name}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    entries = [entry(args.out, n) for n in variants(args.out)]
    print("| variant | task | shift | state | acting | successes | mean | 95% interval |")
    print("|---|---|---:|---|---|---:|---:|---|")
    for e in entries:
        s = e["switches"]
        wins = sum(t["successes"] for t in e["tasks"].values())
        total = sum(t["episodes"] for t in e["tasks"].values())
        low, high = wilson_interval(wins, total)
        acting = (
            f"ensemble m={s['ensemble']}"
            if s["ensemble"] is not None
            else f"execute {s['execute']}"
            if s["execute"]
            else "chunk of 4"
        )
        print(
            f"| {e['variant']} | {'yes' if s['task_conditioning'] else 'no'} | "
            f"{s['augment_shift']} | {'yes' if s['use_state'] else 'no'} | {acting} | "
            f"{wins}/{total} | {e['mean_success']:.3f} | [{low:.2f}, {high:.2f}] |"
        )
    if args.json:
        merged = merge(json.loads(args.json.read_text()) if args.json.exists() else [], entries)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(merged, indent=1) + "\n")
        print(f"\n{len(entries)} entries measured here, {len(merged)} in all -> {args.json}")


def _rank(name: str) -> tuple[int, str]:
    """Report order: ORDER's variants first, any other after them by name."""
    return (ORDER.index(name), "") if name in ORDER else (len(ORDER), name)


def variants(out: Path) -> list[str]:
    """Every variant evaluated under OUT/eval (a results.json), in report order: one missing
    from ORDER is reported last rather than left out."""
    return sorted((p.parent.name for p in (out / "eval").glob("*/results.json")), key=_rank)


def merge(kept: list[dict], new: list[dict]) -> list[dict]:
    """``kept`` with each of ``new`` replacing the entry of its variant, in report order."""
    by_name = {e["variant"]: e for e in kept}
    by_name.update({e["variant"]: e for e in new})
    return sorted(by_name.values(), key=lambda e: _rank(e["variant"]))


if __name__ == "__main__":
    main()
