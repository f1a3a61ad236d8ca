"""Every Markdown table of results in one place: one policy's per-task table, policies side by
side, VideoWorld's CALVIN groups, and chains (one policy's, and policies side by side). The
evaluation reports, the main job's report and the command line print these; the tables in
the docs are generated from the results files (docs/results_tables.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from vw_robot.eval.metrics import videoworld_groups


def markdown_table(summary: Mapping[str, Any]) -> str:
    """The summary as a Markdown table, one row per task and a mean row."""
    lines = [
        "| task | episodes | successes | rate | Wilson 95% | mean steps to success |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for task_id, row in summary["tasks"].items():
        steps = (
            "—" if row["mean_steps_to_success"] is None else f"{row['mean_steps_to_success']:.0f}"
        )
        low, high = row["ci95"]
        errors = f" ({row['errors']} errored)" if row["errors"] else ""
        lines.append(
            f"| {task_id} | {row['episodes']} | {row['successes']}{errors} | {row['rate']:.2f} "
            f"| [{low:.2f}, {high:.2f}] | {steps} |"
        )
    if summary["mean_success"] is not None:
        lines.append(f"| **mean over tasks** | | | **{summary['mean_success']:.3f}** | | |")
    notes = [
        f"{task_id}: {row['mean_completed']:.2f} subtasks completed per episode (episodes "
        "completing 0, 1, ...: " + ", ".join(map(str, row["completed_counts"])) + ")."
        for task_id, row in summary["tasks"].items()
        if "mean_completed" in row
    ]
    return "\n".join(lines) + "\n" + "".join(f"\n{note}\n" for note in notes)


def chains_markdown(summary: Mapping[str, Any]) -> str:
    """The chain summary as Markdown: one row of success-after-k, then per-subtask rates."""
    ks = [row["subtasks"] for row in summary["success_after"]]
    lines = [
        "| chains | " + " | ".join(f"{k}/{summary['chain_length']}" for k in ks) + " | avg. len |",
        "|---:|" + "---:|" * len(ks) + "---:|",
        f"| {summary['chains']} | "
        + " | ".join(f"{row['rate']:.3f}" for row in summary["success_after"])
        + f" | {summary['average_length']:.2f} |",
        "",
        "| subtask | attempts | successes | rate |",
        "|---|---:|---:|---:|",
    ]
    for name, row in summary["per_subtask"].items():
        rate = row["successes"] / row["attempts"]
        lines.append(f"| {name} | {row['attempts']} | {row['successes']} | {rate:.2f} |")
    notes = []
    if summary["errors"]:
        notes.append(f"{summary['errors']} chain(s) raised an error (counted as failures).")
    if summary["invalid_starts"]:
        notes.append(
            f"{summary['invalid_starts']} subtask(s) started where their precondition did not "
            "hold (the previous subtask succeeded but left the scene unlike its prediction)."
        )
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def chains_comparison_table(chain_summaries: Mapping[str, Any], chain_length: int) -> str:
    """Policies side by side in chains: success after 1..N subtasks, average length."""
    lines = [
        "| policy | chains | "
        + " | ".join(f"{k}/{chain_length}" for k in range(1, chain_length + 1))
        + " | average length |",
        "|---|---:|" + "---:|" * chain_length + "---:|",
    ]
    for name, summary in chain_summaries.items():
        rates = " | ".join(f"{row['rate']:.3f}" for row in summary["success_after"])
        lines.append(
            f"| {name} | {summary['chains']} | {rates} | {summary['average_length']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def groups_table(summaries: Mapping[str, Any]) -> str | None:
    """VideoWorld's CALVIN grouping (push, open/close, turn on/off) of the evaluated subtasks,
    or None when no evaluated task belongs to a group."""
    groups = {name: videoworld_groups(s["tasks"]) for name, s in summaries.items()}
    names = list(next(iter(groups.values())))
    if not names:
        return None
    lines = ["| group | " + " | ".join(groups) + " |", "|---|" + "---:|" * len(groups)]
    for group in names:
        cells = [
            f"{g[group]['successes']}/{g[group]['episodes']} = {g[group]['rate']:.2f}"
            for g in groups.values()
        ]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_table(summaries: Mapping[str, Any], tasks: Sequence[str]) -> str:
    """Policies side by side: per task successes/episodes [Wilson 95%], the mean below."""
    policies = list(summaries)
    lines = ["| task | " + " | ".join(policies) + " |", "|---|" + "---:|" * len(policies)]
    for task in tasks:
        cells = []
        for p in policies:
            row = summaries[p]["tasks"][task]
            low, high = row["ci95"]
            cells.append(f"{row['successes']}/{row['episodes']} [{low:.2f}, {high:.2f}]")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    lines.append(
        "| **mean success** | "
        + " | ".join(f"**{summaries[p]['mean_success']:.3f}**" for p in policies)
        + " |"
    )
    return "\n".join(lines) + "\n"
