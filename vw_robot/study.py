"""A study, run by one resumable command: ``vw-robot study NAME`` (configs/study/NAME.yaml).

Into the study folder (``runs/NAME`` unless ``out=``):

    data/                            the expert demonstrations (and action-free video)
    tokenizer/ ldm/ transformer/     the generator, trained once for every head that reads it
    transformer_nocodes/             the no-LDM ablation's transformer (when a head needs it)
    transformer-<head>/              a transformer with a head's own settings (its `transformer`)
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
import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vw_robot.config import (
    CollectConfig,
    EvalChainsConfig,
    EvalConfig,
    StudyConfig,
    StudyHeadConfig,
)
from vw_robot.errors import ConfigError
from vw_robot.eval.entries import chains_entry, merge_entries, suite_entry, with_sequences
from vw_robot.heads import HEADS, SCRIPTED, run_name
from vw_robot.io import atomic_write_text
from vw_robot.jobs import collect, eval_chains, evaluate
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

    @property
    def variant(self) -> str:
        """Its row's name in the results: the head's ``variant``, else the run's name."""
        return self.head.variant or self.name


def study_runs(cfg: StudyConfig, every: bool = False) -> list[StudyRun]:
    """The study's rows in order: each head's label shares x seeds, scripted policies once
    (those of the heads in ``only`` unless ``every``)."""
    runs = []
    for head in cfg.heads:
        name = head.name or head.policy
        if cfg.only and name not in cfg.only and not every:
            continue
        if head.policy in SCRIPTED:
            runs.append(StudyRun(name, head, None, None))
            continue
        for share in head.label_fractions:
            for seed in head.seeds:
                runs.append(StudyRun(run_name(name, share, seed), head, share, seed))
    return runs


def generator_runs(cfg: StudyConfig, runs: Sequence[StudyRun]) -> list[str]:
    """The generator runs (folders) the heads read, in training order, each once (a head whose
    trunk starts from the LDM's frame encoder, ``trunk=ldm``, reads the LDM too, one with
    ``pretrained=true`` the latent-action pretraining; a head with transformer settings of its
    own reads its own transformer)."""
    needed = set()
    for run in runs:
        if run.label_fraction is None:
            continue
        needed.update(s for s in _head(run).generator if not s.startswith("transformer"))
        transformer = transformer_of(cfg, run.head)
        if transformer is not None:
            needed.add(transformer)
        section = getattr(head_experiment(cfg, run), _head(run).stage)
        if section.trunk == "ldm":
            needed.add("ldm")
        if section.pretrained:  # lapa, or a head switched to pretrained=true
            needed.update(("tokenizer", "ldm", "latent_pretrain"))
    order = ("tokenizer", "ldm", "latent_pretrain", "transformer", "transformer_nocodes")
    return sorted(needed, key=lambda folder: (order.index(folder.partition("-")[0]), folder))


def transformer_of(cfg: StudyConfig, head: StudyHeadConfig) -> str | None:
    """The transformer run (folder) a head reads, None for none: the study's (``transformer``,
    or ``transformer_nocodes`` for the no-LDM ablation) or, for a head with transformer
    settings of its own, ``<that>-<name>`` after the first head with the same settings."""
    study = _study_transformer(head)
    if study is None or not head.transformer:
        return study
    first = next(
        h
        for h in cfg.heads
        if _study_transformer(h) == study and list(h.transformer) == list(head.transformer)
    )
    return f"{study}-{first.name or first.policy}"


def _study_transformer(head: StudyHeadConfig) -> str | None:
    generator = HEADS[head.policy].generator if head.policy in HEADS else ()
    return next((stage for stage in generator if stage.startswith("transformer")), None)


def head_experiment(cfg: StudyConfig, run: StudyRun) -> ExperimentConfig:
    """The study's experiment with this head's label share, training seed and switches."""
    section_name = _head(run).stage
    experiment = OmegaConf.structured(copy.deepcopy(cfg.experiment))
    section = experiment[section_name]
    section.label_fraction = None if run.label_fraction == 1.0 else run.label_fraction
    section.labelled_episodes = None
    section.label_seed = cfg.label_seed
    if cfg.labelled_tasks is not None:
        section.labelled_tasks = list(cfg.labelled_tasks)
    section.optim.seed = run.seed
    if _head(run).pretrained:  # lapa: fine-tuned from <out>/latent_pretrain
        section.pretrained = True
    try:
        switches = OmegaConf.from_dotlist(list(run.head.switches))
        experiment[section_name] = OmegaConf.merge(section, switches)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"heads: {run.name}: switches {list(run.head.switches)}: {exc}") from None
    return OmegaConf.to_object(experiment)


@dataclass(frozen=True)
class _Where:
    """What every job of one study shares: its folder, tasks and view."""

    out: Path
    tasks: list[str]  # the heads' (labelled) tasks
    eval_tasks: list[str]
    camera: str | None  # the study's view (None: each suite's default)


