"""A study, run by one resumable command: ``vw-robot study NAME`` (configs/study/NAME.yaml).

Into the study folder (``runs/NAME`` unless ``out=``):

    data/                            the expert demonstrations (and action-free video)
    tokenizer/ ldm/ transformer/     the generator, trained once for every head that reads it
    transformer_nocodes/             the no-LDM ablation's transformer (when a head needs it)
    <head>-<pct>pct_seed<k>/         each trained head (vw_robot.heads.run_name)
    eval/<head>-<pct>pct_seed<k>/    its evaluation (`vw-robot eval`'s record and results)
    eval/expert/, eval/random/       the policies that need no training
    results.json                     one entry per evaluated policy (vw_robot.eval.entries)

Every step resumes: collection skips finished episodes, a run whose final checkpoint exists is
not retrained, an evaluation keeps the episodes its record holds. Heads are trained and
evaluated one at a time in the order the study lists them, so a stopped study has finished
rows. The results are merged into ``results=`` (e.g. docs/results/NAME.json), keeping the
entries of runs the folder does not hold.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vw_robot.config import CollectConfig, EvalConfig, StudyConfig, StudyHeadConfig
from vw_robot.errors import ConfigError
from vw_robot.eval.entries import merge_entries, suite_entry
from vw_robot.heads import HEADS, SCRIPTED, run_name
from vw_robot.io import atomic_write_text
from vw_robot.jobs import collect, evaluate
from vw_robot.training.config import ExperimentConfig, TrainConfig
from vw_robot.training.stages import run_stage

log = logging.getLogger("vw_robot")


@dataclass(frozen=True)
class StudyRun:
    """One row of a study: a policy to train (unless scripted) and evaluate."""

    name: str  # the run and evaluation folder
    head: StudyHeadConfig
    label_fraction: float | None  # None: scripted (expert, random)
    seed: int | None


def study_runs(cfg: StudyConfig) -> list[StudyRun]:
    """The study's rows in order: each head's label shares x seeds, scripted policies once."""
    runs = []
    for head in cfg.heads:
        name = head.name or head.policy
        if cfg.only and name not in cfg.only:
            continue
        if head.policy in SCRIPTED:
            runs.append(StudyRun(name, head, None, None))
            continue
        for share in head.label_fractions:
            for seed in head.seeds:
                runs.append(StudyRun(run_name(name, share, seed), head, share, seed))
    return runs


def generator_runs(runs: Sequence[StudyRun]) -> list[str]:
    """The generator runs the heads read, in training order, each once."""
    needed = [stage for r in runs if r.label_fraction is not None for stage in _head(r).generator]
    order = ("tokenizer", "ldm", "transformer", "transformer_nocodes")
    return [stage for stage in order if stage in needed]


def head_experiment(cfg: StudyConfig, run: StudyRun) -> ExperimentConfig:
    """The study's experiment with this head's label share, training seed and switches."""
    section_name = _head(run).stage
    experiment = OmegaConf.structured(copy.deepcopy(cfg.experiment))
    section = experiment[section_name]
    section.label_fraction = None if run.label_fraction == 1.0 else run.label_fraction
    section.labelled_episodes = None
    section.label_seed = cfg.label_seed
    section.optim.seed = run.seed
    try:
        switches = OmegaConf.from_dotlist(list(run.head.switches))
        experiment[section_name] = OmegaConf.merge(section, switches)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"heads: {run.name}: switches {list(run.head.switches)}: {exc}") from None
    return OmegaConf.to_object(experiment)


def run_study(cfg: StudyConfig, command: str | None = None) -> list[dict[str, Any]]:
    """Run every row of the study (resuming), then write its results; returns the entries."""
    tasks = cfg.validate()
    run_cfg = cfg.as_run()
    camera = run_cfg.run_camera(tasks)
    eval_tasks = run_cfg.eval_task_ids(tasks)
    out = Path(cfg.folder)
    command = command or f"vw-robot study {cfg.study}"
    runs = study_runs(cfg)
    for stage_cfg in _data_jobs(cfg, tasks, camera, out):
        collect(stage_cfg)
    for stage in generator_runs(runs):
        log.info("study %s: train %s", cfg.study, stage)
        run_stage(_generator_job(cfg, stage, tasks, out))
    entries = []
    for k, run in enumerate(runs, 1):
        log.info("study %s: [%d/%d] %s", cfg.study, k, len(runs), run.name)
        checkpoint = None
        if run.label_fraction is not None:
            checkpoint = str(run_stage(_head_job(cfg, run, tasks, out))["checkpoint"])
        folder = out / "eval" / run.name
        evaluate(_eval_job(cfg, run, checkpoint or run.head.policy, eval_tasks, camera, folder))
        entries.append(
            suite_entry(
                folder,
                policy=run.head.name or run.head.policy,
                command=f"{command}  # eval/{run.name}",
                checkpoint=checkpoint,
            )
        )
    _write_results(out / "results.json", entries)
    if cfg.results:
        _write_results(Path(cfg.results), entries)
    print(_summary(entries), end="")
    return entries


def _head(run: StudyRun) -> Any:
    return HEADS[run.head.policy]


def _data_jobs(cfg: StudyConfig, tasks: list[str], camera: str | None, out: Path) -> Iterator:
    common = {
        "image_size": cfg.image_size,
        "camera": camera,
        "seed": cfg.seed,
        "workers": cfg.workers,
        "out": str(out / "data"),
    }
    yield CollectConfig(tasks=tasks, episodes_per_task=cfg.episodes_per_task, **common)
    if cfg.video_tasks:
        count = cfg.video_episodes_per_task or cfg.episodes_per_task
        yield CollectConfig(tasks=list(cfg.video_tasks), episodes_per_task=count, **common)


def _generator_job(cfg: StudyConfig, stage: str, tasks: list[str], out: Path) -> TrainConfig:
    experiment = copy.deepcopy(cfg.experiment)
    if stage == "transformer_nocodes":  # the no-LDM ablation: no codes, so none to hide
        experiment.transformer.use_codes = False
        experiment.transformer.hide_past_codes = False
    return TrainConfig(
        stage="transformer" if stage.startswith("transformer") else stage,
        dataset=str(out / "data"),
        out=str(out),
        tasks=[*tasks, *cfg.video_tasks],
        pictures=False,
        resume_changed=cfg.resume_changed,
        experiment=experiment,
    )


def _head_job(cfg: StudyConfig, run: StudyRun, tasks: list[str], out: Path) -> TrainConfig:
    return TrainConfig(
        stage=_head(run).stage,
        dataset=str(out / "data"),
        out=str(out),
        tasks=list(tasks),
        run_name=run.name,
        pictures=False,
        resume_changed=cfg.resume_changed,
        experiment=head_experiment(cfg, run),
    )


def _eval_job(
    cfg: StudyConfig,
    run: StudyRun,
    policy: str,
    tasks: list[str],
    camera: str | None,
    folder: Path,
) -> EvalConfig:
    return EvalConfig(
        policy=policy,
        suite=None,
        tasks=list(tasks),
        episodes_per_task=cfg.eval_episodes,
        seed=cfg.eval_seed,
        workers=cfg.workers,
        image_size=cfg.image_size,
        # A trained head acts on the view it was trained on (its checkpoint's); expert and
        # random on the study's.
        camera=camera if run.label_fraction is None else None,
        max_episode_steps=cfg.eval_max_steps,
        videos_per_task=cfg.videos_per_task,
        device=cfg.eval_device,
        out=str(folder),
    )


def _write_results(path: Path, entries: list[dict[str, Any]]) -> None:
    before = json.loads(path.read_text()) if path.exists() else []
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(merge_entries(before, entries), indent=1) + "\n")
    log.info("%d entries -> %s", len(entries), path)


def _summary(entries: list[dict[str, Any]]) -> str:
    lines = ["| run | label share | successes | mean success |", "|---|---:|---:|---:|"]
    for e in entries:
        tasks = e["tasks"].values()
        successes = sum(t["successes"] for t in tasks)
        episodes = sum(t["episodes"] for t in tasks)
        share = "—" if e["label_fraction"] is None else f"{e['label_fraction']:.0%}"
        lines.append(
            f"| {e['variant']} | {share} | {successes}/{episodes} | {e['mean_success']:.3f} |"
        )
    return "\n".join(lines) + "\n"
