"""Compose a command's typed config and run its job: once, or as a Hydra sweep (``-m``).

A single run composes with Hydra's compose API: no folder of Hydra's, no ``.hydra``, no change
of directory. A sweep (``vw-robot eval -m seed=0,1,2``) goes through Hydra 1.3's own multirun
machinery: its basic sweeper expands the overrides into jobs (the cartesian product of the
comma-separated values) and the launcher picked with ``hydra/launcher=`` runs them (``basic``:
one after another in this process; ``joblib``, ``submitit_local`` and ``submitit_slurm`` with
the ``sweeps`` extra). Three things are added to what Hydra does:

- every job is composed, typed and validated before the first starts, so a bad value in the
  fifth combination fails at start naming its key, and nothing has run;
- each job writes its own folder: ``out`` defaults to the job's Hydra folder
  (``hydra.sweep.dir``/``hydra.sweep.subdir``), and an ``out=`` that two jobs would share
  is refused;
- a job that fails (exit status 1 or 2) does not stop the others; a summary of each job's
  overrides, exit status and folder ends the sweep and is written to ``<sweep dir>/sweep.json``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import importlib
import logging
import os
import re
import sys
import traceback
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from hydra import compose, initialize_config_module, version

# Hydra 1.3 has no public multirun entry but `hydra.main`, which owns argv and exit codes;
# these are the pieces `Hydra.multirun` is made of (hydra-core is pinned to 1.3).
from hydra._internal.callbacks import Callbacks
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.hydra import Hydra
from hydra._internal.utils import create_config_search_path
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.errors import HydraException
from hydra.types import HydraContext, RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from vw_robot.errors import ConfigError, DataProblems, UserError
from vw_robot.io import atomic_write_json
from vw_robot.provenance import provenance

CONFIG_MODULE = "vw_robot.configs"
VERSION_BASE = "1.3"
# Hydra settings a sweep starts from (the user's own hydra/... or hydra.* override wins).
# Hydra's logging would raise the root logger to INFO (every library's chatter) and give each
# job a log file: jobs log as single runs do instead. A job's folder holds what a single run's
# out holds, no .hydra: the sweep's multirun.yaml and sweep.json record it.
SWEEP_DEFAULTS = {
    "hydra/hydra_logging": "none",
    "hydra/job_logging": "none",
    "hydra.output_subdir": "null",
}
BASIC_SWEEPER = f"{BasicSweeper.__module__}.{BasicSweeper.__name__}"
# Named, not imported (see resolve): the typed schemas, registered in Hydra's ConfigStore before
# a YAML is composed, and the folder a job writes (a sweep's jobs must not share one).
REGISTER_SCHEMAS = "vw_robot.config:register_configs"
OUTPUT_FOLDER = "vw_robot.jobs:output_folder"

JobFn = Callable[[Any], Any]


def configure_logging() -> None:
    """Our progress lines at INFO; other libraries (PyOpenGL, robosuite) only from WARNING up,
    but Hydra's launchers' lines (``#0 : seed=0``) at INFO. Idempotent."""
    logging.basicConfig(
        level=logging.WARNING, format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S"
    )
    for name in ("vw_robot", "hydra", "hydra_plugins"):
        logging.getLogger(name).setLevel(logging.INFO)


def resolve(spec: str) -> Any:
    """The object a ``"module:name"`` spec names, its module imported now.

    The command line names its jobs and schemas this way rather than importing them: they
    import torch and the simulators (seconds on a busy machine), which ``vw-robot --help`` and
    ``COMMAND --help`` never need, nor ``--cfg`` beyond the schemas.
    """
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def register_schemas() -> None:
    """Register the typed schemas the YAML files name in their defaults lists (idempotent)."""
    resolve(REGISTER_SCHEMAS)()


def describe(exc: BaseException) -> str:
    """One line for a Hydra or OmegaConf error, with its cause (which often names the key)."""
    cause = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
    return f"{exc}{cause}".replace("\n", " ")


def parse_overrides(overrides: Sequence[str]) -> list[Override]:
    """Hydra's own parse of ``key=value`` arguments (raises on bad syntax)."""
    return OverridesParser.create().parse_overrides(list(overrides))


@functools.cache
def schema(config_name: str) -> type:
    """The dataclass that types ``<config_name>.yaml`` (the first entry of its defaults list)."""
    register_schemas()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base=VERSION_BASE):
        return OmegaConf.get_type(compose(config_name=config_name))


