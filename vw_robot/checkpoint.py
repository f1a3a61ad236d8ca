"""Checkpoints that load without unpickling anything, and resume a run exactly.

A checkpoint is a folder::

    <run>/checkpoints/step_00000100/
        model.safetensors        weights
        trainer.safetensors      optimizer tensors (Adam moments...) and the torch RNG state
        trainer.json             step, optimizer scalars/param groups, numpy/python RNG state
        config.yaml              the resolved config of the run
        info.json                stage, step, parent checkpoints this stage was built on,
                                 model class and config, checksums of the other files
    <run>/checkpoints/last.json  {"path": "step_00000100"}: the newest complete checkpoint
    <run>/checkpoints/selected.json  {"path": ..., "val_loss": ...}: written when a run chose
                                 its checkpoint by validation loss; loading the run folder
                                 takes it (resuming training still starts from last.json)
    <run>/.run.lock              held by the process training into the run (its PID inside):
                                 a second one is refused (:func:`run_folder_lock`)

The folder is written under a temporary name and renamed into place, and ``last.json`` is
replaced atomically after it, so a kill at any moment leaves the previous checkpoint intact.

A file damaged later (a full disk, a copy cut short, bit rot) is refused by name with what is
wrong, and the message lists the run's other checkpoints that verify
(:func:`verify_checkpoint`) and how to resume from the newest of them (:func:`damaged`).

Parents are stored relative to the checkpoint folder itself (``info.json`` ``"format": 2``),
so a run folder moved whole, or a policy folder exported by ``vw-robot export-policy``, still
finds them from any working directory. Checkpoints written before that (no ``format``) named
their parents relative to the directory training ran in; they load from that directory and
are refused elsewhere with a message saying so.

This module sits at the bottom of the layers (it needs only torch, numpy and safetensors):
building a model from a checkpoint (:mod:`vw_robot.models.registry`) and acting
(:mod:`vw_robot.policies`) read checkpoints without importing the training loop.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from vw_robot.errors import DiskFullError, UserError
from vw_robot.io import (
    LockHeldError,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    folder_lock,
    is_disk_full,
    sha256_file,
)

CHECKPOINTS_DIR = "checkpoints"
LAST_FILE = "last.json"
SELECTED_FILE = "selected.json"
MODEL_FILE = "model.safetensors"
TRAINER_TENSORS = "trainer.safetensors"
TRAINER_JSON = "trainer.json"
CONFIG_FILE = "config.yaml"
INFO_FILE = "info.json"
RUN_LOCK = ".run.lock"
# 2: parents relative to the checkpoint folder; absent (1): relative to the training cwd.
FORMAT = 2
# Checksummed in info.json "files" (model.safetensors has its own "model_sha256").
CHECKSUMMED = (TRAINER_TENSORS, TRAINER_JSON, CONFIG_FILE)
# How many intact checkpoints a message about a damaged one lists (newest first).
INTACT_LISTED = 3


class CheckpointError(UserError):
    """A checkpoint is missing, incomplete, or does not fit what asks for it."""


class RunFolderBusyError(UserError):
    """Another process is training into the run folder."""


@contextlib.contextmanager
def run_folder_lock(run_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the run folder while this process writes it (checkpoints, ``metrics.csv``).

    Two trainings into one folder would interleave their checkpoints and metrics; the second
    is refused instead. The lock ends with its process, however it ends; a lock file a killed
    run left is taken over, with a log line naming its PID (:func:`vw_robot.io.folder_lock`).

    Raises:
        RunFolderBusyError: another process holds it (its PID named).
    """
    held = contextlib.ExitStack()
    try:
        held.enter_context(folder_lock(run_dir, RUN_LOCK, wait=False))
    except LockHeldError as exc:
        raise RunFolderBusyError(
            f"{run_dir}: {exc.holder} is training into this run folder; wait for it to "
            "finish, or train into another one (run_name=... or another out=)."
        ) from None
    with held:
        yield


@dataclass
class CheckpointInfo:
    """What a checkpoint says about itself (``info.json``)."""

    path: Path
    stage: str
    step: int
    model_class: str
    model_config: dict[str, Any]
    parents: dict[str, Path]  # stage -> checkpoint folder this one was built on (resolved)
    model_sha256: str
    format: int = FORMAT  # 1: a checkpoint whose parents were stored relative to the cwd


