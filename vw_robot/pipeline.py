"""The main job, end to end: demonstrations -> every stage -> closed-loop evaluation -> report.

Every step resumes: collection skips finished episodes, a stage whose run folder already
holds its final checkpoint is not retrained, and evaluation is rerun (it is cheap next to
training and must reflect the checkpoints on disk).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from tqdm import tqdm

from vw_robot import checkpoint as ckpt
from vw_robot.config import RunConfig
from vw_robot.data.dataset import labelled_per_task
from vw_robot.data.format import read_manifest
from vw_robot.envs import make_env
from vw_robot.envs.playground_suite import CHAIN_LENGTH
from vw_robot.eval import evaluate, write_report
from vw_robot.eval.chains import evaluate_chains, write_chain_report
from vw_robot.eval.collect import collect, format_summary
from vw_robot.eval.entries import suite_entry
from vw_robot.eval.report import bar_chart
from vw_robot.eval.tables import chains_comparison_table, comparison_table, groups_table
from vw_robot.heads import HEADS, SCRIPTED, head_of_stage
from vw_robot.io import atomic_write_text
from vw_robot.policies import load_policy, make_policy
from vw_robot.provenance import provenance
from vw_robot.training.config import HEAD_STAGES, TrainConfig
from vw_robot.training.pictures import image_grid, save_image
from vw_robot.training.stages import STAGES, run_stage

log = logging.getLogger("vw_robot")

VIDEOWORLD = HEADS["videoworld"]
# The VideoWorld pipeline, in order; baselines and label sweeps add heads after it.
PIPELINE = (*VIDEOWORLD.generator, VIDEOWORLD.stage)


def training_jobs(cfg: RunConfig, tasks: list[str]) -> dict[str, TrainConfig]:
    """Run folder name -> the TrainConfig that fills it, for the pipeline and its baselines.

    The heads train on ``tasks`` only (the dataset folder may hold others); the generator
    stages on ``tasks`` and ``cfg.video_tasks`` (action-free video). The baselines
    that compare against VideoWorld at equal supervision (``bc``, ``noldm``) get the action
    head's label settings; ``bc_all`` gets every labelled episode; a label sweep adds one
    VideoWorld head per share. The folder names come from the stage declarations: a head's is
    :func:`vw_robot.heads.run_name` of its labels and training seed (``videoworld-25pct_seed0``,
    ``bc-100pct_seed0``), as ``vw-robot study`` names it; two jobs that would fill one folder
    are one job (``bc`` and ``bc_all`` when the action head uses every label).
    """
    exp = cfg.experiment
    section = getattr(exp, VIDEOWORLD.stage)
    labels = {
        "label_fraction": section.label_fraction,
        "labelled_episodes": section.labelled_episodes,
        "label_seed": section.label_seed,
    }

    def job(stage: str, **stage_changes: Any) -> tuple[str, TrainConfig]:
        experiment = copy.deepcopy(exp)
        target = getattr(experiment, stage)
        for key, value in stage_changes.items():
            setattr(target, key, value)
        train_cfg = TrainConfig(
            stage=stage,
            dataset=str(Path(cfg.out) / "data"),
            out=cfg.out,
            tasks=list(tasks) if stage in HEAD_STAGES else [*tasks, *cfg.video_tasks],
            resume_changed=cfg.resume_changed,
            experiment=experiment,
        )
        return STAGES[stage].run_name(train_cfg), train_cfg

    bc, noldm = HEADS["bc"], HEADS["noldm"]
    jobs = dict(job(stage) for stage in PIPELINE)
    if "bc" in cfg.baselines:
        jobs.update([job(bc.stage, **labels)])
    if "bc_all" in cfg.baselines:
        jobs.update([job(bc.stage, label_fraction=None, labelled_episodes=None)])
    if "noldm" in cfg.baselines:
        no_codes = job("transformer", use_codes=False, hide_past_codes=False)  # none to hide
        jobs.update([no_codes, job(noldm.stage, **labels)])
    for fraction in cfg.label_sweep:
        jobs.update([job(VIDEOWORLD.stage, label_fraction=fraction, labelled_episodes=None)])
    return jobs


def policy_specs(cfg: RunConfig, jobs: dict[str, TrainConfig]) -> dict[str, str]:
    """Policy name in the report (and its folder under ``<out>/eval``) -> what ``vw-robot eval
    policy=...`` takes: each head of ``jobs`` (:func:`training_jobs`) by its run folder, then
    the baselines that need no training (``expert``, ``random``) by name."""
    out = Path(cfg.out)
    policies = {name: str(out / name) for name, job in jobs.items() if head_of_stage(job.stage)}
    policies.update((name, name) for name in cfg.baselines if name in SCRIPTED)
    return policies


def run_pipeline(cfg: RunConfig, command: str = "vw-robot run") -> dict[str, Any]:
    """Run the whole pipeline into ``cfg.out``; returns per-policy summaries. The results as
    data go to ``<out>/results.json`` (:mod:`vw_robot.eval.entries`, ``command`` recorded)."""
    tasks = cfg.validate()
    cfg = dataclasses.replace(cfg, camera=cfg.run_camera(tasks))  # "auto" -> the view it names
    out = Path(cfg.out)
    began = time.perf_counter()
    timings: dict[str, float] = {}
    jobs = training_jobs(cfg, tasks)
    total = 1 + len(jobs) + 1
    start = time.perf_counter()
    _collect_data(cfg, tasks, f"[1/{total}]")
    timings["collect"] = time.perf_counter() - start
    stage_results = {}
    for k, (name, train_cfg) in enumerate(jobs.items(), start=2):
        log.info("[%d/%d] train %s", k, total, name)
        start = time.perf_counter()
        stage_results[name] = run_stage(train_cfg)
        timings[name] = time.perf_counter() - start
    eval_tasks = cfg.eval_task_ids(tasks)
    log.info("[%d/%d] evaluate %d episodes per task", total, total, cfg.eval_episodes)
    policies = policy_specs(cfg, jobs)
    start = time.perf_counter()
    summaries, chain_summaries = _evaluate_policies(cfg, policies, eval_tasks)
    timings["evaluate"] = time.perf_counter() - start
    entries = [
        suite_entry(
            out / "eval" / name,
            policy=name if name in SCRIPTED else head_of_stage(jobs[name].stage).name,
            command=f"{command}  # eval/{name}",
            checkpoint=None if name in SCRIPTED else spec,
        )
        for name, spec in policies.items()
    ]
    atomic_write_text(out / "results.json", json.dumps(entries, indent=1) + "\n")
    chart = bar_chart(summaries, out / "success.png")
    videoworld = next(name for name, job in jobs.items() if job.stage == VIDEOWORLD.stage)
    plans = _plan_pictures(out / videoworld, eval_tasks, cfg, out / "plans.png")
    timings["total"] = time.perf_counter() - began
    report = _report(
        cfg, tasks, eval_tasks, summaries, stage_results, timings, chart, plans, chain_summaries
    )
    atomic_write_text(out / "report.md", report)
    print("\n" + comparison_table(summaries, eval_tasks))
    if chain_summaries:
        print("\n" + chains_comparison_table(chain_summaries, CHAIN_LENGTH))
    print(
        f"report: {out / 'report.md'}, results as data: {out / 'results.json'} "
        f"({timings['total'] / 60:.1f} min)"
    )
    for name, summary in summaries.items():
        log.info("%s: mean success %.3f", name, summary["mean_success"])
    return {"summaries": summaries, "chains": chain_summaries, "timings": timings}


def _collect_data(cfg: RunConfig, tasks: list[str], step: str) -> None:
    """The demonstrations of ``tasks`` and the action-free video into ``<out>/data``."""
    data = Path(cfg.out) / "data"
    groups = [("collect", "demonstrations", tasks, cfg.episodes_per_task)]
    if cfg.video_tasks:
        count = cfg.video_episodes_per_task or cfg.episodes_per_task
        groups.append(("collect video", "action-free videos", list(cfg.video_tasks), count))
    log.info("%s collect -> %s", step, data)
    for desc, what, group, count in groups:
        log.info("%d %s per task of %s", count, what, ", ".join(group))
        with tqdm(total=len(group) * count, desc=desc, unit="ep") as bar:
            summary = collect(
                data,
                group,
                episodes_per_task=count,
                image_size=cfg.image_size,
                camera=cfg.camera,
                seed=cfg.seed,
                workers=cfg.workers,
                progress=lambda row, bar=bar: bar.update(1),
            )
        print(format_summary(summary), end="")


def _evaluate_policies(
    cfg: RunConfig, policies: dict[str, str], tasks: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each policy on ``tasks`` into ``<out>/eval/<name>`` (and its chains, if asked for);
    the per-policy summaries and chain summaries."""
    summaries, chain_summaries = {}, {}
    factory = functools.partial(make_policy, device=cfg.eval_device)
    for name, spec in policies.items():
        with tqdm(total=len(tasks) * cfg.eval_episodes, desc=f"eval {name}", unit="ep") as bar:
            results = evaluate(
                tasks,
                policy=spec,
                episodes_per_task=cfg.eval_episodes,
                base_seed=cfg.seed + 1000,
                workers=cfg.workers,
                env_kwargs=_env_kwargs(cfg),
                videos_per_task=cfg.videos_per_task,
                progress=bar.update,
                policy_factory=factory,
            )
        summaries[name] = write_report(
            Path(cfg.out) / "eval" / name,
            results,
            config={
                "policy": name,
                "checkpoint": spec,
                "tasks": tasks,
                "episodes_per_task": cfg.eval_episodes,
                "base_seed": cfg.seed + 1000,
                "max_episode_steps": cfg.eval_max_steps,
            },
        )
        if cfg.chains:
            chain_summaries[name] = _evaluate_chains(cfg, name, spec, factory)
    return summaries, chain_summaries


