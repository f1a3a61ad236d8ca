"""Command-line entry point ``vw-robot``.

Usage:
    vw-robot run                                   # main job on its built-in default
    vw-robot study tiny                            # a study: configs/study/tiny.yaml
    vw-robot eval policy=runs/demo/videoworld-100pct_seed0 tasks=[metaworld/reach-v3] workers=2
    vw-robot collect suite=metaworld/mt10 episodes_per_task=20 workers=2 out=data/mt10
    vw-robot data check data/mt10                  # validate every episode, modify nothing
    vw-robot data import my_videos/ out=data/mine task_id=my-task
    vw-robot data import-lerobot lerobot_ds/ out=data/from_lerobot camera_key=observation.image
    vw-robot data export-lerobot data/mt10 out=exports/mt10_lerobot
    vw-robot eval policy=expert suite=robosuite/all episodes_per_task=10 workers=2
    vw-robot eval tasks=[metaworld/reach-v3,metaworld/push-v3] policy=random
    vw-robot eval-chains policy=expert chains=50 single_episodes=10 workers=2
    vw-robot export-policy runs/demo/videoworld-100pct_seed0 out=policies/demo   # it moves
    vw-robot serve policy=runs/demo/videoworld-100pct_seed0 port=8765   # for another process
    vw-robot tasks suite=metaworld/mt10            # list task ids
    vw-robot run --cfg                             # print the composed config and exit
    vw-robot data                                  # the data subcommands
    vw-robot eval -m policy=random tasks=[metaworld/reach-v3] seed=0,1,2   # a sweep: 3 jobs
    vw-robot run -m experiment.action_head.label_fraction=1.0,0.25 hydra/launcher=joblib

Each subcommand is a Hydra config in ``vw_robot.configs`` (``run.yaml``, ...); arguments are
Hydra overrides (``key=value``); a key the command does not have fails at start. ``-m`` (or
``--multirun``) runs a Hydra sweep, one job per combination, each in its own folder
(:mod:`vw_robot.launch`); ``-m --cfg`` prints every job's config. A command names its job
(``module:function``), imported only to run it: ``vw-robot --help``, ``COMMAND --help`` and
``--cfg`` import no job (``benchmarks/bench_cli.py`` times them).
"""

from __future__ import annotations

import ast
import functools
import os
import shlex
import sys
from collections.abc import Sequence
from importlib import resources
from typing import Any, NamedTuple

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

# OpenMP threads that wait at a barrier sleep instead of spinning: on 2 shared cores spinning
# threads starve each other and the rollout workers (a head's training step measured 32 against
# 163 samples/s under load, and 264 against 293 on quieter cores; docs/benchmarks.md). Read
# when torch loads, so set before any job imports it; a value the user set stays.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import vw_robot  # noqa: E402, F401  (headless GL backend before any simulator import)
from vw_robot import launch
from vw_robot.errors import ConfigError
from vw_robot.provenance import git_revision


class Command(NamedTuple):
    """One subcommand. Its job is named, not imported: the jobs import torch and the
    simulators (seconds), which ``--help`` and ``--cfg`` never need."""

    config: str  # its YAML in vw_robot.configs (``data_check`` for ``data check``)
    job: str  # ``module:function`` called with the typed config (:func:`launch.resolve`)
    help: str  # one line; ``{stages}`` is replaced by the training stages