def _split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state -> (flat tensors, JSON-able rest)."""
    tensors: dict[str, torch.Tensor] = {}
    rest_state: dict[str, dict[str, Any]] = {}
    for param_id, entries in state["state"].items():
        rest_state[str(param_id)] = {}
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optim.{param_id}.{name}"] = value.detach().cpu().contiguous()
            else:
                rest_state[str(param_id)][name] = value
    return tensors, {"state": rest_state, "param_groups": state["param_groups"]}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], rest: dict) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in rest["state"].items()}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, param_id, name = key.split(".", 2)
            state.setdefault(int(param_id), {})[name] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def save_checkpoint(
    run_dir: str | os.PathLike[str],
    *,
    stage: str,
    step: int,
    model: torch.nn.Module,
    model_config: dict[str, Any],
    config_yaml: str,
    optimizer: torch.optim.Optimizer | None = None,
    parents: dict[str, str | os.PathLike[str]] | None = None,
    extra_info: dict[str, Any] | None = None,
    trainer_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a complete checkpoint atomically and point ``last.json`` at it.

    Args:
        run_dir: the run folder (checkpoints go to ``run_dir/checkpoints``).
        stage: stage name (tokenizer, ldm, transformer, action_head...).
        step: optimizer steps taken.
        model: the model (unwrapped from DDP).
        model_config: the model's config as a plain dict (rebuilds the model).
        config_yaml: the run's resolved config.
        optimizer: saved with the RNG states for exact resume (None for export-only saves).
        parents: stage -> checkpoint folder this stage was built on (any path that exists
            from here; it is stored relative to the new checkpoint).
        extra_info: more JSON-able facts for info.json (e.g. ``val_loss``).
        trainer_tensors: more tensors a resume needs (with ``optimizer``), e.g. the raw
            weights when ``model`` holds their moving average; names start with ``extra.``.

    Returns:
        The checkpoint folder.

    Raises:
        DiskFullError: the device is full; the message names the file and the run's last
            checkpoint, which is kept.
    """
    root = Path(run_dir) / CHECKPOINTS_DIR
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp_step_{step:08d}_{os.getpid()}"
    try:
        _write_checkpoint(
            root,
            final,
            tmp,
            stage=stage,
            step=step,
            model=model,
            model_config=model_config,
            config_yaml=config_yaml,
            optimizer=optimizer,
            parents=parents,
            extra_info=extra_info,
            trainer_tensors=trainer_tensors,
        )
        atomic_write_json(root / LAST_FILE, {"path": final.name, "step": step})
    except (DiskFullError, OSError) as exc:
        if isinstance(exc, DiskFullError):
            file = Path(exc.path or tmp)
        elif is_disk_full(exc):
            file = Path(exc.filename or tmp)
        else:
            raise
        # Its temporary folder is gone: name the checkpoint, and the file it was writing.
        where = final if tmp in (file, file.parent) else file
        raise DiskFullError(
            f"{where}: not written, no space left on the device (writing {file.name}); "
            + _kept_checkpoint(run_dir),
            str(file),
        ) from None
    return final


def _kept_checkpoint(run_dir: str | os.PathLike[str]) -> str:
    """What a failed save leaves: the run's last checkpoint, which a rerun resumes from."""
    try:
        kept = latest_checkpoint(run_dir)
    except CheckpointError:
        kept = None
    if kept is None:
        return "no checkpoint of this run is on disk yet."
    return (
        f"the last good checkpoint is kept: {kept} (free some space and run the same command "
        "to resume from it)."
    )


