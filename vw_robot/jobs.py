"""The jobs behind the command-line subcommands; the CLI only parses and dispatches."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vw_robot.checkpoint import latest_checkpoint
from vw_robot.config import (
    CollectConfig,
    DataCheckConfig,
    DataImportConfig,
    EvalChainsConfig,
    EvalConfig,
    ExportPolicyConfig,
    LeRobotCheckConfig,
    LeRobotExportConfig,
    LeRobotImportConfig,
    RunConfig,
    ServeConfig,
    TasksConfig,
)
from vw_robot.data.check import check_dataset
from vw_robot.data.format import read_manifest
from vw_robot.data.importer import import_videos
from vw_robot.data.lerobot import export_lerobot, import_lerobot, validate_lerobot
from vw_robot.envs import list_suites, list_tasks
from vw_robot.envs.instructions import INSTRUCTIONS
from vw_robot.errors import DataProblems, DiskFullError, Interrupted, UserError
from vw_robot.eval import evaluate as rollout
from vw_robot.eval import markdown_table, write_report
from vw_robot.eval.chains import (
    ChainResult,
    chains_markdown,
    evaluate_chains,
    write_chain_report,
)
from vw_robot.eval.collect import collect as collect_episodes
from vw_robot.eval.collect import format_summary
from vw_robot.eval.report import (
    ResultsRecord,
    measured_at,
    open_record,
    recorded_videos,
    run_recorded,
)
from vw_robot.eval.rollout import check_policy_fits
from vw_robot.io import is_disk_full
from vw_robot.pipeline import run_pipeline
from vw_robot.policies import make_policy
from vw_robot.policies.export import export_policy as export_policy_folder
from vw_robot.provenance import git_revision
from vw_robot.serving.server import serve as serve_policy
from vw_robot.training.codes import export
from vw_robot.training.config import ExportCodesConfig, TrainConfig
from vw_robot.training.loop import config_differences
from vw_robot.training.stages import STAGES, run_stage

log = logging.getLogger("vw_robot")


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Roll out ``cfg.policy`` on the configured tasks and write a report folder.

    Each task's episodes are recorded in ``<out>/episodes.jsonl`` as soon as they finish: a
    rerun with the same config resumes (recorded episodes are kept), another config is refused
    unless ``cfg.overwrite`` (:func:`vw_robot.eval.report.open_record`).

    Returns:
        The summary (per-task rows and the mean success over tasks).
    """
    tasks = cfg.validate()
    out = Path(cfg.out)
    env_kwargs = {
        "image_size": cfg.image_size,
        "camera": cfg.camera,
        "max_episode_steps": cfg.max_episode_steps,
    }
    if cfg.start is not None:
        env_kwargs["start"] = cfg.start
    log.info(
        "eval: policy=%s, %d task(s) x %d episode(s), %d worker(s), out=%s",
        cfg.policy,
        len(tasks),
        cfg.episodes_per_task,
        cfg.workers,
        out,
    )
    factory = functools.partial(
        make_policy, execute=cfg.execute, device=cfg.device, ensemble=cfg.ensemble
    )
    # A policy that does not fit the tasks is refused before anything is written to out.
    # (camera unset: the one the policy was trained on)
    env_kwargs = check_policy_fits(tasks, cfg.policy, env_kwargs, factory)
    start = time.perf_counter()
    config = dataclasses.asdict(cfg) | {"resolved_tasks": tasks}
    if cfg.start is None:
        config.pop("start")  # as before it could be chosen: earlier records resume
    with (
        open_record(out, config, overwrite=cfg.overwrite, differences=config_differences) as record,
        _on_interrupt(lambda: _recorded(record)),
    ):
        total, earlier = len(tasks) * cfg.episodes_per_task, len(record.rows)
        with tqdm(total=total, initial=earlier, desc="episodes", unit="ep") as bar:
            results = run_recorded(
                out,
                record,
                tasks,
                cfg.episodes_per_task,
                functools.partial(
                    rollout,
                    policy=cfg.policy,
                    episodes_per_task=cfg.episodes_per_task,
                    base_seed=cfg.seed,
                    workers=cfg.workers,
                    batch=cfg.batch,
                    env_kwargs=env_kwargs,
                    videos_per_task=cfg.videos_per_task,
                    stop_on_success=cfg.stop_on_success,
                    progress=bar.update,
                    policy_factory=factory,
                ),
                fps=cfg.fps,
            )
        elapsed = time.perf_counter() - start
        videos = recorded_videos(out, record)
        summary = write_report(
            out,
            results,
            config=config,
            fps=cfg.fps,
            videos=videos,
            measured_at=measured_at(record.rows),
        )
    print(markdown_table(summary), end="")
    print(
        f"\n{sum(len(v) for v in results.values())} episodes"
        + (f" ({earlier} recorded by an earlier run)" if earlier else "")
        + f" in {elapsed:.1f} s; "
        f"report: {out / 'results.md'}, {out / 'results.json'}"
        + (f", videos: {out / 'videos'}" if cfg.videos_per_task else "")
    )
    return summary