def _env_kwargs(cfg: RunConfig) -> dict[str, Any]:
    """``make_env`` arguments of the evaluation: a learned policy acts on the camera it was
    trained on (the run's), the expert and random policies on the run's camera too."""
    kwargs: dict[str, Any] = {"image_size": cfg.image_size, "max_episode_steps": cfg.eval_max_steps}
    if cfg.camera is not None:
        kwargs["camera"] = cfg.camera
    return kwargs


def _evaluate_chains(cfg: RunConfig, name: str, spec: str, factory: Any) -> dict[str, Any]:
    """CALVIN's chains for one policy into ``<out>/eval/<name>/chains.*``; the summary."""
    with tqdm(total=cfg.chains, desc=f"chains {name}", unit="chain") as bar:
        chains = evaluate_chains(
            policy=spec,
            num_chains=cfg.chains,
            steps_per_subtask=cfg.chain_steps_per_subtask,
            base_seed=cfg.seed + 1000,
            workers=cfg.workers,
            image_size=cfg.image_size,
            camera=cfg.camera,
            videos=cfg.videos_per_task,
            policy_factory=factory,
            progress=bar.update,
        )
    return write_chain_report(
        Path(cfg.out) / "eval" / name,
        chains,
        chain_length=CHAIN_LENGTH,
        config={
            "policy": name,
            "checkpoint": spec,
            "chains": cfg.chains,
            "chain_length": CHAIN_LENGTH,
            "steps_per_subtask": cfg.chain_steps_per_subtask,
            "base_seed": cfg.seed + 1000,
        },
    )