def _write_checkpoint(
    root: Path,
    final: Path,
    tmp: Path,
    *,
    stage: str,
    step: int,
    model: torch.nn.Module,
    model_config: dict[str, Any],
    config_yaml: str,
    optimizer: torch.optim.Optimizer | None,
    parents: dict[str, str | os.PathLike[str]] | None,
    extra_info: dict[str, Any] | None,
    trainer_tensors: dict[str, torch.Tensor] | None,
) -> None:
    """:func:`save_checkpoint`'s folder: written into ``tmp``, then renamed to ``final``."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_tensors(weights, tmp / MODEL_FILE)
        if optimizer is not None:
            tensors, rest = _split_optimizer_state(optimizer.state_dict())
            for key, value in (trainer_tensors or {}).items():
                if not key.startswith("extra."):
                    raise ValueError(f"trainer tensor {key!r}: names must start with 'extra.'")
                tensors[key] = value.detach().cpu().contiguous()
            tensors["rng.torch"] = torch.get_rng_state()
            if torch.cuda.is_available():
                for i, s in enumerate(torch.cuda.get_rng_state_all()):
                    tensors[f"rng.cuda.{i}"] = s
            save_tensors(tensors, tmp / TRAINER_TENSORS)
            np_state = np.random.get_state(legacy=False)
            np_state["state"]["key"] = np_state["state"]["key"].tolist()  # JSON, not pickle
            atomic_write_json(
                tmp / TRAINER_JSON,
                {
                    "step": step,
                    "optimizer": rest,
                    "rng_numpy": np_state,
                    "rng_python": list(_python_rng_state()),
                },
            )
        atomic_write_text(tmp / CONFIG_FILE, config_yaml)
        atomic_write_json(
            tmp / INFO_FILE,
            {
                "stage": stage,
                "step": step,
                "model_class": type(model).__name__,
                "model_config": model_config,
                "format": FORMAT,
                "parents": relative_parents(parents or {}, final),
                "model_sha256": sha256_file(tmp / MODEL_FILE),
                "files": {
                    name: sha256_file(tmp / name) for name in CHECKSUMMED if (tmp / name).exists()
                },
                **(extra_info or {}),
            },
        )
        if final.exists():  # re-saving the same step (e.g. after a resume): replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_tensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike[str]) -> None:
    """Write ``tensors`` as a safetensors file, atomically and with the umask's mode.

    ``safetensors.torch.save_file`` creates its file 0600, so a run shared with other users
    (or a policy folder copied from it) would be unreadable to them; every other file follows
    the umask (0644 under 022), and so do these.
    """
    data = save(tensors)
    atomic_write(path, lambda f: f.write(data))


def relative_parents(
    parents: dict[str, str | os.PathLike[str]], folder: str | os.PathLike[str]
) -> dict[str, str]:
    """Parents as POSIX paths relative to the checkpoint ``folder`` that records them.

    Raises:
        CheckpointError: a parent that is not a checkpoint.
    """
    base = Path(os.path.abspath(folder))
    out = {}
    for stage, parent in parents.items():
        target = Path(os.path.abspath(resolve_checkpoint(parent)))
        out[stage] = Path(os.path.relpath(target, base)).as_posix()
    return out


def _python_rng_state() -> tuple:
    version, internal, gauss = random.getstate()
    return version, list(internal), gauss


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint of a run, or None when it has none."""
    pointer = Path(run_dir) / CHECKPOINTS_DIR / LAST_FILE
    if not pointer.exists():
        return None
    try:
        path = Path(run_dir) / CHECKPOINTS_DIR / json.loads(pointer.read_text())["path"]
    except (json.JSONDecodeError, KeyError, TypeError, OSError, UnicodeDecodeError) as exc:
        raise damaged(pointer, f"unreadable ({_describe(exc)})") from None
    if not (path / INFO_FILE).exists():
        raise damaged(pointer, f"points at {path}, which is missing or incomplete")
    return path