def run_study(cfg: StudyConfig, command: str | None = None) -> list[dict[str, Any]]:
    """Run every row of the study (resuming), then write its results; returns the entries."""
    tasks = cfg.validate()
    run_cfg = cfg.as_run()
    where = _Where(Path(cfg.folder), tasks, run_cfg.eval_task_ids(tasks), run_cfg.run_camera(tasks))
    command = command or f"vw-robot study {cfg.study}"
    runs = study_runs(cfg)
    collect(_collect_job(cfg, where, where.tasks, cfg.episodes_per_task))
    if cfg.video_tasks:
        count = cfg.video_episodes_per_task or cfg.episodes_per_task
        collect(_video_job(cfg, where, count))
    trained: set[str] = set()
    entries = []
    for k, run in enumerate(runs, 1):
        # The generator when the first row that reads it comes: rows before it (the expert,
        # random, BC) have their results first.
        for stage in generator_runs(cfg, [run]):
            if stage not in trained:
                log.info("study %s: train %s", cfg.study, stage)
                run_stage(_generator_job(cfg, stage, where))
                trained.add(stage)
        log.info("study %s: [%d/%d] %s", cfg.study, k, len(runs), run.name)
        entries.append(_run_row(cfg, run, where, command))
        # After every row, so that a stopped study has the results of its finished rows.
        _write_results(where.out / "results.json", entries[-1:])
        if cfg.results:
            _write_results(Path(cfg.results), entries[-1:])
    print(_summary(entries), end="")
    return entries


def _run_row(cfg: StudyConfig, run: StudyRun, where: _Where, command: str) -> dict[str, Any]:
    """Train (unless scripted) and evaluate one row; its results entry."""
    checkpoint = None
    if run.label_fraction is not None:
        data = _data_of(cfg, run, where)
        if data != where.out / "data":  # another view: its own copy of the demonstrations
            size = run.head.image_size or cfg.image_size
            collect(_collect_job(cfg, where, where.tasks, cfg.episodes_per_task, data, size, run))
        checkpoint = str(run_stage(_head_job(cfg, run, where, data))["checkpoint"])  # resumes
    folder = where.out / "eval" / run.name
    policy = checkpoint or run.head.policy
    if cfg.chains:
        eval_chains(_acting(run, _chains_job(cfg, run, policy, where, folder)))
    else:
        evaluate(_acting(run, _eval_job(cfg, run, policy, where, folder)))
    entry = (chains_entry if cfg.chains else suite_entry)(
        folder,
        policy=run.head.name or run.head.policy,
        command=f"{command}  # eval/{run.name}",
        checkpoint=checkpoint,
    )
    entry["variant"] = run.variant  # the folder's name unless the head names its row
    if cfg.sequence_tasks:
        job = _eval_job(cfg, run, policy, where, folder / SEQUENCES_DIR)
        job.tasks, job.max_episode_steps = list(cfg.sequence_tasks), cfg.sequence_max_steps
        evaluate(_acting(run, job))
        entry = with_sequences(entry, suite_entry(folder / SEQUENCES_DIR, policy="", command=""))
    return entry


# A row's evaluation on the study's multi-subtask episodes: eval/<row>/<this>.
SEQUENCES_DIR = "sequences"


def _head(run: StudyRun) -> Any:
    return HEADS[run.head.policy]


def _view(cfg: StudyConfig, run: StudyRun, where: _Where) -> tuple[str | None, int]:
    """The camera and image size a row's head trains and acts on."""
    return run.head.camera or where.camera, run.head.image_size or cfg.image_size


def _data_of(cfg: StudyConfig, run: StudyRun, where: _Where) -> Path:
    """The study's demonstrations, or for a head with a view of its own, their copy in that
    view (``data-<camera>-<size>px``: the same episodes, recorded again)."""
    camera, size = _view(cfg, run, where)
    if (camera, size) == (where.camera, cfg.image_size):
        return where.out / "data"
    return where.out / f"data-{camera or 'default'}-{size}px"


def _collect_job(
    cfg: StudyConfig,
    where: _Where,
    tasks: list[str],
    episodes: int,
    data: Path | None = None,
    image_size: int | None = None,
    run: StudyRun | None = None,
) -> CollectConfig:
    camera = where.camera if run is None else _view(cfg, run, where)[0]
    return CollectConfig(
        tasks=list(tasks),
        episodes_per_task=episodes,
        image_size=image_size or cfg.image_size,
        camera=camera,
        seed=cfg.seed,
        workers=cfg.workers,
        out=str(data or where.out / "data"),
        start=cfg.start,
        action_noise=cfg.action_noise,
    )