def _plan_pictures(policy_path: Path, tasks: list[str], cfg: RunConfig, path: Path) -> str:
    """For each task: the current frame and the H frames decoded from the sampled plan, at
    steps 0, 10 and 20 of an evaluation episode."""
    policy = load_policy(policy_path, device=cfg.eval_device)
    rows = []
    for task_id in tasks:
        env = make_env(task_id, image_size=cfg.image_size, camera=policy.camera)
        try:
            obs, info = env.reset(seed=cfg.seed + 1000)
            policy.reset(task_id=task_id, action_space=env.action_space)
            for step in range(21):
                action = policy.select_action(obs, info)
                if step in (0, 10, 20):
                    rows.append(policy.plan_frames())
                obs, _, _, _, info = env.step(action)
        finally:
            env.close()
    return save_image(path, image_grid(rows))


def _video_note(cfg: RunConfig) -> str:
    if not cfg.video_tasks:
        return ""
    count = cfg.video_episodes_per_task or cfg.episodes_per_task
    return (
        f" Action-free video for the generator stages only: {count} episodes per task of "
        f"{', '.join(cfg.video_tasks)}."
    )


def _chains_section(cfg: RunConfig, chains: dict[str, Any]) -> list[str]:
    """The report's chain protocol and its success-after-k table per policy."""
    return [
        f"## Chains of {CHAIN_LENGTH}\n",
        f"CALVIN's protocol: each chain draws {CHAIN_LENGTH} subtasks from its seed "
        f"`episode_seed({cfg.seed + 1000}, 'playground/chain', i)`, "
        f"{cfg.chain_steps_per_subtask} steps per subtask, the policy reset with the next "
        "subtask's id at each switch while the scene carries on, stop at the first failure; "
        "success after k subtasks = share of chains that completed at least k. Per-subtask "
        "rates: `eval/<policy>/chains.md`.\n",
        chains_comparison_table(chains, CHAIN_LENGTH),
    ]