def select_checkpoint(run_dir: str | os.PathLike[str], key: str = "val_loss") -> Path | None:
    """Point ``selected.json`` at the run's checkpoint with the lowest ``key`` in its info.json
    (ties: the later step); None when no checkpoint records it."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    scored = []
    for folder in sorted(root.glob("step_*")):
        try:
            info = json.loads((folder / INFO_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(info.get(key), (int, float)):
            scored.append((info[key], -int(info["step"]), folder))
    if not scored:
        return None
    value, _, best = min(scored)
    atomic_write_json(root / SELECTED_FILE, {"path": best.name, key: value})
    return best


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """Accept a checkpoint folder, a run folder or ``.../last``.

    A run folder gives the checkpoint its training selected (``selected.json``, chosen by
    validation loss) when it has one, else its last checkpoint; ``.../last`` always the last.
    """
    path = Path(path)
    if path.name == "last":
        path = path.parent.parent if path.parent.name == CHECKPOINTS_DIR else path.parent
        latest = latest_checkpoint(path)
        if latest is None:
            raise CheckpointError(
                f"{path}: no checkpoint there (no {CHECKPOINTS_DIR}/{LAST_FILE})."
            )
        return latest
    if (path / INFO_FILE).exists():
        return path
    selected = path / CHECKPOINTS_DIR / SELECTED_FILE
    if selected.exists():
        try:
            chosen = path / CHECKPOINTS_DIR / json.loads(selected.read_text())["path"]
        except (json.JSONDecodeError, KeyError, OSError, TypeError, UnicodeDecodeError) as exc:
            raise damaged(selected, f"unreadable ({_describe(exc)})") from None
        if (chosen / INFO_FILE).exists():
            return chosen
        raise damaged(selected, f"points at {chosen}, which is missing or incomplete")
    latest = latest_checkpoint(path)
    if latest is None:
        raise CheckpointError(
            f"{path}: no checkpoint there (no {INFO_FILE} nor {CHECKPOINTS_DIR}/{LAST_FILE})."
        )
    return latest


def read_info(path: str | os.PathLike[str], *, stage: str | None = None) -> CheckpointInfo:
    """Read a checkpoint's ``info.json``; with ``stage``, refuse a checkpoint of another stage.

    Raises:
        CheckpointError: missing/malformed, or of another stage (both named).
    """
    path = resolve_checkpoint(path)
    info, fault = _read_info_json(path)
    if info is None:
        raise damaged(path / INFO_FILE, fault)
    if stage is not None and info.get("stage") != stage:
        raise CheckpointError(
            f"{path}: is a {info.get('stage')!r} checkpoint, but a {stage!r} checkpoint is "
            "needed here."
        )
    version = int(info.get("format", 1))
    if version > FORMAT:
        raise CheckpointError(
            f"{path / INFO_FILE}: format {version} is newer than this vw_robot reads "
            f"({FORMAT}); upgrade vw_robot."
        )
    stored = dict(info.get("parents") or {})
    if version >= 2:
        parents = {k: Path(os.path.normpath(path / v)) for k, v in stored.items()}
    else:  # written relative to the cwd of the training run
        parents = {k: Path(v) for k, v in stored.items()}
    return CheckpointInfo(
        path,
        info["stage"],
        int(info["step"]),
        info["model_class"],
        info["model_config"],
        parents,
        info["model_sha256"],
        version,
    )


def parent_checkpoint(info: CheckpointInfo, stage: str) -> Path:
    """The checkpoint folder ``info`` was built on for ``stage``, checked to exist.

    Raises:
        CheckpointError: no such parent recorded, or it is missing on disk (with why: a moved
            folder, an old checkpoint read from another directory).
    """
    if stage not in info.parents:
        raise CheckpointError(
            f"{info.path}: records no {stage} checkpoint (parents: "
            f"{', '.join(info.parents) or 'none'})."
        )
    parent = info.parents[stage]
    if (parent / INFO_FILE).exists() or (parent / CHECKPOINTS_DIR / LAST_FILE).exists():
        return parent
    if info.format < 2:
        raise CheckpointError(
            f"{info.path}: was written by an older vw_robot that named its {stage} checkpoint "
            f"relative to the directory training ran in ({parent}), which is not found from "
            f"{Path.cwd()}; run from that directory, or retrain the stage to get a checkpoint "
            "that can be moved."
        )
    raise CheckpointError(
        f"{info.path}: was built on the {stage} checkpoint {parent}, which is missing (a run "
        f"folder must be moved whole; `vw-robot export-policy` makes a self-contained "
        f"folder); rebuild it with `vw-robot train stage={stage}`."
    )


def load_weights(path: str | os.PathLike[str], *, verify: bool = True) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors (safetensors only: nothing is unpickled)."""
    path = resolve_checkpoint(path)
    if verify:
        fault = _file_fault(path / MODEL_FILE, read_info(path).model_sha256)
        if fault is not None:
            raise damaged(path / MODEL_FILE, fault)
    return _load_tensors(path / MODEL_FILE)