@contextlib.contextmanager
def _on_interrupt(kept: Callable[[], str]) -> Iterator[None]:
    """Turn Ctrl-C in the ``with`` body into :class:`Interrupted` saying ``kept()``: what is on
    disk, and how to go on from it (the command line prints that one line, exit status 130)."""
    try:
        yield
    except Interrupted:
        raise
    except KeyboardInterrupt:
        raise Interrupted(kept()) from None


def _recorded(record: Any) -> str:
    return (
        f"{len(record.rows)} episode(s) recorded in {record.path}; run the same command to "
        "resume from them"
    )


def run(cfg: RunConfig) -> dict[str, Any]:
    """The main job: collect -> train every stage -> evaluate -> ``<out>/report.md``."""
    return run_pipeline(cfg)


def tasks(cfg: TasksConfig) -> dict[str, list[str]]:
    """Print suites and their task ids (one suite when ``cfg.suite`` is set)."""
    suites = list_suites() if cfg.suite is None else {cfg.suite: list_tasks(cfg.suite)}
    for name, ids in suites.items():
        print(f"{name} ({len(ids)} tasks)")
        for task in ids:
            print(f"  {task}")
    return suites


def collect(cfg: CollectConfig) -> dict[str, Any]:
    """Record demonstrations (``vw-robot collect``); prints a per-task summary."""
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
            start=cfg.start,
            action_noise=cfg.action_noise,
            segments=cfg.segments,
            progress=lambda row: bar.update(1),
        )
        bar.update(bar.total - bar.n)  # episodes skipped as already complete
    print(format_summary(summary), end="")
    return summary


def data_check(cfg: DataCheckConfig) -> list[str]:
    """Validate a dataset (``vw-robot data check DIR``); raises on problems after listing them."""
    problems = check_dataset(cfg.root)
    for line in problems:
        print(line)
    if problems:
        raise DataProblems(f"{cfg.root}: {len(problems)} problem(s) found.")
    manifest = read_manifest(cfg.root)
    print(f"{cfg.root}: OK — {manifest['num_episodes']} episodes, {manifest['num_frames']} frames.")
    return problems


def data_import(cfg: DataImportConfig) -> dict[str, Any]:
    """Import plain videos as episodes without actions (``vw-robot data import SRC``)."""
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


def data_import_lerobot(cfg: LeRobotImportConfig) -> dict[str, Any]:
    """Import a LeRobotDataset (``vw-robot data import-lerobot SRC out=DIR``)."""
    cfg.validate()
    with tqdm(desc="episodes", unit="ep") as bar:
        summary = import_lerobot(
            cfg.src,
            cfg.out,
            camera_key=cfg.camera_key,
            image_size=cfg.image_size,
            codec=cfg.codec,
            version=cfg.version,
            # A task string that is one of our instructions becomes its task id again.
            task_ids={text: task_id for task_id, text in INSTRUCTIONS.items()},
            progress=functools.partial(_advance, bar),
        )
        _advance(bar, bar.total or 0, bar.total or 0)
    print(
        f"imported {summary['imported']} episode(s) of {cfg.src} ({summary['version']}, camera "
        f"{summary['camera_key']}), {summary['skipped_existing']} already there; "
        f"{summary['frames']} frames -> {cfg.out}"
    )
    return summary