COMMANDS: dict[str, Command] = {
    "run": Command(
        "run", "vw_robot.jobs:run", "main job: demos -> every stage -> evaluation -> report"
    ),
    "study": Command(
        "study",
        "vw_robot.study:run_study",
        "a study from configs/study: study NAME (heads x labels x seeds, results JSON)",
    ),
    "eval": Command(
        "eval",
        "vw_robot.jobs:evaluate",
        "evaluate a policy (expert, random, checkpoint) on tasks",
    ),
    "eval-chains": Command(
        "eval_chains", "vw_robot.jobs:eval_chains", "playground chains (CALVIN protocol) + subtasks"
    ),
    "tasks": Command("tasks", "vw_robot.jobs:tasks", "list suites and task ids"),
    "collect": Command(
        "collect", "vw_robot.jobs:collect", "record expert demonstrations into a dataset"
    ),
    "data check": Command(
        "data_check", "vw_robot.jobs:data_check", "validate a dataset: data check DIR"
    ),
    "data import": Command(
        "data_import", "vw_robot.jobs:data_import", "plain videos -> dataset: data import SRC"
    ),
    "data import-lerobot": Command(
        "data_import_lerobot",
        "vw_robot.jobs:data_import_lerobot",
        "LeRobotDataset -> dataset: data import-lerobot SRC out=DIR",
    ),
    "data export-lerobot": Command(
        "data_export_lerobot",
        "vw_robot.jobs:data_export_lerobot",
        "dataset -> LeRobotDataset v3.0: data export-lerobot DIR out=DST",
    ),
    "data check-lerobot": Command(
        "data_check_lerobot",
        "vw_robot.jobs:data_check_lerobot",
        "validate a LeRobotDataset v3.0: data check-lerobot DIR",
    ),
    "train": Command("train", "vw_robot.jobs:train", "train a stage: stage={stages}"),
    "export-codes": Command(
        "export_codes", "vw_robot.jobs:export_codes", "label a dataset with tokens and codes"
    ),
    "serve": Command(
        "serve",
        "vw_robot.jobs:serve",
        "serve a policy over a websocket: policy=... host= port=",
    ),
    "export-policy": Command(
        "export_policy",
        "vw_robot.jobs:export_policy",
        "a policy folder that moves: RUN/videoworld-100pct_seed0 out=DIR",
    ),
}
# Words that group subcommands: `vw-robot data` lists the `data ...` ones.
GROUPS = tuple(dict.fromkeys(name.split()[0] for name in COMMANDS if " " in name))
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
# The module that declares the training stages (STAGES), read by `train`'s help.
STAGES_SOURCE = ("vw_robot.training", "stages.py")


# Subcommands that cannot be swept: a server runs until it is stopped.
NO_SWEEP = {"serve"}
# The exit status of a command stopped by Ctrl-C: 128 + SIGINT, as shells report it.
INTERRUPTED = 130
FLAGS = ("--cfg", "-m", "--multirun")
HELP = ("-h", "--help", "help")


@functools.cache
def stage_names() -> tuple[str, ...]:
    """The training stages, in the order :data:`vw_robot.training.stages.STAGES` declares them.

    Read from that module's source (each ``Stage("name", ...)`` in the ``STAGES`` assignment),
    not imported: it imports torch, and ``vw-robot --help`` answers without it. A test checks
    the list against ``STAGES`` itself.
    """
    package, name = STAGES_SOURCE
    tree = ast.parse(resources.files(package).joinpath(name).read_text())
    names: list[str] = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if not any(isinstance(t, ast.Name) and t.id == "STAGES" for t in targets):
            continue
        for call in ast.walk(node):
            if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Stage":
                given = [*call.args[:1], *(k.value for k in call.keywords if k.arg == "name")]
                names += [a.value for a in given if isinstance(a, ast.Constant)]
    return tuple(names)


def _help_line(command: str) -> str:
    help_ = COMMANDS[command].help
    return help_.format(stages="|".join(stage_names())) if "{stages}" in help_ else help_


def _listing(rows: dict[str, str]) -> list[str]:
    """One line per ``label: command``: the label, padded to one width, and the command's help."""
    width = max(map(len, rows))
    return [f"  {label:<{width}}  {_help_line(command)}" for label, command in rows.items()]


def _usage() -> str:
    lines = ["usage: vw-robot COMMAND [key=value ...] [--cfg] [-m]", "", "commands:"]
    lines += _listing({name: name for name in COMMANDS})
    lines += [
        "",
        "Overrides are Hydra syntax; `vw-robot COMMAND --help` describes every key and",
        "`vw-robot COMMAND --cfg` prints the composed config.",
        "-m (--multirun) sweeps: `vw-robot eval -m seed=0,1,2` runs 3 jobs, each in its own out.",
    ]
    return "\n".join(lines)


