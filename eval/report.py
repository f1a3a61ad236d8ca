"""Per-task success tables, result files with provenance, and rollout videos."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vw_robot.eval.metrics import wilson_interval
from vw_robot.eval.rollout import EpisodeResult
from vw_robot.io import atomic_write_text
from vw_robot.provenance import provenance


def summarize(results: Mapping[str, Sequence[EpisodeResult]]) -> dict[str, Any]:
    """Per-task episodes, successes, rate, Wilson 95% interval, mean steps; overall mean.

    ``mean_steps_to_success`` averages over successful episodes only (None when there are
    none); ``errors`` counts episodes that raised.
    """
    per_task: dict[str, dict[str, Any]] = {}
    for task_id, episodes in results.items():
        n = len(episodes)
        successes = sum(ep.success for ep in episodes)
        low, high = wilson_interval(successes, n)
        steps = [ep.steps for ep in episodes if ep.success]
        per_task[task_id] = {
            "episodes": n,
            "successes": successes,
            "rate": successes / n,
            "ci95": [low, high],
            "mean_steps_to_success": float(np.mean(steps)) if steps else None,
            "errors": sum(ep.error is not None for ep in episodes),
        }
    rates = [row["rate"] for row in per_task.values()]
    return {"tasks": per_task, "mean_success": float(np.mean(rates)) if rates else None}


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
    return "\n".join(lines) + "\n"


def write_video(path: str | os.PathLike[str], frames: np.ndarray, fps: int = 20) -> None:
    """Write (T, H, W, 3) uint8 frames as an mp4 (H.264 through imageio-ffmpeg), atomically."""
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    # macro_block_size=1 keeps sizes that are not multiples of 16 as they are.
    with imageio.get_writer(tmp, fps=fps, codec="libx264", quality=8, macro_block_size=1) as writer:
        for frame in frames:
            writer.append_data(np.asarray(frame, dtype=np.uint8))
    os.replace(tmp, path)


def tile_videos(clips: Sequence[np.ndarray], columns: int = 5) -> np.ndarray:
    """Tile clips (each (T_i, H, W, 3)) into one (max T, rows*H, columns*W, 3) clip; a clip that
    ends early holds its last frame."""
    if not clips:
        raise ValueError("tile_videos needs at least one clip.")
    length = max(len(c) for c in clips)
    h, w = clips[0].shape[1:3]
    columns = min(columns, len(clips))
    rows = -(-len(clips) // columns)
    grid = np.zeros((length, rows * h, columns * w, 3), dtype=np.uint8)
    for k, clip in enumerate(clips):
        padded = np.concatenate([clip, np.repeat(clip[-1:], length - len(clip), axis=0)])
        r, c = divmod(k, columns)
        grid[:, r * h : (r + 1) * h, c * w : (c + 1) * w] = padded
    return grid


def write_report(
    out_dir: str | os.PathLike[str],
    results: Mapping[str, Sequence[EpisodeResult]],
    *,
    config: Mapping[str, Any],
    fps: int = 20,
) -> dict[str, Any]:
    """Write ``results.json`` (summary, episodes, config, provenance), ``results.md`` and one
    mp4 per recorded episode plus ``rollouts.mp4`` tiling each task's first recorded episode.

    Returns:
        The summary dict.
    """
    out_dir = Path(out_dir)
    summary = summarize(results)
    payload = {
        "summary": summary,
        "episodes": [ep.to_json() for eps in results.values() for ep in eps],
        "config": dict(config),
        "provenance": provenance(),
    }
    atomic_write_text(out_dir / "results.json", json.dumps(payload, indent=2) + "\n")
    atomic_write_text(out_dir / "results.md", markdown_table(summary))
    firsts = []
    for task_id, episodes in results.items():
        recorded = [ep for ep in episodes if ep.frames is not None]
        for ep in recorded:
            name = task_id.replace("/", "__")
            write_video(out_dir / "videos" / f"{name}__ep{ep.index:03d}.mp4", ep.frames, fps)
        if recorded:
            firsts.append(recorded[0].frames)
    if firsts and len({f.shape[1:] for f in firsts}) == 1:
        write_video(out_dir / "rollouts.mp4", tile_videos(firsts), fps)
    bar_chart({str(config.get("policy", "policy")): summary}, out_dir / "success.png")
    return summary


def bar_chart(
    summaries: Mapping[str, Mapping[str, Any]],
    path: str | os.PathLike[str],
    title: str = "success rate per task (Wilson 95% intervals)",
) -> str:
    """Grouped bars: one group per task, one bar per policy, with Wilson intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = list(summaries)
    tasks = list(next(iter(summaries.values()))["tasks"])
    width = 0.8 / max(1, len(policies))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(tasks) * max(1, len(policies)) ** 0.5), 4))
    for k, policy in enumerate(policies):
        rows = [summaries[policy]["tasks"][t] for t in tasks]
        rates = np.array([r["rate"] for r in rows])
        # Clipped: the interval's bound can sit a rounding error inside the rate at 0/n, n/n.
        low = np.clip(rates - np.array([r["ci95"][0] for r in rows]), 0.0, None)
        high = np.clip(np.array([r["ci95"][1] for r in rows]) - rates, 0.0, None)
        x = np.arange(len(tasks)) + (k - (len(policies) - 1) / 2) * width
        with warnings.catch_warnings():
            # matplotlib's errorbar checks a (2, N) yerr row by row with math.isfinite, which
            # numpy >= 1.25 flags as deprecated; the values are plain floats.
            warnings.filterwarnings("ignore", "Conversion of an array", DeprecationWarning)
            ax.bar(x, rates, width, yerr=np.vstack([low, high]), capsize=2, label=policy)
    ax.set_xticks(
        np.arange(len(tasks)),
        [t.split("/")[-1] for t in tasks],
        rotation=30,
        ha="right",
        fontsize=8,
    )
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
