"""Results tables generated from the committed results under docs/results/ (never typed by hand).

Each table in README.md and in every study page docs/studies/*.md sits between two markers
naming the file (the folder, for the headline table) and the table's kind::

    <!-- results docs/results/mt10_recipe.json variants -->
    ...generated...
    <!-- /results -->

Kinds:
    variants   one row per entry: its switches, successes over all tasks, mean over tasks and
               the Wilson 95% interval of the pooled episodes
    tasks      one row per task, one column per entry (successes/episodes), the mean below;
               then per multi-subtask episode (kitchen/d4rl-4) the subtasks completed on
               average
    playground one row per entry: VideoWorld's subtask groups, the subtasks pooled, chains of
               five (success after k, average length)
    unlabelled one row per entry: told the task, how video reaches it, successes on the tasks
               with labels and on those without (``labelled_tasks``), pooled, Wilson 95%
    starts     training data (trained_on) against where episodes start (evaluated_from): per
               training seed and pooled, Wilson 95%; whether the pooled intervals overlap
    seeds      one row per policy and label share: each training seed's successes with its
               Wilson interval, then the seeds pooled; below, for each label share, whether
               VideoWorld's and BC's pooled intervals overlap
    headline   the README's table (marker ``<!-- results docs/results headline -->``): for each
               study in ``HEADLINE``, its chosen policies and label shares, the training seeds
               pooled, linked to the study's page; the long-horizon column: chains of five
               or a multi-subtask episode, subtasks completed on average

Usage:
    python docs/results_tables.py            # rewrite the tables in README.md and docs/studies/
    python docs/results_tables.py --check    # exit 1 if a table differs from its file (tests)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from vw_robot.eval.metrics import VIDEOWORLD_GROUPS, wilson_interval

REPO = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!-- results (\S+) (\w+) -->\n.*?<!-- /results -->", re.DOTALL)


def _pooled(entry: dict) -> tuple[int, int]:
    tasks = entry["tasks"].values()
    return sum(t["successes"] for t in tasks), sum(t["episodes"] for t in tasks)


def _acting(switches: dict) -> str:
    if switches.get("ensemble") is not None:
        return f"ensemble m={switches['ensemble']}"
    if switches.get("execute"):
        return f"replan every {switches['execute']}"
    return "chunk of 4, open loop"


def _weights(entry: dict) -> str:
    """Which weights act: the last step's, or the step with the lowest validation loss; raw
    or their moving average."""
    s = entry.get("switches", {})
    held = s.get("val_fraction") or 0
    chosen = entry.get("chosen_step", entry.get("train_steps"))
    which = f"lowest val. loss ({held:.0%} held out): step {chosen}" if held else "last"
    return which + (f", EMA {s['ema']}" if s.get("ema") else "")


def _camera(switches: dict) -> str:
    """The camera, with the image size where it is not 64 px."""
    camera, size = switches.get("camera", "corner2"), switches.get("image_size", 64)
    return camera if size == 64 else f"{camera}, {size} px"


def _trunk(switches: dict) -> str:
    """The conv trunk's channels per stage and residual blocks per stage."""
    channels = switches.get("trunk_channels", [16, 32, 64])
    return "-".join(str(c) for c in channels) + f" x{switches.get('trunk_res_blocks', 1)}"


def variants_table(entries: list[dict]) -> str:
    lines = [
        "| variant | camera | trunk | steps | weights | task input | shift | proprio | acting "
        "| successes | mean | 95% CI |",
        "|---|---|---|---:|---|---|---:|---|---|---:|---:|---|",
    ]
    for e in entries:
        s = e.get("switches", {})
        wins, total = _pooled(e)
        low, high = wilson_interval(wins, total)
        lines.append(
            f"| {e.get('variant', e['policy'])} | {_camera(s)} | {_trunk(s)} | "
            f"{e.get('train_steps', '')} | {_weights(e)} | "
            f"{'yes' if s.get('task_conditioning') else 'no'}"
            f" | {s.get('augment_shift', 0)} | {'yes' if s.get('use_state') else 'no'} | "
            f"{_acting(s)} | {wins}/{total} | {e['mean_success']:.3f} | "
            f"[{low:.2f}, {high:.2f}] |"
        )
    return "\n".join(lines)