def check_keys(schema: type, overrides: Sequence[Override], *, sweep: bool) -> None:
    """Refuse an override whose key is not in ``schema``, naming it.

    Hydra refuses ``key=`` for an unknown key but adds ``+key=``, which the dataclass would then
    carry unused; both fail here. Hydra's own settings (``hydra.*``, ``hydra/...``) only mean
    something to a sweep, and are refused without ``-m``.
    """
    for override in overrides:
        key = override.key_or_group
        if override.is_hydra_override():
            if not sweep:
                raise ConfigError(f"{key}: Hydra's own settings apply to sweeps only; add -m")
            continue
        node: type | None = schema
        path: list[str] = []
        for part in key.split("."):
            assert node is not None
            names = [f.name for f in dataclasses.fields(node)]
            if part not in names:
                close = difflib.get_close_matches(part, names, n=1)
                hint = f" (did you mean {'.'.join([*path, close[0]])}?)" if close else ""
                raise ConfigError(f"{key}: not a config key{hint}; --cfg lists every key")
            path.append(part)
            node = _dataclass_in(typing.get_type_hints(node)[part])
            if node is None:  # a value, list or dict: Hydra checks what lies below
                break


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass a field holds (``X`` or ``Optional[X]``), or None for any other value."""
    candidates = [hint]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        candidates = list(typing.get_args(hint))
    for candidate in candidates:
        if isinstance(candidate, type) and dataclasses.is_dataclass(candidate):
            return candidate
    return None


def compose_config(config_name: str, overrides: Sequence[str]) -> DictConfig:
    """``<config_name>.yaml`` composed with ``overrides``, typed by its schema (a bad type or an
    unknown key fails here, naming it); mandatory values not given are still ``???``."""
    check_keys(schema(config_name), parse_overrides(overrides), sweep=False)
    with initialize_config_module(config_module=CONFIG_MODULE, version_base=VERSION_BASE):
        return compose(config_name=config_name, overrides=list(overrides))


def load_config(config_name: str, overrides: Sequence[str]) -> Any:
    """Compose ``<config_name>.yaml`` with ``overrides`` and return its typed config object."""
    return to_object(compose_config(config_name, overrides))


def config_yaml(config_name: str, overrides: Sequence[str]) -> str:
    """What ``--cfg`` prints: the composed config as YAML, interpolations resolved.

    Complete, it is the typed object's YAML (the dataclasses' own checks run first); with a
    mandatory value not given (``vw-robot data check --cfg``) it is the composition's, that
    value shown as ``???``, so every command can list its keys before it has them all.
    """
    cfg = compose_config(config_name, overrides)
    if OmegaConf.missing_keys(cfg):
        return OmegaConf.to_yaml(cfg, resolve=True)
    return OmegaConf.to_yaml(OmegaConf.structured(to_object(cfg)))


def to_object(cfg: DictConfig) -> Any:
    """The dataclass instance of a composed config; a dataclass's own check names its node."""
    try:
        return OmegaConf.to_object(cfg)
    except ValueError as exc:  # a dataclass's own validation; find which node raised it
        raise ConfigError(f"{_failing_node(cfg)}{exc}") from None


def _failing_node(cfg: Any, prefix: str = "") -> str:
    """Dotted path (with a trailing dot) of the deepest sub-config that fails to build."""
    for key, child in cfg.items_ex(resolve=False) if hasattr(cfg, "items_ex") else ():
        if isinstance(child, DictConfig):
            try:
                OmegaConf.to_object(child)
            except ValueError:
                return _failing_node(child, f"{prefix}{key}.")
    return prefix


def call_job(command: str, job: JobFn, cfg: Any) -> int:
    """Run ``job(cfg)``; return the exit status, printing one line for a user's mistake.

    0: done; 1: problems that ``data check`` listed; 2: a :class:`~vw_robot.errors.UserError`
    (a value, a missing file, a checkpoint that does not fit). Anything else is a bug and
    propagates with its traceback.
    """
    try:
        job(cfg)
    except DataProblems as exc:
        print(f"vw-robot {command}: {exc}", file=sys.stderr)
        return 1
    except UserError as exc:
        print(f"vw-robot {command}: {exc}", file=sys.stderr)
        return 2
    return 0


