"""The jobs behind the command-line subcommands; the CLI only parses and dispatches."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from vw_robot.config import RunConfig, TasksConfig

log = logging.getLogger("vw_robot")


def run(cfg: RunConfig) -> dict[str, Any]:
    """Roll out ``cfg.policy`` on the configured tasks and write a report folder.

    Returns:
        The summary (per-task rows and the mean success over tasks).
    """
    from tqdm import tqdm

    from vw_robot.eval import evaluate, markdown_table, write_report

    tasks = cfg.validate()
    out = Path(cfg.out)
    env_kwargs = {
        "image_size": cfg.image_size,
        "camera": cfg.camera,
        "max_episode_steps": cfg.max_episode_steps,
    }
    log.info(
        "run: policy=%s, %d task(s) x %d episode(s), %d worker(s), out=%s",
        cfg.policy,
        len(tasks),
        cfg.episodes_per_task,
        cfg.workers,
        out,
    )
    start = time.perf_counter()
    with tqdm(total=len(tasks) * cfg.episodes_per_task, desc="episodes", unit="ep") as bar:
        results = evaluate(
            tasks,
            policy=cfg.policy,
            episodes_per_task=cfg.episodes_per_task,
            base_seed=cfg.seed,
            workers=cfg.workers,
            env_kwargs=env_kwargs,
            videos_per_task=cfg.videos_per_task,
            stop_on_success=cfg.stop_on_success,
            progress=bar.update,
        )
    elapsed = time.perf_counter() - start
    config = dataclasses.asdict(cfg) | {"resolved_tasks": tasks}
    summary = write_report(out, results, config=config, fps=cfg.fps)
    print(markdown_table(summary), end="")
    print(
        f"\n{sum(len(v) for v in results.values())} episodes in {elapsed:.1f} s; "
        f"report: {out / 'results.md'}, {out / 'results.json'}"
        + (f", videos: {out / 'videos'}" if cfg.videos_per_task else "")
    )
    return summary


def tasks(cfg: TasksConfig) -> dict[str, list[str]]:
    """Print suites and their task ids (one suite when ``cfg.suite`` is set)."""
    from vw_robot.envs import list_suites, list_tasks

    suites = list_suites() if cfg.suite is None else {cfg.suite: list_tasks(cfg.suite)}
    for name, ids in suites.items():
        print(f"{name} ({len(ids)} tasks)")
        for task_id in ids:
            print(f"  {task_id}")
    return suites
