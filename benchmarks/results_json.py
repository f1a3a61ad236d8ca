"""Results as data: the harness's outputs of a study folder -> one JSON file under docs/results/
(a list of entries in the schema of issues #11/#12), from which docs/results_tables.py writes
the README tables.

    python benchmarks/results_json.py playground runs/playground --json docs/results/playground.json
    python benchmarks/results_json.py suite runs/robosuite --json docs/results/robosuite.json \\
        --command "bash benchmarks/robosuite.sh"

``playground`` reads OUT/eval/<name>/single/results.json (the 12 subtasks one at a time) and
OUT/eval/<name>/chains.json (chains of five) written by ``vw-robot eval-chains``; ``suite``
reads OUT/eval/<name>/results.json written by ``vw-robot eval``. Label share, labelled
episodes, training seed and steps come from the policy checkpoint's info.json and config.yaml.
Reads only what the harness wrote; prints a summary; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from vw_robot import checkpoint as ckpt
from vw_robot.data import format as fmt
from vw_robot.eval.chains import videoworld_groups

# Report order; a folder name may carry a label share and a training seed after the policy
# (bc_seed1, videoworld-10pct_seed2): both are read from the checkpoint, not from the name.
POLICIES = ("videoworld", "videoworld_ldm", "noldm", "bc", "bc_ldm", "bc_all", "expert", "random")
STAGE_OF = {"videoworld": "action_head", "bc": "bc", "noldm": "noldm_head"}  # by name stem
# The head recipe's switches (issue #11), recorded with every trained policy's entry.
RECIPE_KEYS = (
    "task_conditioning",
    "use_state",
    "augment_shift",
    "val_fraction",
    "trunk",
    "freeze_trunk",
    "sampled_fraction",
)


def policy_of(folder_name: str) -> str:
    """The policy an eval folder holds: ``videoworld-10pct_seed2`` -> ``videoworld`` (and the
    main job's label sweep, ``videoworld_labels100`` -> ``videoworld``). A VideoWorld head on
    another generator keeps its own name (``videoworld_t4k-10pct_seed0``: its transformer
    trained 4000 steps), so its rows stay apart from the study's VideoWorld rows."""
    return folder_name.split("_seed")[0].split("_labels")[0].split("-")[0]


def stage_of(policy: str) -> str | None:
    """The checkpoint stage of a policy name (None: expert, random): its stem before any
    ``_<variant>`` (``videoworld_ldm``, ``videoworld_t4k`` -> ``action_head``; ``bc_all`` ->
    ``bc``)."""
    return STAGE_OF.get(policy.split("_")[0])


def _episodes_per_task(checkpoint: Path, ids: list[str] | None = None) -> dict[str, int]:
    """Episodes per task of the dataset a checkpoint was trained on (its config.yaml's
    ``dataset``, restricted to its ``tasks``); with ``ids``, of those episodes only."""
    config = OmegaConf.load(checkpoint / ckpt.CONFIG_FILE)
    try:
        rows = fmt.read_manifest(config.dataset)["episodes"]
    except (OSError, fmt.DatasetError) as exc:
        raise SystemExit(
            f"{checkpoint / ckpt.CONFIG_FILE}: dataset {config.dataset}: {exc} (the videos and "
            "labels per task are read from the dataset a policy was trained on)"
        ) from None
    tasks = set(config.get("tasks") or [])
    wanted = None if ids is None else set(ids)
    counts: dict[str, int] = {}
    for row in rows:
        if tasks and row["task_id"] not in tasks:
            continue
        if wanted is None or row["episode_id"] in wanted:
            counts[row["task_id"]] = counts.get(row["task_id"], 0) + 1
    if wanted is not None and sum(counts.values()) != len(wanted):
        raise SystemExit(
            f"{checkpoint}: {len(wanted) - sum(counts.values())} of its labelled episodes are not "
            f"in {config.dataset}"
        )
    return dict(sorted(counts.items()))


def _policy_fields(name: str, spec: str) -> dict[str, Any]:
    """Label share, labelled episodes (and per task), the videos per task the generator stages
    saw, training seed and steps of a policy checkpoint."""
    base = policy_of(name)
    stage = stage_of(base)
    if stage is None:  # expert, random: nothing trained
        return {"policy": base, "label_fraction": None, "train_seed": None}
    info = ckpt.read_info(spec)
    section = OmegaConf.load(info.path / ckpt.CONFIG_FILE).experiment[stage]
    labelled = info.model_config["env"]["labelled_episodes"]
    generator: dict[str, Any] = {}
    if "transformer" in info.parents:  # VideoWorld, no-LDM: how its codes / frames were made
        transformer = ckpt.read_info(info.parents["transformer"])
        generator["hide_past_codes"] = bool(
            transformer.model_config["layout"].get("hide_past_codes", False)
        )
        generator["transformer_steps"] = transformer.step  # issue #11 item 4
    # Action-free video reaches a head through the generator stages (the transformer, or the
    # LDM whose frame encoder a trunk=ldm head starts from); BC alone sees its labelled clips.
    parent = next((info.parents[s] for s in ("transformer", "ldm") if s in info.parents), None)
    return {
        "policy": base,
        "camera": (info.model_config.get("env") or {}).get("camera"),  # what it acts on
        **generator,
        "label_fraction": 1.0 if section.label_fraction is None else section.label_fraction,
        "labelled_episodes": len(labelled),
        "labelled_per_task": _episodes_per_task(info.path, labelled),
        "videos_per_task": None if parent is None else _episodes_per_task(Path(parent)),
        "train_seed": int(section.optim.seed),
        "train_steps": info.step,
        "recipe": {
            **{key: section.get(key) for key in RECIPE_KEYS},
            "ema": section.optim.get("ema"),
            "steps": int(section.optim.steps),
        },
    }


def _tasks(summary: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {
        task: {"successes": row["successes"], "episodes": row["episodes"]}
        for task, row in summary["tasks"].items()
    }


def playground_entry(folder: Path, command: str) -> dict[str, Any]:
    chains = json.loads((folder / "chains.json").read_text())
    single = json.loads((folder / "single" / "results.json").read_text())
    summary, config = single["summary"], chains["config"]
    tasks = _tasks(summary)
    chain_summary = chains["summary"]
    return {
        **_policy_fields(folder.name, config["policy"]),
        "variant": folder.name,
        "mean_success": summary["mean_success"],
        "tasks": tasks,
        "groups": videoworld_groups(tasks),
        "eval_seed_base": config["seed"],
        "max_steps": config["steps_per_subtask"],
        "chains": chain_summary["chains"],
        "chain_length": chain_summary["chain_length"],
        "success_after": [row["chains"] for row in chain_summary["success_after"]],
        "average_length": chain_summary["average_length"],
        # per subtask: chains that reached it and how many of them it completed
        "chain_subtasks": chain_summary["per_subtask"],
        "commit": chains["provenance"]["git_revision"],
        "command": f"{command}  # eval/{folder.name}",
    }


def suite_entry(folder: Path, command: str) -> dict[str, Any]:
    payload = json.loads((folder / "results.json").read_text())
    summary, config = payload["summary"], payload["config"]
    # `vw-robot eval` records policy=<checkpoint> and seed; `vw-robot run` records the policy's
    # name, its checkpoint and base_seed.
    return {
        **_policy_fields(folder.name, config.get("checkpoint", config["policy"])),
        "variant": folder.name,
        "mean_success": summary["mean_success"],
        "tasks": _tasks(summary),
        "eval_seed_base": config.get("seed", config.get("base_seed")),
        "max_steps": config["max_episode_steps"],
        "commit": payload["provenance"]["git_revision"],
        "command": f"{command}  # eval/{folder.name}",
    }


def _order(folder: Path) -> tuple[int, str]:
    base = policy_of(folder.name)
    return (POLICIES.index(base) if base in POLICIES else len(POLICIES), folder.name)


def merge(before: list[dict[str, Any]], measured: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``measured`` (entries read from a study folder) merged into a results file's
    ``before``: an entry of a variant the folder no longer holds stays; an entry whose
    evaluation is unchanged (same commit and successes) stays as it was, with the command
    that made it; the others are replaced."""
    old = {e["variant"]: e for e in before}
    merged = {e["variant"]: e for e in before}
    for e in measured:
        prior = old.get(e["variant"])
        same = prior is not None and (prior["commit"], prior["tasks"]) == (e["commit"], e["tasks"])
        merged[e["variant"]] = prior if same else e
    return sorted(merged.values(), key=lambda e: _order(Path(e["variant"])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["playground", "suite"])
    parser.add_argument("out", type=Path, help="the study folder (holds eval/<policy>/)")
    parser.add_argument("--json", type=Path, default=None, help="write the entries here")
    parser.add_argument("--command", default=None, help="the study's command (recorded)")
    parser.add_argument(
        "--include",
        nargs=2,
        action="append",
        default=[],
        metavar=("FILE", "POLICY"),
        help="also copy POLICY's entries, unchanged, from another results FILE (a baseline "
        "measured in another study, with its own command and commit)",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the --json file's entries of variants (eval folders) not in OUT — rows "
        "measured from a folder since lost — and replace the others with OUT's",
    )
    args = parser.parse_args()
    if args.merge and not args.json:
        raise SystemExit("--merge needs --json (the file to merge into)")
    marker = "chains.json" if args.kind == "playground" else "results.json"
    folders = sorted((p.parent for p in (args.out / "eval").glob(f"*/{marker}")), key=_order)
    default = f"bash benchmarks/{'playground' if args.kind == 'playground' else 'robosuite'}.sh"
    make = playground_entry if args.kind == "playground" else suite_entry
    entries = [make(folder, args.command or default) for folder in folders]
    for path, policy in args.include:
        copied = [e for e in json.loads(Path(path).read_text()) if e["policy"] == policy]
        if not copied:
            raise SystemExit(f"{path}: no entry of policy {policy!r}")
        entries += copied
    if args.merge and args.json.exists():
        entries = merge(json.loads(args.json.read_text()), entries)
    for e in entries:
        line = f"{e['variant']:>16}: mean {e['mean_success']:.3f}"
        if "average_length" in e:
            line += f", chains {e['chains']} average length {e['average_length']:.2f}"
        print(line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(entries, indent=1) + "\n")
        print(f"{len(entries)} entries -> {args.json}")


if __name__ == "__main__":
    main()