def run_sweep(
    command: str,
    config_name: str,
    job: JobFn,
    overrides: Sequence[str],
    *,
    show_config: bool = False,
) -> int:
    """Run ``job`` once per combination of the sweep ``overrides`` and print a summary.

    Args:
        command: the subcommand, for messages (``eval``, ``data check``).
        config_name: its YAML (``eval``, ``data_check``).
        job: the job function (:mod:`vw_robot.jobs`); a module-level function, so that the
            joblib and submitit launchers can pickle it.
        overrides: Hydra overrides, sweeps (``seed=0,1``) and Hydra's own (``hydra/launcher=``)
            included.
        show_config: print every job's config (with its ``out``) and run nothing.

    Returns:
        0 when every job succeeded, else the highest exit status of a job (see
        :func:`call_job`; a job that raised a bug counts 1).

    Raises:
        ConfigError: an unknown key, a job whose config does not type or validate (the
            message names the job and the key), two jobs with one output folder.
        HydraException: a bad override or a launcher that is not installed.
    """
    register_schemas()
    parsed = parse_overrides(overrides)
    check_keys(schema(config_name), parsed, sweep=True)
    given = {o.key_or_group for o in parsed}
    out_given = "out" in given
    arguments = [f"{k}={v}" for k, v in SWEEP_DEFAULTS.items() if k not in given]
    arguments += list(overrides)
    task = functools.partial(_sweep_job, command, job, out_given)
    version.setbase(VERSION_BASE)
    search_path = create_config_search_path(f"pkg://{CONFIG_MODULE}")
    hydra = Hydra.create_main_hydra2(task_name=config_name, config_search_path=search_path)
    saved = HydraConfig.instance().cfg
    try:
        master = hydra.compose_config(
            config_name, arguments, run_mode=RunMode.MULTIRUN, with_log_configuration=True
        )
        planned = _plan(hydra, master, out_given, incomplete=show_config)
        if show_config:
            for num, (job_overrides, cfg) in enumerate(planned):
                print(f"# job {num}: {' '.join(map(_shown, job_overrides))}")
                shown = cfg if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg)
                print(OmegaConf.to_yaml(shown), end="")
            return 0
        HydraConfig.instance().set_config(master)
        sweep_dir = str(master.hydra.sweep.dir)
        callbacks = Callbacks(master)
        callbacks.on_multirun_start(config=master, config_name=config_name)
        sweeper = Plugins.instance().instantiate_sweeper(
            config=master,
            hydra_context=HydraContext(config_loader=hydra.config_loader, callbacks=callbacks),
            task_function=task,
        )
        batches = sweeper.sweep(arguments=_task_overrides(master))
        callbacks.on_multirun_end(config=master, config_name=config_name)
    finally:
        HydraConfig.instance().cfg = saved
        GlobalHydra.instance().clear()
    returns = [ret for batch in batches for ret in batch]
    return _summarize(returns, sweep_dir, f"vw-robot {command} -m {' '.join(overrides)}")