def tasks_table(entries: list[dict]) -> str:
    names = [e.get("variant", e["policy"]) for e in entries]
    lines = ["| task | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for task in entries[0]["tasks"]:
        cells = [f"{e['tasks'][task]['successes']}/{e['tasks'][task]['episodes']}" for e in entries]
        lines.append(f"| {task.split('/')[-1]} | " + " | ".join(cells) + " |")
    means = " | ".join(f"**{e['mean_success']:.3f}**" for e in entries)
    lines.append(f"| **mean** | {means} |")
    for task in dict.fromkeys(t for e in entries for t in e.get("sequences", {})):
        rows = [e.get("sequences", {}).get(task) for e in entries]
        length = max(len(r["completed_counts"]) - 1 for r in rows if r)
        cells = [f"{r['mean_completed']:.2f} ({r['episodes']})" if r else "—" for r in rows]
        lines.append(
            f"| {task.split('/')[-1]}: subtasks completed of {length} (episodes) | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def _hidden(e: dict) -> str:
    """A marker for a VideoWorld policy whose transformer hides past codes."""
    return " (past codes hidden)" if e.get("hide_past_codes") else ""


def _steps_note(e: dict, entries: list[dict]) -> str:
    """The transformer's training steps, for a table whose VideoWorld policies differ in them
    (a longer-trained transformer beside the usual one); nothing otherwise."""
    steps = {x["transformer_steps"] for x in entries if x.get("transformer_steps")}
    if len(steps) < 2 or not e.get("transformer_steps"):
        return ""
    return f" (transformer {e['transformer_steps']} steps)"


def _labels(e: dict) -> str:
    if e.get("label_fraction") is None:
        return "—"
    return f"{round(e['label_fraction'] * 100)}% ({e['labelled_episodes']})"


def _range(counts: dict[str, int] | None) -> str:
    if not counts:
        return "—"
    low, high = min(counts.values()), max(counts.values())
    return str(low) if low == high else f"{low}-{high}"


def _per_task(e: dict) -> str:
    """Videos per task the generator stages saw / labelled episodes per task (the many-video
    studies); — for a policy without a generator (BC: its labelled clips are all it sees)."""
    return f"{_range(e.get('videos_per_task'))} / {_range(e.get('labelled_per_task'))}"


def playground_table(entries: list[dict]) -> str:
    """One row per policy: VideoWorld's subtask groups, the 12 subtasks pooled, then chains of
    five (share of chains that completed at least k subtasks) and the average length."""
    groups = list(entries[0]["groups"])
    k = entries[0]["chain_length"]
    # Entries evaluated on every subtask one at a time also get a column of them all.
    every = max(len(e["tasks"]) for e in entries)
    wide = every > len(videoworld_task_ids())
    lines = [
        "| policy | labels (episodes) | head steps | "
        + " | ".join(groups)
        + " | 12 subtasks [95% CI] | "
        + (f"all {every} [95% CI] | " if wide else "")
        + "chains | "
        + " | ".join(f"{i}/{k}" for i in range(1, k + 1))
        + " | avg. length |",
        "|---|---|---:|"
        + "---:|" * len(groups)
        + "---:|" * (3 if wide else 2)
        + "---:|" * k
        + "---:|",
    ]
    for e in entries:
        cells = [f"{e['groups'][g]['successes']}/{e['groups'][g]['episodes']}" for g in groups]
        after = [f"{n / e['chains']:.2f}" for n in e["success_after"]]
        twelve = _rate(e, videoworld_task_ids())
        if len(e["tasks"]) == len(videoworld_task_ids()):
            twelve = _rate(e, videoworld_task_ids(), e["mean_success"])
        all_cell = ""
        if wide:
            all_cell = (_rate(e, list(e["tasks"])) if len(e["tasks"]) == every else "—") + " | "
        lines.append(
            f"| {e.get('variant', e['policy'])}{_hidden(e)} | {_labels(e)} | "
            f"{e.get('train_steps', '—')} | "
            + " | ".join(cells)
            + f" | {twelve} | {all_cell}{e['chains']} | "
            + " | ".join(after)
            + f" | **{e['average_length']:.2f}** |"
        )
    return "\n".join(lines)


def videoworld_task_ids() -> list[str]:
    """The 12 subtasks VideoWorld reports on CALVIN, as playground task ids."""
    names = [n for group in VIDEOWORLD_GROUPS.values() for n in group]
    return [f"playground/{n.replace('_', '-')}" for n in names]


def _rate(entry: dict, tasks: list[str], mean: float | None = None) -> str:
    """``0.45 [0.39, 0.52]``: the tasks' episodes pooled (or ``mean``), Wilson interval."""
    rows = [entry["tasks"][t] for t in tasks if t in entry["tasks"]]
    wins, total = sum(r["successes"] for r in rows), sum(r["episodes"] for r in rows)
    low, high = wilson_interval(wins, total)
    return f"{wins / total if mean is None else mean:.2f} [{low:.2f}, {high:.2f}]"


def _interval(wins: int, total: int) -> str:
    low, high = wilson_interval(wins, total)
    return f"{wins}/{total} = {wins / total:.3f} [{low:.2f}, {high:.2f}]"


def seeds_table(entries: list[dict]) -> str:
    """Training seeds side by side, pooled; the interval comparison VideoWorld vs BC."""
    rows: dict[tuple, dict[int, dict]] = {}
    for e in entries:
        rows.setdefault((e["policy"], e.get("label_fraction")), {})[e.get("train_seed")] = e
    seeds = sorted({e.get("train_seed") or 0 for e in entries})
    # Studies since the many-video ones record the videos and labels per task; older ones do not.
    per_task = any("labelled_per_task" in e for e in entries)
    lines = [
        "| policy | labels (episodes) | "
        + ("videos / labelled per task | " if per_task else "")
        + " | ".join(f"seed {k}" for k in seeds)
        + " | seeds pooled [95% CI] |",
        "|---|---|" + ("---:|" if per_task else "") + "---:|" * len(seeds) + "---:|",
    ]
    pooled: dict[tuple, tuple[int, int]] = {}
    for (policy, share), by_seed in rows.items():
        cells = []
        for k in seeds:
            e = by_seed.get(k) or (by_seed.get(None) if k == seeds[0] else None)
            cells.append(_interval(*_pooled(e)) if e else "")
        wins = sum(_pooled(e)[0] for e in by_seed.values())
        total = sum(_pooled(e)[1] for e in by_seed.values())
        pooled[(policy, share)] = (wins, total)
        n = f" ({len(by_seed)} seeds)" if len(by_seed) > 1 else ""
        first = next(iter(by_seed.values()))
        lines.append(
            f"| {policy}{_hidden(first)}{_steps_note(first, entries)} | {_labels(first)} | "
            + (f"{_per_task(first)} | " if per_task else "")
            + " | ".join(cells)
            + f" | {_interval(wins, total)}{n} |"
        )
    shares = sorted(
        {s for p, s in pooled if p == "videoworld" and ("bc", s) in pooled},
        key=lambda s: -1 if s is None else s,
    )
    if shares:
        lines.append("")
    for share in shares:
        vw, bc = pooled[("videoworld", share)], pooled[("bc", share)]
        (vl, vh), (bl, bh) = wilson_interval(*vw), wilson_interval(*bc)
        verdict = "overlap" if vl <= bh and bl <= vh else "do not overlap"
        label = "all labels" if share is None else f"{round(share * 100)}% labels"
        lines.append(
            f"- {label}: VideoWorld {vw[0] / vw[1]:.3f} [{vl:.2f}, {vh:.2f}] vs BC "
            f"{bc[0] / bc[1]:.3f} [{bl:.2f}, {bh:.2f}] over all their seeds: the intervals "
            f"{verdict} (difference {vw[0] / vw[1] - bc[0] / bc[1]:+.3f})."
        )
    return "\n".join(lines)


# The README's headline table: per study, its results file, its page and the (policy, label
# share) rows it reports, each pooled over its training seeds. ``None``: a policy without labels.
HEADLINE = [
    {
        "study": "MT10, two views, 100 videos per task",
        "page": "docs/studies/mt10.md#many-videos-few-labels-two-views-videoworld-level-with-bc",
        "file": "docs/results/mt10_many_ft.json",
        "rows": [
            ("videoworld", 0.1),
            ("bc", 0.1),
            ("videoworld", 0.25),
            ("bc", 0.25),
            ("videoworld", 1.0),
            ("bc_all", 1.0),
            ("noldm", 0.1),
            ("expert", None),
            ("random", None),
        ],
    },
    {
        "study": "robosuite, 20 videos and 5 labelled episodes per task",
        "page": "docs/studies/robosuite.md",
        "file": "docs/results/robosuite.json",
        "rows": [
            ("videoworld", 0.25),
            ("bc", 0.25),
            ("bc_all", 1.0),
            ("expert", None),
        ],
    },
    {
        "study": "playground, 12 subtasks, 100 videos per subtask",
        "page": (
            "docs/studies/playground.md"
            "#many-videos-few-labels-videoworld-level-with-bc-both-far-below-the-targets"
        ),
        "file": "docs/results/playground_many.json",
        "rows": [
            ("videoworld", 0.25),
            ("bc", 0.25),
            ("bc_all", 1.0),
            ("noldm", 0.25),
            ("expert", None),
        ],
    },
    {
        "study": "Franka Kitchen, 20 videos and 5 labelled episodes per subtask",
        "page": "docs/studies/kitchen.md",
        "file": "docs/results/kitchen.json",
        "rows": [("videoworld", 0.25), ("bc", 0.25), ("bc_all", 1.0), ("expert", None)],
    },
    {
        "study": "default run (`vw-robot run`), 3 Meta-World tasks",
        "page": "docs/studies/default_run.md",
        "file": "docs/results/default_run.json",
        "rows": [("videoworld", 1.0), ("bc", 1.0), ("expert", None)],
    },
]

POLICY_NAMES = {
    "videoworld": "VideoWorld",
    "bc": "BC",
    "bc_all": "BC",
    "noldm": "no-LDM ablation",
    "expert": "scripted expert",
    "random": "random actions",
}


def _is_row(entry: dict, policy: str, share: float | None) -> bool:
    """Whether ``entry`` is one training seed of ``policy`` at label share ``share``."""
    if entry["policy"] != policy:
        return False
    return entry.get("label_fraction") == share or (
        share is None and not entry.get("label_fraction")
    )


def headline_table(page: Path, studies: list[dict] | None = None) -> str:
    """One row per study and chosen policy: labels, training seeds, the episodes of every task
    and seed pooled with their Wilson interval, and for chains their average length. Links to
    each study's page are relative to ``page``, the file the table is written into."""
    lines = [
        "| study | policy | labels (episodes) | training seeds | successes [95% CI] "
        "| long horizon: subtasks completed |",
        "|---|---|---|---:|---:|---:|",
    ]
    for study in studies if studies is not None else HEADLINE:
        entries = json.loads((REPO / study["file"]).read_text())
        target, _, anchor = study["page"].partition("#")
        link = Path(os.path.relpath(REPO / target, page.parent)).as_posix()
        link += f"#{anchor}" if anchor else ""
        for number, (policy, share) in enumerate(study["rows"]):
            chosen = [e for e in entries if _is_row(e, policy, share)]
            if not chosen:
                raise SystemExit(f"{study['file']}: no entry of policy {policy!r} at {share}")
            wins = sum(_pooled(e)[0] for e in chosen)
            total = sum(_pooled(e)[1] for e in chosen)
            seeds = len({e.get("train_seed") for e in chosen}) if share is not None else "—"
            length = _long_horizon(chosen)
            name = f"[{study['study']}]({link})" if number == 0 else ""
            lines.append(
                f"| {name} | {POLICY_NAMES.get(policy, policy)} | {_labels(chosen[0])} | "
                f"{seeds} | {_interval(wins, total)} | {length} |"
            )
    return "\n".join(lines)


def _long_horizon(chosen: list[dict]) -> str:
    """Subtasks completed on average in the study's long-horizon protocol, every seed pooled:
    CALVIN's chains of five (playground) or a multi-subtask episode (kitchen/d4rl-4); — for
    a study without one."""
    chains = [e for e in chosen if "average_length" in e]
    if chains:
        completed = sum(e["average_length"] * e["chains"] for e in chains)
        return f"{completed / sum(e['chains'] for e in chains):.2f} of 5"
    rows = [r for e in chosen for r in e.get("sequences", {}).values()]
    if rows:  # one multi-subtask episode per study
        completed = sum(r["mean_completed"] * r["episodes"] for r in rows)
        length = len(rows[0]["completed_counts"]) - 1
        return f"{completed / sum(r['episodes'] for r in rows):.2f} of {length}"
    return "—"


def unlabelled_table(entries: list[dict]) -> str:
    """Tasks without labels: per row, whether it is told the task and reads the video, then
    its successes on the tasks whose labels its heads had and on those they did not, pooled
    with Wilson intervals. The split is the one the learned rows record (one per file)."""
    splits = {tuple(e["labelled_tasks"]) for e in entries if e.get("labelled_tasks")}
    if len(splits) != 1:
        raise ValueError(f"an unlabelled table needs one labelled_tasks split, found {splits}")
    labelled = set(splits.pop())
    lines = [
        "| policy | told the task | video reaches it | labelled tasks | unlabelled tasks |",
        "|---|---|---|---:|---:|",
    ]
    for e in entries:
        s = e.get("switches", {})
        cells = []
        for keep in (True, False):
            rows = [r for task, r in e["tasks"].items() if (task in labelled) == keep]
            cells.append(
                _interval(sum(r["successes"] for r in rows), sum(r["episodes"] for r in rows))
            )
        scripted = e.get("label_fraction") is None
        video = "—" if scripted else _video_route(e)
        told = "—" if scripted else ("yes" if s.get("task_conditioning") else "no")
        lines.append(
            f"| {e.get('variant', e['policy'])} | {told} | {video} | " + " | ".join(cells) + " |"
        )
    names = ", ".join(
        sorted(t.split("/")[-1] for t in {t for e in entries for t in e["tasks"]} - labelled)
    )
    lines.append(f"\nUnlabelled tasks: {names}.")
    return "\n".join(lines)


def _video_route(entry: dict) -> str:
    """How action-free video reaches a learned row: sampled codes, latent-action pretraining
    of its own network, or not at all (BC)."""
    reads = entry.get("reads")
    if reads is None and "transformer_steps" in entry:  # entries from before "reads"
        reads = "next_frame" if entry["policy"].startswith("noldm") else "codes"
    if reads:
        return {"codes": "codes", "next_frame": "predicted frame"}[reads]
    recipe = entry.get("recipe", {})
    if recipe.get("pretrained") or entry["policy"] == "lapa":
        return "latent-action pretraining"
    if recipe.get("trunk") in ("ldm", "tokenizer"):
        return f"{recipe['trunk']} encoder as trunk"
    return "no"


def starts_table(entries: list[dict]) -> str:
    """Training data against where episodes start: per training seed and pooled, successes
    from HOME and from random starts, Wilson 95%; whether the datasets' pooled intervals
    overlap for each start."""
    data = list(dict.fromkeys(e["trained_on"] for e in entries))
    starts = list(dict.fromkeys(e["evaluated_from"] for e in entries))
    lines = [
        "| trained on | training seed | " + " | ".join(f"from {s}" for s in starts) + " |",
        "|---|---|" + "---:|" * len(starts),
    ]
    pooled: dict[tuple[str, str], tuple[int, int]] = {}
    for d in data:
        seeds = sorted({e["train_seed"] for e in entries if e["trained_on"] == d})
        for seed in [*seeds, None]:
            cells = []
            for start in starts:
                rows = [
                    e
                    for e in entries
                    if (e["trained_on"], e["evaluated_from"]) == (d, start)
                    and (seed is None or e["train_seed"] == seed)
                ]
                wins, total = (sum(x) for x in zip(*map(_pooled, rows), strict=True))
                cells.append(_interval(wins, total))
                if seed is None:
                    pooled[d, start] = (wins, total)
            plural = "s" if len(seeds) > 1 else ""
            which = f"pooled ({len(seeds)} seed{plural})" if seed is None else str(seed)
            lines.append(f"| {d} | {which} | " + " | ".join(cells) + " |")
    lines.append("")
    for start in starts:
        bounds = {d: wilson_interval(*pooled[d, start]) for d in data}
        apart = all(
            bounds[a][1] < bounds[b][0] or bounds[b][1] < bounds[a][0]
            for a in data
            for b in data
            if a < b
        )
        lines.append(
            f"- from {start}: the pooled intervals of {' and '.join(data)} "
            + ("do not overlap." if apart else "overlap.")
        )
    return "\n".join(lines)


KINDS = {
    "variants": variants_table,
    "tasks": tasks_table,
    "playground": playground_table,
    "seeds": seeds_table,
    "unlabelled": unlabelled_table,
    "starts": starts_table,
}


def pages() -> list[Path]:
    """Every file whose tables are generated: the README and the study pages."""
    return [REPO / "README.md", *sorted((REPO / "docs" / "studies").glob("*.md"))]


def render(text: str, page: Path | None = None) -> str:
    """``text`` (the contents of ``page``, README.md if not given) with every marked table
    regenerated from its results file."""
    page = page or REPO / "README.md"

    def table(match: re.Match) -> str:
        path, kind = match.group(1), match.group(2)
        if kind == "headline":
            body = headline_table(page)
        elif kind in KINDS:
            body = KINDS[kind](json.loads((REPO / path).read_text()))
        else:
            raise SystemExit(
                f"{_name(page)}: unknown table kind {kind!r}; use {', '.join([*KINDS, 'headline'])}"
            )
        return f"<!-- results {path} {kind} -->\n{body}\n<!-- /results -->"

    return MARKER.sub(table, text)


def _name(page: Path) -> str:
    """``page`` as the repository names it (absolute when outside it)."""
    return page.relative_to(REPO).as_posix() if page.is_relative_to(REPO) else str(page)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a page is stale")
    args = parser.parse_args()
    stale = []
    for page in pages():
        text = page.read_text()
        new = render(text, page)
        if new == text:
            continue
        if args.check:
            stale.append(_name(page))
        else:
            page.write_text(new)
    if stale:
        print(
            f"{', '.join(stale)}: a results table differs from docs/results/; run "
            "python docs/results_tables.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