def _stages_section(stages: dict, timings: dict, task_of: dict[str, str]) -> list[str]:
    """The report's table of training runs (one per run folder): steps, loss, speed, labelled
    episodes."""
    lines = [
        "## Stages\n",
        "| run | steps | last loss | samples/s (this run) | seconds (this run) | "
        "labelled episodes | checkpoint |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for run, result in stages.items():
        loss = "—" if result["last_loss"] is None else f"{result['last_loss']:.4f}"
        speed = "—" if result["samples_per_s"] is None else f"{result['samples_per_s']:.1f}"
        env = ckpt.read_info(result["checkpoint"]).model_config.get("env", {})
        labelled = (
            labelled_per_task(env["labelled_episodes"], task_of)
            if "labelled_episodes" in env
            else "—"
        )
        lines.append(
            f"| {run} | {result['step']} | {loss} | {speed} | "
            f"{timings.get(run, 0):.0f} | {labelled} | `{result['checkpoint']}` |"
        )
    return lines


def _report(
    cfg: RunConfig,
    train_tasks: list[str],
    tasks: list[str],
    summaries: dict,
    stages: dict,
    timings: dict,
    chart: str,
    plans: str,
    chains: dict[str, Any],
) -> str:
    out = Path(cfg.out)
    prov = provenance()
    task_of = {row["episode_id"]: row["task_id"] for row in read_manifest(out / "data")["episodes"]}
    lines = [
        "# vw_robot run report\n",
        f"Training tasks: {', '.join(train_tasks)}. Demonstrations: {cfg.episodes_per_task} "
        f"per task (seed {cfg.seed}), {cfg.image_size} px, camera "
        f"{cfg.camera or 'each suite default'}.{_video_note(cfg)} Evaluated tasks: "
        f"{'the training tasks' if tasks == train_tasks else ', '.join(tasks)}; "
        f"{cfg.eval_episodes} episodes per task and policy, "
        f"seeds `episode_seed({cfg.seed + 1000}, task, i)`, success = `is_success` at any "
        "step before the time limit; Wilson 95% intervals. Checkpoints: the final step of "
        "each stage (no selection).\n",
        "## Success\n",
        comparison_table(summaries, tasks),
        f"![success per task]({Path(chart).relative_to(out)})\n",
    ]
    groups = groups_table(summaries)
    if groups:
        lines += ["Grouped as VideoWorld reports CALVIN (successes / episodes = rate):\n", groups]
    if chains:
        lines += _chains_section(cfg, chains)
    lines += _stages_section(stages, timings, task_of)
    lines += [
        "",
        "Pictures: "
        + ", ".join(
            f"[{Path(p).name}]({Path(p).relative_to(out)})"
            for r in stages.values()
            for k, p in r.get("pictures", {}).items()
            if isinstance(p, str) and p.endswith(".png")
        ),
        "",
        f"Plans (each row: current frame, then the frames decoded from the sampled codes): "
        f"![plans]({Path(plans).relative_to(out)})\n",
        "Videos: `eval/<policy>/videos/`. Wall time: "
        + ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items())
        + ".\n",
        f"Versions: {', '.join(f'{k} {v}' for k, v in prov['packages'].items() if v)}; "
        f"git {prov['git_revision']}.\n",
        "## Config\n",
        "```yaml",
        OmegaConf.to_yaml(OmegaConf.structured(cfg)).rstrip(),
        "```",
    ]
    return "\n".join(lines) + "\n"
