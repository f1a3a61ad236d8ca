"""Results as data: what the harness wrote for one evaluated policy -> one entry of a results
file under docs/results/ (from which docs/results_tables.py writes the tables).

An entry holds per-task successes and episodes, the evaluation seeds and time limit, and for a
trained head what it was trained on, read from its checkpoint and dataset (never from folder
names): label share, labelled episodes (in all and per task), the videos per task its generator
saw, training seed and steps, the head recipe; then the git commit and the exact command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from vw_robot import checkpoint as ckpt
from vw_robot.data import format as fmt
from vw_robot.errors import UserError
from vw_robot.eval.metrics import videoworld_groups

# The head recipe's switches recorded with every trained policy's entry.
RECIPE_KEYS = (
    "task_conditioning",
    "use_state",
    "augment_shift",
    "val_fraction",
    "trunk",
    "freeze_trunk",
    "sampled_fraction",
    "pretrained",  # fine-tuned from latent-action pretraining (and how: finetune)
    "finetune",
    "cache_features",
)


def episodes_per_task(checkpoint: Path, ids: list[str] | None = None) -> dict[str, int]:
    """Episodes per task of the dataset a checkpoint was trained on (its config.yaml's
    ``dataset``, restricted to its ``tasks``); with ``ids``, of those episodes only."""
    config = OmegaConf.load(checkpoint / ckpt.CONFIG_FILE)
    try:
        rows = fmt.read_manifest(config.dataset)["episodes"]
    except (OSError, fmt.DatasetError) as exc:
        raise UserError(
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
        raise UserError(
            f"{checkpoint}: {len(wanted) - sum(counts.values())} of its labelled episodes are not "
            f"in {config.dataset}"
        )
    return dict(sorted(counts.items()))


def trained_fields(checkpoint: str | Path) -> dict[str, Any]:
    """What a head checkpoint was trained on: label share, labelled episodes (and per task),
    the videos per task its generator stages saw, training seed and steps, its recipe."""
    info = ckpt.read_info(checkpoint)
    section = OmegaConf.load(info.path / ckpt.CONFIG_FILE).experiment[info.stage]
    labelled = info.model_config["env"]["labelled_episodes"]
    generator: dict[str, Any] = {}
    if "transformer" in info.parents:  # VideoWorld, no-LDM: how its codes / frames were made
        transformer = ckpt.read_info(info.parents["transformer"])
        generator["hide_past_codes"] = bool(
            transformer.model_config["layout"].get("hide_past_codes", False)
        )
        generator["transformer_steps"] = transformer.step
    # Action-free video reaches a head through the generator stages (the transformer, or the
    # LDM whose frame encoder a trunk=ldm head starts from); BC alone sees its labelled clips.
    parent = next((info.parents[s] for s in ("transformer", "ldm") if s in info.parents), None)
    camera = (info.model_config.get("env") or {}).get("camera")
    model = section.model
    return {
        "camera": camera,  # what it acts on
        # What it reads beside the frame: the transformer's codes (VideoWorld), its predicted
        # next frame (the no-LDM ablation) or nothing
        "reads": "codes"
        if info.model_config.get("use_codes")
        else ("next_frame" if info.model_config.get("use_next_frame") else ""),
        **generator,
        "label_fraction": 1.0 if section.label_fraction is None else section.label_fraction,
        "labelled_episodes": len(labelled),
        "labelled_per_task": episodes_per_task(info.path, labelled),
        # The tasks whose labels it could use (None: every task); the others it knows from
        # video only, if at all
        "labelled_tasks": None
        if section.get("labelled_tasks") is None
        else list(section.labelled_tasks),
        "videos_per_task": None if parent is None else episodes_per_task(Path(parent)),
        "train_seed": int(section.optim.seed),
        "train_steps": section.optim.get("steps") or info.step,  # trained
        "chosen_step": info.step,  # the weights it acts with (lowest validation loss, or last)
        "recipe": {
            **{key: section.get(key) for key in RECIPE_KEYS},
            "ema": section.optim.get("ema"),
            "steps": section.optim.get("steps"),
        },
        # What the head-recipe tables show, one row per variant (docs/results_tables.py)
        "switches": {
            **{key: section.get(key) for key in RECIPE_KEYS},
            "ema": section.optim.get("ema"),
            "trunk_channels": list(model.channels),
            "trunk_res_blocks": model.num_res_blocks,
            "camera": camera,
            "image_size": info.model_config.get("image_size"),
        },
    }


def _read(path: Path, what: str) -> dict[str, Any]:
    try:
        payload = json.loads(path.read_text())
        payload["summary"], payload["config"]  # noqa: B018 - both must be there
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not {what} ({exc})") from None
    return payload


def _tasks(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per task: successes and episodes; a multi-subtask episode's task also the subtasks
    completed (mean and counts, :func:`vw_robot.eval.report.summarize`)."""
    keys = ("successes", "episodes", "mean_completed", "completed_counts")
    return {
        task: {key: row[key] for key in keys if key in row}
        for task, row in summary["tasks"].items()
    }


