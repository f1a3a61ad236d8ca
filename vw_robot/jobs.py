"""The jobs behind the command-line subcommands; the CLI only parses and dispatches."""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from pathlib import Path
from typing import Any

from vw_robot.config import (
    CollectConfig,
    DataCheckConfig,
    DataImportConfig,
    EvalConfig,
    RunConfig,
    TasksConfig,
)

log = logging.getLogger("vw_robot")


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Roll out ``cfg.policy`` on the configured tasks and write a report folder.

    Returns:
        The summary (per-task rows and the mean success over tasks).
    """
    from tqdm import tqdm

    from vw_robot.eval import evaluate as rollout
    from vw_robot.eval import markdown_table, write_report

    tasks = cfg.validate()
    out = Path(cfg.out)
    env_kwargs = {
        "image_size": cfg.image_size,
        "camera": cfg.camera,
        "max_episode_steps": cfg.max_episode_steps,
    }
    log.info(
        "eval: policy=%s, %d task(s) x %d episode(s), %d worker(s), out=%s",
        cfg.policy,
        len(tasks),
        cfg.episodes_per_task,
        cfg.workers,
        out,
    )
    start = time.perf_counter()
    with tqdm(total=len(tasks) * cfg.episodes_per_task, desc="episodes", unit="ep") as bar:
        results = rollout(
            tasks,
            policy=cfg.policy,
            episodes_per_task=cfg.episodes_per_task,
            base_seed=cfg.seed,
            workers=cfg.workers,
            env_kwargs=env_kwargs,
            videos_per_task=cfg.videos_per_task,
            stop_on_success=cfg.stop_on_success,
            progress=bar.update,
            policy_factory=functools.partial(
                policy_factory, execute=cfg.execute, device=cfg.device
            ),
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


def policy_factory(spec: str, execute: int | None = None, device: str = "cpu") -> Any:
    """Build a policy by name or checkpoint (module level: worker processes pickle it)."""
    from vw_robot.policies import make_policy

    policy = make_policy(spec, device=device)
    if execute is not None:
        if not hasattr(policy, "execute"):
            raise ValueError(f"execute: policy {spec!r} does not execute action chunks.")
        if not 1 <= execute <= policy.head.config.chunk:
            raise ValueError(f"execute: {execute} must be in [1, {policy.head.config.chunk}].")
        policy.execute = execute
    return policy


def run(cfg: RunConfig) -> dict[str, Any]:
    """The main job: collect -> train every stage -> evaluate -> ``<out>/report.md``."""
    from vw_robot.pipeline import run_pipeline

    return run_pipeline(cfg)


def tasks(cfg: TasksConfig) -> dict[str, list[str]]:
    """Print suites and their task ids (one suite when ``cfg.suite`` is set)."""
    from vw_robot.envs import list_suites, list_tasks

    suites = list_suites() if cfg.suite is None else {cfg.suite: list_tasks(cfg.suite)}
    for name, ids in suites.items():
        print(f"{name} ({len(ids)} tasks)")
        for task_id in ids:
            print(f"  {task_id}")
    return suites


def collect(cfg: CollectConfig) -> dict[str, Any]:
    """Record demonstrations (``vw-robot collect``); prints a per-task summary."""
    from tqdm import tqdm

    from vw_robot.data.collect import collect as collect_episodes
    from vw_robot.data.collect import format_summary

    tasks = cfg.validate()
    log.info(
        "collect: %d task(s) x %d episode(s) -> %s", len(tasks), cfg.episodes_per_task, cfg.out
    )
    with tqdm(total=len(tasks) * cfg.episodes_per_task, desc="episodes", unit="ep") as bar:
        summary = collect_episodes(
            cfg.out,
            tasks,
            episodes_per_task=cfg.episodes_per_task,
            image_size=cfg.image_size,
            camera=cfg.camera,
            max_episode_steps=cfg.max_episode_steps,
            seed=cfg.seed,
            workers=cfg.workers,
            keep_failed=cfg.keep_failed,
            steps_after_success=cfg.steps_after_success,
            codec=cfg.codec,
            fps=cfg.fps,
            policy=cfg.policy,
            progress=lambda row: bar.update(1),
        )
        bar.update(bar.total - bar.n)  # episodes skipped as already complete
    print(format_summary(summary), end="")
    return summary


def data_check(cfg: DataCheckConfig) -> list[str]:
    """Validate a dataset (``vw-robot data check DIR``); raises on problems after listing them."""
    from vw_robot.data.check import check_dataset

    problems = check_dataset(cfg.root)
    for line in problems:
        print(line)
    if problems:
        raise DataProblems(f"{cfg.root}: {len(problems)} problem(s) found.")
    from vw_robot.data.format import read_manifest

    manifest = read_manifest(cfg.root)
    print(f"{cfg.root}: OK — {manifest['num_episodes']} episodes, {manifest['num_frames']} frames.")
    return problems


def data_import(cfg: DataImportConfig) -> dict[str, Any]:
    """Import plain videos as episodes without actions (``vw-robot data import SRC``)."""
    from vw_robot.data.importer import import_videos

    cfg.validate()
    summary = import_videos(
        cfg.src,
        cfg.out,
        task_id=cfg.task_id,
        image_size=cfg.image_size,
        fps=cfg.fps,
        codec=cfg.codec,
    )
    for line in summary["failed"]:
        print(f"not imported: {line}")
    print(
        f"imported {summary['imported']} video(s), {summary['skipped_existing']} already "
        f"there, {len(summary['failed'])} failed; {summary['frames']} frames -> {cfg.out}"
    )
    return summary


class DataProblems(ValueError):
    """``data check`` found problems (already printed, one per line)."""


def train(cfg: Any) -> dict[str, Any]:
    """Train one stage (``vw-robot train stage=...``)."""
    from vw_robot.training.stages import run_stage

    result = run_stage(cfg)
    speed = result["samples_per_s"]
    rate = "already trained" if speed is None else f"{speed:.1f} samples/s"
    print(
        f"{cfg.stage}: step {result['step']}, last loss {result['last_loss']}, {rate}; "
        f"checkpoint {result['checkpoint']}"
    )
    for key, value in result.get("pictures", {}).items():
        print(f"  {key}: {value}")
    return result


def export_codes(cfg: Any) -> str:
    """Label a dataset's timesteps with tokens and codes (``vw-robot export-codes``)."""
    from vw_robot.training.stages import export

    key, _, _ = export(cfg)
    print(f"exported tokens and codes of {cfg.dataset} under key {key}")
    return key