def data_export_lerobot(cfg: LeRobotExportConfig) -> dict[str, Any]:
    """Export a dataset as LeRobotDataset v3.0 and validate what was written
    (``vw-robot data export-lerobot DIR out=DST``)."""
    cfg.validate()
    with tqdm(desc="episodes", unit="ep") as bar:
        summary = export_lerobot(
            cfg.root,
            cfg.out,
            fps=cfg.fps,
            codec=cfg.codec,
            overwrite=cfg.overwrite,
            robot_type=cfg.robot_type,
            instructions=INSTRUCTIONS,  # LeRobot's task strings: our tasks' instructions
            progress=functools.partial(_advance, bar),
        )
        _advance(bar, bar.total or 0, bar.total or 0)
    problems = validate_lerobot(cfg.out)
    for line in problems:
        print(line)
    if problems:
        raise DataProblems(f"{cfg.out}: the export fails {len(problems)} check(s).")
    skipped = summary["skipped_without_actions"]
    print(
        f"exported {summary['episodes']} episode(s), {summary['frames']} frames, "
        f"{summary['tasks']} task(s) -> {cfg.out} (LeRobotDataset v3.0, validated)"
        + (f"; {skipped} episode(s) without actions left out" if skipped else "")
    )
    return summary


def _advance(bar: Any, done: int, total: int) -> None:
    """A tqdm bar at ``done`` of ``total`` (the total is known once the work starts)."""
    bar.total = total
    bar.update(done - bar.n)


def data_check_lerobot(cfg: LeRobotCheckConfig) -> list[str]:
    """Validate a LeRobotDataset v3.0 folder (``vw-robot data check-lerobot DIR``)."""
    problems = validate_lerobot(cfg.root)
    for line in problems:
        print(line)
    if problems:
        raise DataProblems(f"{cfg.root}: {len(problems)} problem(s) found.")
    print(f"{cfg.root}: OK — a valid LeRobotDataset v3.0.")
    return problems


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train one stage (``vw-robot train stage=...``)."""
    try:
        with _on_interrupt(functools.partial(_last_checkpoint, cfg)):
            result = run_stage(cfg)
    except OSError as exc:  # checkpoints say so themselves; metrics.csv, tensorboard do not
        if not is_disk_full(exc):
            raise
        where = exc.filename or f"a file in {output_folder(cfg)}"
        raise DiskFullError(
            f"{where}: not written: {exc.strerror}; {_last_checkpoint(cfg)}"
        ) from None
    speed = result["samples_per_s"]
    rate = "already trained" if speed is None else f"{speed:.1f} samples/s"
    print(
        f"{cfg.stage}: step {result['step']}, last loss {result['last_loss']}, {rate}; "
        f"checkpoint {result['checkpoint']}"
    )
    for key, value in result.get("pictures", {}).items():
        print(f"  {key}: {value}")
    return result


def _last_checkpoint(cfg: TrainConfig) -> str:
    run_dir = output_folder(cfg)
    try:
        last = latest_checkpoint(run_dir) if run_dir is not None else None
    except UserError:
        last = None
    if last is None:
        return f"no checkpoint of {run_dir} was written yet"
    return f"the last checkpoint is kept: {last}; run the same command to resume from it"


def export_codes(cfg: ExportCodesConfig) -> str:
    """Label a dataset's timesteps with tokens and codes (``vw-robot export-codes``)."""
    key, _, _ = export(
        cfg.dataset,
        cfg.out,
        tokenizer_checkpoint=cfg.tokenizer_checkpoint,
        ldm_checkpoint=cfg.ldm_checkpoint,
        tasks=list(cfg.tasks) or None,
        device=cfg.device,
        cache_dir=cfg.cache_dir,
    )
    print(f"exported tokens and codes of {cfg.dataset} under key {key}")
    return key