def _video_job(cfg: StudyConfig, where: _Where, episodes: int) -> CollectConfig:
    """The collection of the study's video tasks (play), cut into labelled subtask episodes
    with ``play_segments``; expert actions as they come (no noise, their own starts)."""
    job = _collect_job(cfg, where, list(cfg.video_tasks), episodes)
    return dataclasses.replace(job, start="home", action_noise=0.0, segments=cfg.play_segments)


def _generator_job(cfg: StudyConfig, folder: str, where: _Where) -> TrainConfig:
    """The training job of one generator run: a stage (``folder``) or a transformer with a
    head's own settings (``transformer-<name>``)."""
    stage, _, own = folder.partition("-")
    experiment = copy.deepcopy(cfg.experiment)
    if own:
        head = next(h for h in cfg.heads if transformer_of(cfg, h) == folder)
        try:
            settings = OmegaConf.from_dotlist(list(head.transformer))
            merged = OmegaConf.merge(OmegaConf.structured(experiment.transformer), settings)
        except OmegaConfBaseException as exc:
            key = f"heads: {head.name or head.policy}: transformer {list(head.transformer)}"
            raise ConfigError(f"{key}: {exc}") from None
        experiment.transformer = OmegaConf.to_object(merged)
    if stage == "transformer_nocodes":  # the no-LDM ablation: no codes, so none to hide
        experiment.transformer.use_codes = False
        experiment.transformer.hide_past_codes = False
    return TrainConfig(
        stage="transformer" if stage.startswith("transformer") else stage,
        dataset=str(where.out / "data"),
        out=str(where.out),
        tasks=[*where.tasks, *cfg.video_tasks],
        run_name=folder if own else None,
        pictures=False,
        resume_changed=cfg.resume_changed,
        experiment=experiment,
    )


def trained_as(cfg: StudyConfig, run: StudyRun) -> str:
    """The run folder of a row's head: its own, or that of the first row trained the same way
    (a row that differs only in how it acts evaluates that row's weights)."""

    def training(r: StudyRun) -> tuple:
        head = r.head
        view = (head.camera, head.image_size)
        generator = transformer_of(cfg, head)
        return (head.policy, tuple(head.switches), generator, view, r.label_fraction, r.seed)

    return next(r.name for r in study_runs(cfg, every=True) if training(r) == training(run))


def _head_job(cfg: StudyConfig, run: StudyRun, where: _Where, data: Path) -> TrainConfig:
    # A head with transformer settings of its own reads its own transformer; the others the
    # pipeline folder's (<out>/transformer, <out>/transformer_nocodes).
    transformer = transformer_of(cfg, run.head)
    own = None if not run.head.transformer else str(where.out / str(transformer))
    nocodes = _study_transformer(run.head) == "transformer_nocodes"
    return TrainConfig(
        stage=_head(run).stage,
        dataset=str(data),
        out=str(where.out),
        tasks=list(where.tasks),
        transformer_checkpoint=None if nocodes else own,
        transformer_nocodes_checkpoint=own if nocodes else None,
        run_name=trained_as(cfg, run),
        pictures=False,
        resume_changed=cfg.resume_changed,
        experiment=head_experiment(cfg, run),
    )


def _eval_job(
    cfg: StudyConfig, run: StudyRun, policy: str, where: _Where, folder: Path
) -> EvalConfig:
    camera, size = _view(cfg, run, where)
    return EvalConfig(
        policy=policy,
        suite=None,
        tasks=list(where.eval_tasks),
        episodes_per_task=cfg.eval_episodes,
        seed=cfg.eval_seed,
        workers=cfg.workers,
        image_size=size,
        # A trained head acts on the view it was trained on (its checkpoint's); expert and
        # random on the study's.
        camera=camera if run.label_fraction is None else None,
        max_episode_steps=cfg.eval_max_steps,
        videos_per_task=cfg.videos_per_task,
        device=cfg.eval_device,
        out=str(folder),
    )


def _chains_job(
    cfg: StudyConfig, run: StudyRun, policy: str, where: _Where, folder: Path
) -> EvalChainsConfig:
    camera, size = _view(cfg, run, where)
    return EvalChainsConfig(
        policy=policy,
        chains=cfg.chains,
        steps_per_subtask=cfg.chain_steps_per_subtask,
        single_episodes=cfg.eval_episodes,
        single_suite=cfg.single_suite,
        seed=cfg.eval_seed,
        workers=cfg.workers,
        image_size=size,
        camera=camera if run.label_fraction is None else None,
        videos=cfg.videos_per_task,
        device=cfg.eval_device,
        out=str(folder),
    )


def _acting(run: StudyRun, job: Any) -> Any:
    """The evaluation job with the row's acting settings (execute=1, ensemble=0.1)."""
    if not run.head.acting:
        return job
    try:
        merged = OmegaConf.merge(OmegaConf.structured(job), OmegaConf.from_dotlist(run.head.acting))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"heads: {run.name}: acting {list(run.head.acting)}: {exc}") from None
    return OmegaConf.to_object(merged)


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
