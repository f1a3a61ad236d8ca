"""Command-line entry point ``vw-robot``.

Usage:
    vw-robot run                                   # main job on its built-in default
    vw-robot study tiny                            # a study: configs/study/tiny.yaml
    vw-robot eval policy=runs/demo/action_head tasks=[metaworld/reach-v3] episodes_per_task=20
    vw-robot collect suite=metaworld/mt10 episodes_per_task=20 workers=2 out=data/mt10
    vw-robot data check data/mt10                  # validate every episode, modify nothing
    vw-robot data import my_videos/ out=data/mine task_id=my-task
    vw-robot data import-lerobot lerobot_ds/ out=data/from_lerobot camera_key=observation.image
    vw-robot data export-lerobot data/mt10 out=exports/mt10_lerobot
    vw-robot eval policy=expert suite=robosuite/all episodes_per_task=10 workers=2
    vw-robot eval tasks=[metaworld/reach-v3,metaworld/push-v3] policy=random
    vw-robot eval-chains policy=expert chains=50 single_episodes=10 workers=2
    vw-robot export-policy runs/demo/action_head out=policies/demo   # a folder that moves
    vw-robot serve policy=runs/demo/action_head port=8765   # for a benchmark's own process
    vw-robot tasks suite=metaworld/mt10            # list task ids
    vw-robot run --cfg                             # print the resolved config and exit
    vw-robot eval -m policy=random tasks=[metaworld/reach-v3] seed=0,1,2   # a sweep: 3 jobs
    vw-robot run -m experiment.action_head.label_fraction=1.0,0.25 hydra/launcher=joblib

Each subcommand is a Hydra config in ``vw_robot.configs`` (``run.yaml``, ...); arguments are
Hydra overrides (``key=value``); a key the command does not have fails at start. ``-m`` (or
``--multirun``) runs a Hydra sweep, one job per combination, each in its own folder
(:mod:`vw_robot.launch`); ``-m --cfg`` prints every job's config.
"""

from __future__ import annotations

import functools
import shlex
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

import vw_robot  # noqa: F401  (headless GL backend before any simulator import)
from vw_robot import config as config_module
from vw_robot import jobs, launch, study

# subcommand -> (config name, job, one-line help)
COMMANDS: dict[str, tuple[str, Callable[[Any], Any], str]] = {
    "run": ("run", jobs.run, "main job: demos -> every stage -> evaluation -> report"),
    "study": (
        "study",
        study.run_study,
        "a study from configs/study: study NAME (heads x labels x seeds, results JSON)",
    ),
    "eval": ("eval", jobs.evaluate, "evaluate a policy (expert, random, checkpoint) on tasks"),
    "eval-chains": (
        "eval_chains",
        jobs.eval_chains,
        "playground chains (CALVIN protocol) + subtasks",
    ),
    "tasks": ("tasks", jobs.tasks, "list suites and task ids"),
    "collect": ("collect", jobs.collect, "record expert demonstrations into a dataset"),
    "data check": ("data_check", jobs.data_check, "validate a dataset: data check DIR"),
    "data import": ("data_import", jobs.data_import, "plain videos -> dataset: data import SRC"),
    "data import-lerobot": (
        "data_import_lerobot",
        jobs.data_import_lerobot,
        "LeRobotDataset -> dataset: data import-lerobot SRC out=DIR",
    ),
    "data export-lerobot": (
        "data_export_lerobot",
        jobs.data_export_lerobot,
        "dataset -> LeRobotDataset v3.0: data export-lerobot DIR out=DST",
    ),
    "data check-lerobot": (
        "data_check_lerobot",
        jobs.data_check_lerobot,
        "validate a LeRobotDataset v3.0: data check-lerobot DIR",
    ),
    "train": ("train", jobs.train, "train a stage: stage=tokenizer|ldm|transformer"),
    "export-codes": ("export_codes", jobs.export_codes, "label a dataset with tokens and codes"),
    "serve": ("serve", jobs.serve, "serve a policy over a websocket: policy=... host= port="),
    "export-policy": (
        "export_policy",
        jobs.export_policy,
        "a policy folder that moves: RUN/action_head out=DIR",
    ),
}
# Subcommands that take one positional argument, given to this config key.
POSITIONAL = {
    "data check": "root",
    "data import": "src",
    "data import-lerobot": "src",
    "data export-lerobot": "root",
    "data check-lerobot": "root",
    "export-policy": "policy",
    "study": "study",
}