def eval_chains(cfg: EvalChainsConfig) -> dict[str, Any]:
    """``vw-robot eval-chains``: chains, then the 12 VideoWorld subtasks one at a time.

    Writes ``chains.json``/``chains.md`` (+ ``videos/``) into ``cfg.out`` and, unless
    ``cfg.single_episodes`` is 0, the per-subtask report of :func:`vw_robot.eval.write_report`
    into ``cfg.out/single``. Returns ``{"chains": summary, "single": summary or None}``.

    Both folders keep a record as ``eval`` does: a rerun with the same config reuses the chains
    once they are recorded and resumes the subtasks task by task; another config is refused
    unless ``cfg.overwrite``.
    """
    cfg.validate()
    out = Path(cfg.out)
    factory = functools.partial(
        make_policy, execute=cfg.execute, device=cfg.device, ensemble=cfg.ensemble
    )
    # A policy that does not fit the playground is refused before anything is written to out.
    check_policy_fits(
        list_tasks(cfg.single_suite),
        cfg.policy,
        {"image_size": cfg.image_size, "camera": cfg.camera},
        factory,
    )
    config = dataclasses.asdict(cfg)
    if cfg.single_suite == EvalChainsConfig.single_suite:
        config.pop("single_suite")  # as before it could be chosen: earlier records resume
    log.info(
        "eval-chains: policy=%s, %d chain(s) of %d, %d step(s) per subtask, out=%s",
        cfg.policy,
        cfg.chains,
        cfg.chain_length,
        cfg.steps_per_subtask,
        out,
    )
    start = time.perf_counter()
    records = {"overwrite": cfg.overwrite, "differences": config_differences}
    with contextlib.ExitStack() as stack:
        record = stack.enter_context(
            open_record(out, config, name="chains.jsonl", outputs=CHAIN_OUTPUTS, **records)
        )
        if cfg.single_episodes:  # refused now, not after the chains, if it holds other results
            single_record = stack.enter_context(open_record(out / "single", config, **records))
        results, fresh = _chains_of(cfg, record.rows, factory)
        revision = git_revision()
        fresh_rows = [r.to_json() | {"commit": revision} for r in fresh]
        chains = write_chain_report(
            out,
            results,
            chain_length=cfg.chain_length,
            config=config,
            fps=cfg.fps,
            measured_at=measured_at([*record.rows, *fresh_rows]),
        )
        record.append(fresh_rows)  # after the videos, which are on disk now
        print(chains_markdown(chains), end="")
        elapsed = time.perf_counter() - start
        print(f"\n{len(results)} chains in {elapsed:.1f} s; {out / 'chains.md'}")
        single = None
        if cfg.single_episodes:
            single = _eval_single_subtasks(cfg, out / "single", single_record, config, factory)
            which = "VideoWorld's 12" if len(single["tasks"]) == 12 else "The playground's"
            print(f"\n{which} subtasks, one at a time:\n" + markdown_table(single), end="")
    return {"chains": chains, "single": single}


# What write_chain_report writes into an eval-chains folder (cleared by overwrite).
CHAIN_OUTPUTS = ("chains.json", "chains.md", "videos")