def _plan(
    hydra: Hydra, master: DictConfig, out_given: bool, *, incomplete: bool = False
) -> list[tuple[list[str], Any]]:
    """Every job's overrides and typed, validated config, composed as the launchers compose
    them (``load_sweep_config``); refuses two jobs that would write one folder. With
    ``incomplete`` (``-m --cfg``) a job missing a mandatory value is kept as its composed
    config, resolved, the value shown as ``???``."""
    if OmegaConf.select(master, "hydra.sweeper._target_") != BASIC_SWEEPER:
        raise ConfigError(
            "hydra/sweeper: only Hydra's basic sweeper is supported (every job is checked "
            "before the first starts)"
        )
    params = OmegaConf.select(master, "hydra.sweeper.params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + _task_overrides(master)
    parser = OverridesParser.create(config_loader=hydra.config_loader)
    batches = BasicSweeper.split_arguments(parser.parse_overrides(arguments), None)
    planned: list[tuple[list[str], Any]] = []
    folders: dict[str, int] = {}
    for num, job_overrides in enumerate(o for batch in batches for o in batch):
        where = f"job {num} ({' '.join(job_overrides)})"
        try:
            sweep_cfg = hydra.config_loader.load_sweep_config(master, list(job_overrides))
            with open_dict(sweep_cfg):
                sweep_cfg.hydra.job.num = num
                sweep_cfg.hydra.job.id = str(num)
            HydraConfig.instance().set_config(sweep_cfg)  # ${hydra:job.num} in out= resolves
            task_cfg = copy.deepcopy(sweep_cfg)
            with read_write(task_cfg), open_dict(task_cfg):
                del task_cfg["hydra"]
            job_cfg = _with_job_folder(task_cfg, sweep_cfg.hydra, out_given)
            if incomplete and OmegaConf.missing_keys(job_cfg):  # resolved now: ${hydra:...}
                resolved = OmegaConf.to_container(job_cfg, resolve=True)
                planned.append((list(job_overrides), OmegaConf.create(resolved)))
                continue
            cfg = to_object(job_cfg)
            if hasattr(cfg, "validate"):
                cfg.validate()
        except UserError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        except (HydraException, OmegaConfBaseException) as exc:
            raise ConfigError(f"{where}: {describe(exc)}") from None
        folder = resolve(OUTPUT_FOLDER)(cfg)
        if folder is not None:
            other = folders.setdefault(os.path.abspath(folder), num)
            if other != num:
                raise ConfigError(
                    f"out: jobs {other} and {num} of the sweep would both write {folder}; "
                    "leave out unset (each job then writes its own folder under "
                    "hydra.sweep.dir) or make it differ per job, e.g. "
                    "'out=runs/sweep/${hydra:job.num}'"
                    + (" (or vary run_name)" if hasattr(cfg, "run_name") else "")
                )
        planned.append((list(job_overrides), cfg))
    return planned


def _task_overrides(master: DictConfig) -> list[str]:
    """The user's overrides as written: ``out=runs/${seed}`` resolves in each job, not here."""
    overrides = OmegaConf.to_container(master.hydra.overrides.task, resolve=False)
    assert isinstance(overrides, list)
    return [str(o) for o in overrides]


def job_folder(hydra_cfg: DictConfig) -> str:
    """A sweep job's Hydra folder, as Hydra's ``run_job`` makes it: sweep dir / subdir."""
    return os.path.join(str(hydra_cfg.sweep.dir), str(hydra_cfg.sweep.subdir))


def _with_job_folder(cfg: DictConfig, hydra_cfg: DictConfig, out_given: bool) -> DictConfig:
    """``cfg`` with ``out`` set to the job's Hydra folder, unless the user gave ``out=``."""
    if out_given or "out" not in cfg:
        return cfg
    cfg = copy.deepcopy(cfg)
    with read_write(cfg):
        cfg.out = job_folder(hydra_cfg)
    return cfg


def _sweep_job(command: str, job: JobFn, out_given: bool, cfg: DictConfig) -> dict[str, Any]:
    """One job of a sweep, in whichever process the launcher runs it (hence the logging)."""
    configure_logging()
    cfg = _with_job_folder(cfg, HydraConfig.get(), out_given)
    try:
        typed = to_object(cfg)
    except ConfigError as exc:
        print(f"vw-robot {command}: bad config: {exc}", file=sys.stderr)
        return {"status": 2, "out": None}
    except OmegaConfBaseException as exc:
        print(f"vw-robot {command}: bad config: {describe(exc)}", file=sys.stderr)
        return {"status": 2, "out": None}
    try:
        status = call_job(command, job, typed)
    except Exception:  # a bug: its traceback, and the other jobs still run
        traceback.print_exc()
        status = 1
    return {"status": status, "out": resolve(OUTPUT_FOLDER)(typed)}


def _summarize(returns: Sequence[JobReturn], sweep_dir: str, command_line: str) -> int:
    """Print one line per job (the overrides that vary, exit status, folder), write
    ``<sweep_dir>/sweep.json``; return the highest exit status."""
    rows = [
        {
            "job": num,
            "overrides": list(ret.overrides or []),
            "status": ret.return_value["status"],
            "out": ret.return_value["out"],
        }
        for num, ret in enumerate(returns)
    ]
    columns = list(zip(*(row["overrides"] for row in rows), strict=True))
    varying = [i for i, values in enumerate(columns) if len(set(values)) > 1]
    lines = [
        (
            str(row["job"]),
            str(row["status"]),
            row["out"] or "-",
            " ".join(_shown(row["overrides"][i]) for i in varying)
            or " ".join(map(_shown, row["overrides"])),
        )
        for row in rows
    ]
    header = ("job", "exit", "out", "overrides")
    widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(3)]
    failed = sum(row["status"] != 0 for row in rows)
    print(
        f"\nsweep: {len(rows)} job(s), {len(rows) - failed} succeeded, {failed} failed; "
        f"{os.path.join(sweep_dir, 'sweep.json')}"
    )
    for cells in [header, *lines]:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(cells, [*widths, 0], strict=True)))
    atomic_write_json(
        os.path.join(sweep_dir, "sweep.json"),
        {"command": command_line, "jobs": rows, "provenance": provenance()},
    )
    return max((row["status"] for row in rows), default=0)


def _shown(override: str) -> str:
    """An override as the user typed it: Hydra escapes ``${...}`` in the job's copy."""
    return re.sub(r"\\(.)", r"\1", override)