# Subcommands that cannot be swept: a server runs until it is stopped.
NO_SWEEP = {"serve"}
# The exit status of a command stopped by Ctrl-C: 128 + SIGINT, as shells report it.
INTERRUPTED = 130
FLAGS = ("--cfg", "-m", "--multirun")


def _usage() -> str:
    lines = ["usage: vw-robot COMMAND [key=value ...] [--cfg] [-m]", "", "commands:"]
    lines += [f"  {name:<12} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += [
        "",
        "Overrides are Hydra syntax; `vw-robot COMMAND --cfg` shows every key.",
        "-m (--multirun) sweeps: `vw-robot eval -m seed=0,1,2` runs 3 jobs, each in its own out.",
    ]
    return "\n".join(lines)


def _command_help(command: str) -> str:
    """One command's help: its line from the usage, then its YAML (every key, its default and
    what it does)."""
    config_name, _, help_ = COMMANDS[command]
    source = resources.files(launch.CONFIG_MODULE).joinpath(f"{config_name}.yaml").read_text()
    return (
        f"usage: vw-robot {command} [key=value ...] [--cfg] [-m]\n\n{help_}\n\n"
        f"Keys (configs/{config_name}.yaml; `vw-robot {command} --cfg` prints the resolved "
        f"config):\n\n{source.rstrip()}"
    )


def load_config(command: str, overrides: Sequence[str]) -> Any:
    """Compose the command's YAML with overrides and return its typed config object."""
    return launch.load_config(COMMANDS[command][0], overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, return the exit status.

    A mistake in what the user gave (:class:`~vw_robot.errors.UserError`: a config value, a
    missing file, a checkpoint that does not fit) prints one line and returns 2; problems that
    ``data check`` listed return 1; anything else is a bug and keeps its traceback. A sweep
    (``-m``) returns 0 when every job succeeded, else the highest status of its jobs. Ctrl-C
    prints one line, with what was kept (:class:`~vw_robot.errors.Interrupted`), and returns
    130.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    command, args = argv[0], argv[1:]
    if command == "data" and args and f"data {args[0]}" in COMMANDS:
        command, args = f"data {args[0]}", args[1:]
    show_config = "--cfg" in args
    multirun = "-m" in args or "--multirun" in args
    overrides = [a for a in args if a not in FLAGS]
    if command in POSITIONAL and overrides and "=" not in overrides[0]:
        overrides = [f"{POSITIONAL[command]}={overrides[0]}", *overrides[1:]]
    if command not in COMMANDS:
        print(f"vw-robot: unknown command {command!r}.\n\n{_usage()}", file=sys.stderr)
        return 2
    if "-h" in args or "--help" in args:
        print(_command_help(command))
        return 0
    if multirun and command in NO_SWEEP:
        print(f"vw-robot {command}: cannot be swept (-m): it runs until stopped", file=sys.stderr)
        return 2
    launch.configure_logging()
    try:
        return _run(command, overrides, multirun=multirun, show_config=show_config)
    except KeyboardInterrupt as exc:  # Ctrl-C; an Interrupted says what the command kept
        kept = f"; {exc}" if str(exc) else ""
        print(f"vw-robot {command}: interrupted{kept}", file=sys.stderr)
        return INTERRUPTED


def _run(command: str, overrides: list[str], *, multirun: bool, show_config: bool) -> int:
    config_name, job, _ = COMMANDS[command]
    if command == "study":  # its results record the command that made them
        job = functools.partial(job, command=_study_command(overrides))
    try:
        if multirun:
            return launch.run_sweep(command, config_name, job, overrides, show_config=show_config)
        cfg = load_config(command, overrides)
    except config_module.ConfigError as exc:
        print(f"vw-robot {command}: bad config: {exc}", file=sys.stderr)
        return 2
    except (HydraException, OmegaConfBaseException) as exc:
        print(f"vw-robot {command}: bad config: {launch.describe(exc)}", file=sys.stderr)
        return 2
    if show_config:
        print(OmegaConf.to_yaml(OmegaConf.structured(cfg)), end="")
        return 0
    return launch.call_job(command, job, cfg)


def _study_command(overrides: list[str]) -> str:
    """``vw-robot study NAME key=value ...`` as typed (the name positional)."""
    words = list(overrides)
    if words and words[0].startswith("study="):
        words[0] = words[0].removeprefix("study=")
    return shlex.join(["vw-robot", "study", *words])


if __name__ == "__main__":
    sys.exit(main())