def _chains_of(
    cfg: EvalChainsConfig, rows: list[dict[str, Any]], factory: Callable[..., Any]
) -> tuple[list[ChainResult], list[ChainResult]]:
    """All ``cfg.chains`` chains, sorted by index, and those of them evaluated by this call.

    Chains recorded in ``rows`` by an earlier run are reused; if any is missing, all are
    evaluated again (:func:`evaluate_chains` runs chains 0..N-1) and only the new ones kept.
    """
    done = {}
    for row in rows:
        done.setdefault(int(row["index"]), _chain_from_row(row))
    fresh = []
    if len(done) < cfg.chains:
        with tqdm(total=cfg.chains, desc="chains", unit="chain") as bar:
            fresh = evaluate_chains(
                policy=cfg.policy,
                num_chains=cfg.chains,
                chain_length=cfg.chain_length,
                steps_per_subtask=cfg.steps_per_subtask,
                base_seed=cfg.seed,
                workers=cfg.workers,
                batch=cfg.batch,
                image_size=cfg.image_size,
                camera=cfg.camera,
                videos=cfg.videos,
                policy_factory=factory,
                progress=bar.update,
            )
        fresh = [r for r in fresh if r.index not in done]
    else:
        log.info("eval-chains: %d chain(s) recorded by an earlier run", len(done))
    return sorted([*done.values(), *fresh], key=lambda r: r.index), fresh


def _eval_single_subtasks(
    cfg: EvalChainsConfig,
    out: Path,
    record: ResultsRecord,
    config: dict[str, Any],
    factory: Callable[..., Any],
) -> dict[str, Any]:
    """Evaluate ``cfg.single_suite``'s subtasks one at a time into ``out``; returns the
    report."""
    tasks = list_tasks(cfg.single_suite)
    total, earlier = len(tasks) * cfg.single_episodes, len(record.rows)
    with tqdm(total=total, initial=earlier, desc="subtasks", unit="ep") as bar:
        singles = run_recorded(
            out,
            record,
            tasks,
            cfg.single_episodes,
            functools.partial(
                rollout,
                policy=cfg.policy,
                episodes_per_task=cfg.single_episodes,
                base_seed=cfg.seed,
                workers=cfg.workers,
                batch=cfg.batch,
                env_kwargs={
                    "image_size": cfg.image_size,
                    "camera": cfg.camera,
                    "max_episode_steps": cfg.steps_per_subtask,
                },
                videos_per_task=0,
                policy_factory=factory,
                progress=bar.update,
            ),
            fps=cfg.fps,
        )
    return write_report(
        out, singles, config=config, fps=cfg.fps, measured_at=measured_at(record.rows)
    )


def _chain_from_row(row: dict[str, Any]) -> ChainResult:
    """A chain recorded in ``chains.jsonl`` (its video, if any, is already on disk)."""
    return ChainResult(
        index=int(row["index"]),
        seed=int(row["seed"]),
        chain=tuple(row["chain"]),
        completed=int(row["completed"]),
        steps=int(row["steps"]),
        invalid_starts=int(row["invalid_starts"]),
        error=row["error"],
    )


def export_policy(cfg: ExportPolicyConfig) -> Path:
    """Write a self-contained policy folder (``vw-robot export-policy RUN/videoworld-100pct_seed0
    out=DIR``)."""
    out = export_policy_folder(cfg.policy, cfg.out, overwrite=cfg.overwrite)
    print(f"exported {cfg.policy} -> {out} (load it with make_policy({str(out)!r}))")
    return out


def serve(cfg: ServeConfig) -> None:
    """Serve a policy over a websocket until interrupted (``vw-robot serve policy=...``)."""
    cfg.validate()
    serve_policy(
        cfg.policy,
        cfg.host,
        cfg.port,
        device=cfg.device,
        max_message_bytes=cfg.max_message_bytes,
        execute=cfg.execute,
        max_connections=cfg.max_connections,
        threads=cfg.threads,
    )


def output_folder(cfg: Any) -> str | None:
    """The folder a job writes (``out``; a training run writes ``<out>/<run folder>``), or None
    for a job that writes nothing (``tasks``, ``data check``). Two jobs of a sweep must not share
    one."""
    out = getattr(cfg, "out", None)
    if out is None:
        return None
    if isinstance(cfg, TrainConfig) and cfg.stage in STAGES:
        return str(Path(out) / STAGES[cfg.stage].run_name(cfg))
    return str(out)