def load_trainer_state(
    path: str | os.PathLike[str],
    optimizer: torch.optim.Optimizer,
    extra: dict[str, torch.Tensor] | None = None,
) -> int:
    """Restore optimizer and RNG states from a checkpoint; return its step. The tensors
    saved as ``trainer_tensors`` are put into ``extra`` (when given).

    Raises:
        CheckpointError: a trainer file is missing, cut short, garbled or differs from the
            checksum ``info.json`` records (named, with the run's intact checkpoints).
    """
    path = resolve_checkpoint(path)
    sums = _recorded_files(path)
    for name in (TRAINER_TENSORS, TRAINER_JSON):
        fault = _file_fault(path / name, sums.get(name), trainer=True)
        if fault is not None:
            raise damaged(path / name, fault)
    tensors = _load_tensors(path / TRAINER_TENSORS)
    meta, fault = _read_trainer_json(path / TRAINER_JSON)
    if meta is None:
        raise damaged(path / TRAINER_JSON, fault)
    if "rng.torch" not in tensors:
        raise damaged(path / TRAINER_TENSORS, "holds no rng.torch tensor")
    optimizer.load_state_dict(_join_optimizer_state(tensors, meta["optimizer"]))
    if extra is not None:
        extra.update({k: v for k, v in tensors.items() if k.startswith("extra.")})
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    np_state = meta["rng_numpy"]
    np_state["state"]["key"] = np.asarray(np_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(np_state)
    version, internal, gauss = meta["rng_python"]
    random.setstate((version, tuple(internal), gauss))
    return int(meta["step"])


def read_config_text(path: str | os.PathLike[str]) -> str:
    """The run config stored in a checkpoint (``config.yaml``), checked against its checksum.

    Raises:
        CheckpointError: the file is missing, unreadable or changed (named, with the run's
            intact checkpoints).
    """
    path = resolve_checkpoint(path)
    fault = _file_fault(path / CONFIG_FILE, _recorded_files(path).get(CONFIG_FILE))
    if fault is None:
        try:
            return (path / CONFIG_FILE).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            fault = f"unreadable ({_describe(exc)})"
    raise damaged(path / CONFIG_FILE, fault)


def verify_checkpoint(path: str | os.PathLike[str]) -> str | None:
    """The first fault of the checkpoint folder ``path`` (``"<file>: <what>"``), or None.

    Checked: ``info.json`` parses and has its keys; ``model.safetensors`` matches its checksum;
    the trainer files and ``config.yaml`` match theirs where ``info.json`` records them (older
    checkpoints: the trainer files parse). Reads each file once.
    """
    path = Path(path)
    info, fault = _read_info_json(path)
    if info is None:
        return f"{path / INFO_FILE}: {fault}"
    sums = info.get("files") if isinstance(info.get("files"), dict) else {}
    expected = {MODEL_FILE: info["model_sha256"], **{n: sums.get(n) for n in CHECKSUMMED}}
    for name, digest in expected.items():
        if name != MODEL_FILE and digest is None and not (path / name).exists():
            continue  # never written (a checkpoint saved without its optimizer)
        fault = _file_fault(path / name, digest)
        if fault is None and digest is None and name == TRAINER_TENSORS:
            fault = _tensors_fault(path / name)
        if fault is None and digest is None and name == TRAINER_JSON:
            fault = _read_trainer_json(path / name)[1] or None
        if fault is not None:
            return f"{path / name}: {fault}"
    return None


def intact_checkpoints(
    checkpoints: str | os.PathLike[str], *, exclude: str | os.PathLike[str] | None = None
) -> tuple[list[Path], bool]:
    """The newest :data:`INTACT_LISTED` checkpoints in a run's ``checkpoints/`` folder that
    :func:`verify_checkpoint` passes (newest first), and whether older ones went unchecked."""
    folders = sorted(
        (p for p in Path(checkpoints).glob("step_*") if p.is_dir()),
        key=lambda p: p.name,
        reverse=True,
    )
    skip = Path(exclude).resolve() if exclude is not None else None
    folders = [p for p in folders if p.resolve() != skip]
    intact: list[Path] = []
    for folder in folders:
        if len(intact) == INTACT_LISTED:
            return intact, True
        if verify_checkpoint(folder) is None:
            intact.append(folder)
    return intact, False


def damaged(file: str | os.PathLike[str], fault: str) -> CheckpointError:
    """A :class:`CheckpointError` for a damaged checkpoint file: its path and what is wrong,
    and for a file of a run's checkpoints the run's checkpoints that verify and how to resume
    from the newest of them."""
    file = Path(file)
    message = f"{file}: {fault}."
    if file.parent.name == CHECKPOINTS_DIR:  # last.json, selected.json
        checkpoints, exclude = file.parent, None
    elif file.parent.parent.name == CHECKPOINTS_DIR:  # step_*/<file>
        checkpoints, exclude = file.parent.parent, file.parent
    else:
        return CheckpointError(message)
    intact, more = intact_checkpoints(checkpoints, exclude=exclude)
    if not intact:
        return CheckpointError(
            f"{message} No other checkpoint of this run verifies; train again in a new run "
            "folder (or delete this one)."
        )
    newest = intact[0]
    info, _ = _read_info_json(newest)
    pointer = json.dumps({"path": newest.name, "step": info["step"]})
    names = ", ".join(p.name for p in intact) + (" (older ones not checked)" if more else "")
    return CheckpointError(
        f"{message} Intact checkpoint(s) of this run, newest first: {names}. To resume from "
        f"{newest.name}, write {pointer} into {checkpoints / LAST_FILE} (a damaged folder is "
        "replaced when training reaches its step again)."
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _read_info_json(path: Path) -> tuple[dict[str, Any] | None, str]:
    """The checkpoint folder's ``info.json`` as a dict, or None and what is wrong."""
    info, fault = _read_json_object(path / INFO_FILE)
    if info is not None:
        keys = ("stage", "step", "model_class", "model_config", "model_sha256")
        missing = [k for k in keys if k not in info]
        if missing:
            return None, f"missing {', '.join(missing)}"
    return info, fault


def _read_trainer_json(file: Path) -> tuple[dict[str, Any] | None, str]:
    """``trainer.json`` as a dict, or None and what is wrong."""
    meta, fault = _read_json_object(file)
    if meta is not None:
        missing = [k for k in ("step", "optimizer", "rng_numpy", "rng_python") if k not in meta]
        if missing:
            return None, f"missing {', '.join(missing)}"
    return meta, fault


def _read_json_object(file: Path) -> tuple[dict[str, Any] | None, str]:
    try:
        value = json.loads(file.read_text())
    except FileNotFoundError:
        return None, "missing"
    except (json.JSONDecodeError, OSError, UnicodeDecodeError) as exc:
        return None, f"not valid JSON: damaged or cut short ({_describe(exc)})"
    if not isinstance(value, dict):
        return None, f"not a JSON object (a {type(value).__name__})"
    return value, ""


def _recorded_files(path: Path) -> dict[str, str]:
    """File name -> SHA-256 that ``info.json`` records (empty for older checkpoints)."""
    info, fault = _read_info_json(path)
    if info is None:
        raise damaged(path / INFO_FILE, fault)
    files = info.get("files")
    return dict(files) if isinstance(files, dict) else {}


def _file_fault(file: Path, sha256: str | None, *, trainer: bool = False) -> str | None:
    """Why ``file`` cannot be used (missing, or not the bytes its checksum names), or None."""
    if not file.exists():
        return "missing, so the run cannot resume from this checkpoint" if trainer else "missing"
    if sha256 is not None and sha256_file(file) != sha256:
        return (
            f"its SHA-256 checksum differs from the one {INFO_FILE} records (damaged, cut "
            "short, or changed after it was written)"
        )
    return None


def _load_tensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file))
    except (SafetensorError, OSError) as exc:
        raise damaged(file, _unreadable_tensors(exc)) from None


def _tensors_fault(file: Path) -> str | None:
    try:
        load_file(str(file))
    except (SafetensorError, OSError) as exc:
        return _unreadable_tensors(exc)
    return None


def _unreadable_tensors(exc: Exception) -> str:
    if isinstance(exc, FileNotFoundError):
        return "missing"
    return f"not a readable safetensors file: damaged or cut short ({_describe(exc)})"