def _policy(policy: str, checkpoint: str | None, config: dict[str, Any]) -> dict[str, Any]:
    """The policy's fields; a trained head's switches gain how it acted (execute, ensemble)."""
    trained = trained_fields(checkpoint) if checkpoint else {"label_fraction": None}
    if "switches" in trained:
        acting = {key: config.get(key) for key in ("execute", "ensemble")}
        trained["switches"] = {**trained["switches"], **acting}
    return {"policy": policy, **trained, "train_seed": trained.get("train_seed")}


def suite_entry(
    folder: str | Path, *, policy: str, command: str, checkpoint: str | None = None
) -> dict[str, Any]:
    """The entry of one evaluation folder written by ``vw-robot eval`` (its results.json).

    Args:
        folder: the evaluation folder; its name is the entry's ``variant``.
        policy: the policy's name in the results (videoworld, bc, expert, ...).
        command: the command that made it (recorded as is).
        checkpoint: the head it evaluated; None for a policy that was not trained.
    """
    folder = Path(folder)
    payload = _read(folder / "results.json", "an evaluation's results")
    summary, config = payload["summary"], payload["config"]
    return {
        **_policy(policy, checkpoint, config),
        "variant": folder.name,
        "mean_success": summary["mean_success"],
        "tasks": _tasks(summary),
        "eval_seed_base": config.get("seed", config.get("base_seed")),
        "max_steps": config["max_episode_steps"],
        "commit": measured_commit(payload["provenance"]),
        "command": command,
    }


def chains_entry(
    folder: str | Path, *, policy: str, command: str, checkpoint: str | None = None
) -> dict[str, Any]:
    """The entry of one folder written by ``vw-robot eval-chains``: the subtasks one at a time
    (``single/results.json``, with VideoWorld's CALVIN groups) and the chains (``chains.json``:
    success after 1..N subtasks, average length, per subtask how often it was reached and
    completed). Arguments as :func:`suite_entry`'s."""
    folder = Path(folder)
    chains = _read(folder / "chains.json", "an eval-chains record")
    single = _read(folder / "single" / "results.json", "an evaluation's results")
    summary, config, chain_summary = single["summary"], chains["config"], chains["summary"]
    tasks = _tasks(summary)
    return {
        **_policy(policy, checkpoint, config),
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
        "chain_subtasks": chain_summary["per_subtask"],
        "commit": measured_commit(chains["provenance"], single["provenance"]),
        "command": command,
    }


def with_sequences(entry: dict[str, Any], sequences: dict[str, Any]) -> dict[str, Any]:
    """``entry`` with the same policy's evaluation on multi-subtask episodes (another
    :func:`suite_entry`) as ``sequences``: per episode task its successes (every subtask),
    episodes, mean subtasks completed and their counts; the commits of both."""
    commits = [c for e in (entry, sequences) for c in str(e["commit"]).split(" + ")]
    return {
        **entry,
        "sequences": sequences["tasks"],
        "commit": " + ".join(dict.fromkeys(commits)),
    }


def measured_commit(*provenances: dict[str, Any]) -> str | None:
    """The git revision that measured a result: ``measured_at`` (the revisions a resumed
    evaluation's episodes were recorded at, joined by " + " when several) or, for a report
    without it (not resumable) and for episodes an older vw_robot recorded without their
    revision, the one that wrote the report."""
    revisions: list[str | None] = []
    for prov in provenances:
        measured = prov.get("measured_at") or [None]
        measured = [prov["git_revision"] if r is None else r for r in measured]
        revisions += [r for r in measured if r not in revisions]
    return None if revisions == [None] else " + ".join(str(r) for r in revisions)


def merge_entries(before: list[dict[str, Any]], measured: list[dict[str, Any]]) -> list[dict]:
    """``measured`` merged into a results file's ``before``: an entry of a variant not measured
    now stays; an entry whose evaluation is unchanged (same commit and successes) stays as it
    was, with the command that made it; the others are replaced. Order: ``before``'s, then the
    new variants in the order measured."""
    merged = {e["variant"]: e for e in before}
    for e in measured:
        prior = merged.get(e["variant"])
        same = prior is not None and (prior["commit"], prior["tasks"]) == (e["commit"], e["tasks"])
        merged[e["variant"]] = prior if same else e
    return list(merged.values())