def _group_usage(group: str) -> str:
    """``vw-robot data``: its subcommands, each with its line."""
    rows = {name.split(" ", 1)[1]: name for name in COMMANDS if name.startswith(f"{group} ")}
    lines = [f"usage: vw-robot {group} SUBCOMMAND [key=value ...] [--cfg] [-m]", ""]
    lines += [f"{group} subcommands:", *_listing(rows)]
    lines += ["", f"`vw-robot {group} SUBCOMMAND --help` describes its keys."]
    return "\n".join(lines)


def _command_help(command: str) -> str:
    """One command's help: its line from the usage, then its YAML (every key, its default and
    what it does)."""
    config_name = COMMANDS[command].config
    source = resources.files(launch.CONFIG_MODULE).joinpath(f"{config_name}.yaml").read_text()
    return (
        f"usage: vw-robot {command} [key=value ...] [--cfg] [-m]\n\n{_help_line(command)}\n\n"
        f"Keys (configs/{config_name}.yaml; `vw-robot {command} --cfg` prints the composed "
        f"config):\n\n{source.rstrip()}"
    )


def load_config(command: str, overrides: Sequence[str]) -> Any:
    """Compose the command's YAML with overrides and return its typed config object."""
    return launch.load_config(COMMANDS[command].config, overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, return the exit status.

    A mistake in what the user gave (:class:`~vw_robot.errors.UserError`: a config value, a
    missing file, a checkpoint that does not fit) prints one line and returns 2; problems that
    ``data check`` listed return 1; anything else is a bug and keeps its traceback. A sweep
    (``-m``) returns 0 when every job succeeded, else the highest status of its jobs. Ctrl-C
    prints one line, with what was kept (:class:`~vw_robot.errors.Interrupted`), and returns
    130. Help (``vw-robot``, ``vw-robot data``, ``COMMAND --help``) and ``--cfg`` import no job.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in HELP:
        print(_usage())
        return 0
    command, args = argv[0], argv[1:]
    if command in GROUPS:
        if not args or args[0] in HELP:
            print(_group_usage(command))
            return 0
        command, args = f"{command} {args[0]}", args[1:]
    if command not in COMMANDS:
        group = command.split()[0]
        usage = _group_usage(group) if group in GROUPS else _usage()
        print(f"vw-robot: unknown command {command!r}.\n\n{usage}", file=sys.stderr)
        return 2
    if "-h" in args or "--help" in args:
        print(_command_help(command))
        return 0
    show_config = "--cfg" in args
    multirun = "-m" in args or "--multirun" in args
    overrides = [a for a in args if a not in FLAGS]
    if command in POSITIONAL and overrides and "=" not in overrides[0]:
        overrides = [f"{POSITIONAL[command]}={overrides[0]}", *overrides[1:]]
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
    config_name = COMMANDS[command].config
    try:
        if show_config and not multirun:  # mandatory values not given yet show as ???
            print(launch.config_yaml(config_name, overrides), end="")
            return 0
        job = launch.resolve(COMMANDS[command].job)
        if command == "study":  # its results record the command that made them
            job = functools.partial(job, command=_study_command(overrides))
        if multirun:
            return launch.run_sweep(command, config_name, job, overrides, show_config=show_config)
        cfg = load_config(command, overrides)
    except ConfigError as exc:
        print(f"vw-robot {command}: bad config: {exc}", file=sys.stderr)
        return 2
    except (HydraException, OmegaConfBaseException) as exc:
        print(f"vw-robot {command}: bad config: {launch.describe(exc)}", file=sys.stderr)
        return 2
    git_revision()  # the code this job starts with is what its results record
    return launch.call_job(command, job, cfg)


def _study_command(overrides: list[str]) -> str:
    """``vw-robot study NAME key=value ...`` as typed (the name positional)."""
    words = list(overrides)
    if words and words[0].startswith("study="):
        words[0] = words[0].removeprefix("study=")
    return shlex.join(["vw-robot", "study", *words])


if __name__ == "__main__":
    sys.exit(main())
