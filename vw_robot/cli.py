"""Command-line entry point ``vw-robot``.

Usage:
    vw-robot run                                   # main job on its built-in default
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

Each subcommand is a Hydra config in ``vw_robot.configs`` (``run.yaml``, ...); arguments are
Hydra overrides (``key=value``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import vw_robot  # noqa: F401  (headless GL backend before any simulator import)
from vw_robot import config as config_module
from vw_robot import jobs
from vw_robot.errors import UserError

# subcommand -> (config name, job, one-line help)
COMMANDS: dict[str, tuple[str, Callable[[Any], Any], str]] = {
    "run": ("run", jobs.run, "main job: demos -> every stage -> evaluation -> report"),
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
}


def _usage() -> str:
    lines = ["usage: vw-robot COMMAND [key=value ...] [--cfg]", "", "commands:"]
    lines += [f"  {name:<12} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "Overrides are Hydra syntax; `vw-robot COMMAND --cfg` shows every key."]
    return "\n".join(lines)


def load_config(command: str, overrides: Sequence[str]) -> Any:
    """Compose the command's YAML with overrides and return its typed config object."""
    config_module.register_configs()
    with initialize_config_module(config_module="vw_robot.configs", version_base="1.3"):
        cfg = compose(config_name=COMMANDS[command][0], overrides=list(overrides))
    try:
        return OmegaConf.to_object(cfg)
    except ValueError as exc:  # a dataclass's own validation; find which node raised it
        raise config_module.ConfigError(f"{_failing_node(cfg)}{exc}") from None


def _failing_node(cfg: Any, prefix: str = "") -> str:
    """Dotted path (with a trailing dot) of the deepest sub-config that fails to build."""
    for key, child in cfg.items_ex(resolve=False) if hasattr(cfg, "items_ex") else ():
        if isinstance(child, DictConfig):
            try:
                OmegaConf.to_object(child)
            except ValueError:
                return _failing_node(child, f"{prefix}{key}.")
    return prefix


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, return the exit status.

    A mistake in what the user gave (:class:`~vw_robot.errors.UserError`: a config value, a
    missing file, a checkpoint that does not fit) prints one line and returns 2; problems that
    ``data check`` listed return 1; anything else is a bug and keeps its traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    command, overrides = argv[0], argv[1:]
    if command == "data" and overrides and f"data {overrides[0]}" in COMMANDS:
        command, overrides = f"data {overrides[0]}", overrides[1:]
    if command in POSITIONAL and overrides and "=" not in overrides[0] and overrides[0] != "--cfg":
        overrides = [f"{POSITIONAL[command]}={overrides[0]}", *overrides[1:]]
    if command not in COMMANDS:
        print(f"vw-robot: unknown command {command!r}.\n\n{_usage()}", file=sys.stderr)
        return 2
    show_config = "--cfg" in overrides
    overrides = [o for o in overrides if o != "--cfg"]
    # Our progress lines at INFO; other libraries (PyOpenGL, robosuite) only from WARNING up.
    logging.basicConfig(
        level=logging.WARNING, format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S"
    )
    logging.getLogger("vw_robot").setLevel(logging.INFO)
    try:
        cfg = load_config(command, overrides)
    except config_module.ConfigError as exc:
        print(f"vw-robot {command}: bad config: {exc}", file=sys.stderr)
        return 2
    except (HydraException, OmegaConfBaseException) as exc:
        cause = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
        print(f"vw-robot {command}: bad config: {exc}{cause}".replace("\n", " "), file=sys.stderr)
        return 2
    if show_config:
        print(OmegaConf.to_yaml(OmegaConf.structured(cfg)), end="")
        return 0
    try:
        COMMANDS[command][1](cfg)
    except jobs.DataProblems as exc:
        print(f"vw-robot {command}: {exc}", file=sys.stderr)
        return 1
    except UserError as exc:
        print(f"vw-robot {command}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
