"""One training loop for every stage: single process or ``torchrun`` (DDP), exact resume.

Batches are drawn by a step-indexed sampler: the indices of step ``s`` on rank ``r`` depend
only on (seed, s, r, world size), so a run resumed from a checkpoint sees exactly the batches
the uninterrupted run would have seen, and with the optimizer and RNG states restored it
reproduces the same losses.
"""

from __future__ import annotations

import atexit
import csv
import functools
import io
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional  # noqa: UP035 - OmegaConf needs typing.Optional (3.10)

import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from vw_robot import checkpoint as ckpt
from vw_robot.errors import ConfigError
from vw_robot.io import atomic_write_text

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.csv"
VALIDATION_FILE = "validation.csv"

LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, dict]]


@dataclass
class OptimConfig:
    """Optimisation settings shared by all stages."""

    # Optimizer steps in total (a resumed run continues to this); null with epochs instead.
    steps: Optional[int] = 200  # noqa: UP045 - OmegaConf needs Optional (see config.py)
    # Training length in passes over the training samples instead of steps (steps=null):
    # ceil(epochs * samples / (batch_size * processes)) steps; the schedule spans them.
    epochs: Optional[int] = None  # noqa: UP045
    batch_size: int = 16  # per process
    lr: float = 3e-4  # peak learning rate (AdamW)
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    warmup_steps: int = 20  # linear warm-up, then cosine decay to 10% of lr
    grad_clip: float = 1.0  # max global grad norm (0 = off)
    log_every: int = 10  # steps between metric rows in metrics.csv
    checkpoint_every: int = 100  # steps between checkpoints (the last step always saves)
    precision: str = "fp32"  # fp32 | bf16 (autocast; GPU configs)
    num_workers: int = 0  # DataLoader worker processes
    seed: int = 0  # model init, data order, dropout
    # Exponential moving average of the weights (decay per step, e.g. 0.99); 0: off. With it,
    # checkpoints (what policies load) and validation use the averaged weights.
    ema: float = 0.0
    device: str = "auto"  # auto (cuda if available) | cpu | cuda
    # Stop when the validation loss (a stage with held-out data, at each checkpoint) has not
    # improved for this many evaluations in a row; the best checkpoint is the run's policy.
    # 0: off (train to the end).
    patience: int = 0
    # torch threads while training (0: torch's default, one per core). On a machine whose cores
    # other processes share, one thread can be much faster than two (docs/benchmarks.md).
    threads: int = 0

    def validate(self, prefix: str = "optim") -> None:
        if self.steps is not None and self.epochs is not None:
            raise ConfigError(
                f"{prefix}.epochs: {self.epochs} and {prefix}.steps: {self.steps} are mutually "
                f"exclusive; give one (e.g. {prefix}.steps=null {prefix}.epochs={self.epochs})"
            )
        if self.steps is None and self.epochs is None:
            raise ConfigError(f"{prefix}.steps: null needs {prefix}.epochs (give one of them)")
        positive = ("steps", "epochs", "batch_size", "log_every", "checkpoint_every")
        for key in positive:
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"{prefix}.{key}: {value} must be >= 1")
        if self.patience < 0:
            raise ConfigError(f"{prefix}.patience: {self.patience} must be >= 0 (0: off)")
        if self.threads < 0:
            raise ConfigError(f"{prefix}.threads: {self.threads} must be >= 0 (0: default)")
        if self.lr <= 0:
            raise ConfigError(f"{prefix}.lr: {self.lr} must be > 0")
        if not 0 <= self.ema < 1:
            raise ConfigError(f"{prefix}.ema: {self.ema} must be in [0, 1) (0: off)")
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"{prefix}.precision: {self.precision!r}; use fp32 or bf16")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"{prefix}.device: {self.device!r}; use auto, cpu or cuda")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"{prefix}.device: cuda requested but no CUDA device is visible")

    def total_steps(self, samples: int, world: int = 1) -> int:
        """Optimizer steps of the run: ``steps``, or ``epochs`` passes over ``samples``."""
        if self.steps is not None:
            return self.steps
        return max(1, math.ceil(self.epochs * samples / (self.batch_size * world)))


class StepBatchSampler:
    """Yields the index lists of steps ``start..steps-1`` for one rank (see module doc)."""

    def __init__(
        self,
        size: int,
        batch_size: int,
        *,
        seed: int,
        start: int,
        steps: int,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        if size < 1:
            raise ValueError("The dataset is empty.")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.start, self.steps, self.rank, self.world = start, steps, rank, world
        self._epoch, self._perm = -1, np.arange(size)

    def indices(self, step: int) -> list[int]:
        base = (step * self.world + self.rank) * self.batch_size
        out = []
        for position in range(base, base + self.batch_size):
            epoch, offset = divmod(position, self.size)
            if epoch != self._epoch:
                self._epoch = epoch
                self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.size)
            out.append(int(self._perm[offset]))
        return out

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.steps):
            yield self.indices(step)

    def __len__(self) -> int:
        return max(0, self.steps - self.start)


def _distributed() -> tuple[int, int, int]:
    """(rank, local rank, world size) from torchrun's environment; (0, 0, 1) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 0, 1
    import torch.distributed as dist  # only under torchrun: it initialises a process group

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        # Torn down before the interpreter exits: a group left to the interpreter's teardown
        # lets gloo's threads be destroyed while running, which aborts the process (SIGABRT,
        # "terminate called without an active exception"; seen once in CI).
        atexit.register(_destroy_group)
    return dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), world


def _destroy_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def lr_at(step: int, optim: OptimConfig, total: int) -> float:
    """Learning rate of step ``step`` (0-based) of ``total``: linear warm-up over
    ``optim.warmup_steps`` to ``optim.lr``, then cosine decay to 10% of it at ``total``."""
    if step < optim.warmup_steps:
        return optim.lr * (step + 1) / optim.warmup_steps
    progress = (step - optim.warmup_steps) / max(1, total - optim.warmup_steps)
    return optim.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def stopping_state(run_dir: Path, upto: int) -> tuple[float, int]:
    """(best validation loss, evaluations since it) from ``validation.csv`` rows up to step
    ``upto``: the patience rule's state, so a resumed run continues it."""
    path = run_dir / VALIDATION_FILE
    best, since = math.inf, 0
    if not path.exists():
        return best, since
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    for row in sorted(rows, key=lambda r: int(r["step"])):
        if int(row["step"]) > upto:
            break
        value = float(row["val_loss"])
        best, since = (value, 0) if value < best else (best, since + 1)
    return best, since


def _to(batch: Any, device: torch.device) -> Any:
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch


def _rewrite_metrics_upto(path: Path, step: int) -> None:
    """Drop metric rows past ``step`` (logged after the checkpoint a resume starts from)."""
    if not path.exists():
        return
    rows = list(csv.reader(io.StringIO(path.read_text())))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step]
    buffer = io.StringIO()
    csv.writer(buffer).writerows(kept)
    atomic_write_text(path, buffer.getvalue())


def config_differences(old: Any, new: Any, key: str = "") -> list[str]:
    """``"key: old -> new"`` for each leaf where two nested configs differ (long lists are
    summarised), e.g. ``env.labelled_episodes: 49 items -> 20 items``."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines = []
        for k in sorted(set(old) | set(new), key=str):
            sub = f"{key}.{k}" if key else str(k)
            if k not in old or k not in new:
                lines.append(
                    f"{sub}: {'absent' if k not in old else 'present'} -> "
                    f"{'absent' if k not in new else 'present'}"
                )
            else:
                lines.extend(config_differences(old[k], new[k], sub))
        return lines
    if old == new:
        return []

    def show(value: Any) -> str:
        if isinstance(value, (list, tuple)) and len(value) > 8:
            return f"{len(value)} items"
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."

    shown_old, shown_new = show(old), show(new)
    if shown_old == shown_new:  # same length, other items
        shown_old, shown_new = f"{shown_old} (other items)", shown_new
    return [f"{key or 'config'}: {shown_old} -> {shown_new}"]


# The optim keys that change how often a run logs and saves, or where it runs, but not what it
# computes: a resumed run may change them freely.
BOOKKEEPING_OPTIM_KEYS = ("log_every", "checkpoint_every", "num_workers", "device", "threads")


def training_settings(config: Any, stage: str) -> dict[str, Any]:
    """The part of a run's config (a parsed TrainConfig) that decides what training ``stage``
    computes, besides the model: ``dataset``, ``tasks`` and the stage's section of the
    experiment (optimisation, label settings...) without ``model`` (compared on its own) and
    without :data:`BOOKKEEPING_OPTIM_KEYS`. Other stages' sections train other runs."""
    if not isinstance(config, dict):
        return {}
    settings: dict[str, Any] = {k: config[k] for k in ("dataset", "tasks") if k in config}
    if isinstance(settings.get("dataset"), str):
        settings["dataset"] = os.path.normpath(settings["dataset"])
    experiment = config.get("experiment")
    section = experiment.get(stage) if isinstance(experiment, dict) else None
    if isinstance(section, dict):
        section = {k: v for k, v in section.items() if k != "model"}
        if isinstance(section.get("optim"), dict):
            section["optim"] = {
                k: v for k, v in section["optim"].items() if k not in BOOKKEEPING_OPTIM_KEYS
            }
        settings["experiment"] = {stage: section}
    return settings


def resume_differences(old_yaml: str, new_yaml: str, stage: str) -> list[str]:
    """``"key: old -> new"`` for each training setting (:func:`training_settings`) in which
    the config a run was checkpointed with differs from the one resuming it. Keys only one
    of them has are not compared (settings a newer vw_robot added).

    Raises:
        ValueError: ``old_yaml`` is not YAML (the caller names the file).
    """
    old = _parse_yaml(old_yaml)
    if old is None:
        raise ValueError("not valid YAML")
    new = _parse_yaml(new_yaml) or {}
    return config_differences(
        *_common_keys(training_settings(old, stage), training_settings(new, stage))
    )


def _common_keys(old: Any, new: Any) -> tuple[Any, Any]:
    """Both nested configs cut to the keys both have: a key only one has comes from a
    vw_robot version that added or dropped a setting, not from the user."""
    if isinstance(old, dict) and isinstance(new, dict):
        pairs = {k: _common_keys(old[k], new[k]) for k in old if k in new}
        return {k: a for k, (a, _) in pairs.items()}, {k: b for k, (_, b) in pairs.items()}
    return old, new


def _parse_yaml(text: str) -> Any:
    try:
        return OmegaConf.to_container(OmegaConf.create(text), resolve=False)
    except Exception:  # noqa: BLE001 - yaml's scanner and parser errors, OmegaConf's own
        return None


def _check_resumed_settings(
    checkpoint: Path, config_yaml: str, stage: str, resume_changed: bool
) -> None:
    """Refuse to resume ``checkpoint`` with other training settings unless told to."""
    old_yaml = ckpt.read_config_text(checkpoint)
    try:
        changed = resume_differences(old_yaml, config_yaml, stage)
    except ValueError as exc:
        raise ckpt.damaged(checkpoint / ckpt.CONFIG_FILE, str(exc)) from None
    if not changed:
        return
    if resume_changed:
        log.warning(
            "%s: resuming %s with changed training settings (resume_changed=true): %s",
            stage,
            checkpoint,
            "; ".join(changed),
        )
        return
    raise ckpt.CheckpointError(
        f"{checkpoint}: this run was trained with other settings than the ones given now ("
        + "; ".join(changed)
        + "). To continue it with the new ones anyway, pass resume_changed=true; to keep it, "
        "train into another run folder (run_name=... or another out=)."
    )


def _one_writer(train_fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Run ``train`` holding its run folder (rank 0 of a torchrun job, which alone writes it):
    a second training into the folder is refused, naming the holder's PID."""

    @functools.wraps(train_fn)
    def holding(*, run_dir: str | os.PathLike[str], **kwargs: Any) -> dict[str, Any]:
        if _distributed()[0] != 0:
            return train_fn(run_dir=run_dir, **kwargs)
        with ckpt.run_folder_lock(run_dir):
            return train_fn(run_dir=run_dir, **kwargs)

    return holding


@_one_writer
def train(
    *,
    stage: str,
    model: torch.nn.Module,
    dataset: Dataset,
    loss_fn: Callable[[torch.nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, dict]],
    optim: OptimConfig,
    run_dir: str | os.PathLike[str],
    model_config: dict[str, Any],
    config_yaml: str,
    parents: dict[str, str | os.PathLike[str]] | None = None,
    stop_at: int | None = None,
    validate: Callable[[torch.nn.Module], float] | None = None,
    resume_changed: bool = False,
) -> dict[str, Any]:
    """Train ``model`` on ``dataset`` and checkpoint it; resume when ``run_dir`` has a
    checkpoint of this stage.

    Args:
        stage: stage name recorded in checkpoints; a checkpoint of another stage in
            ``run_dir`` is refused.
        model: the model (built with ``optim.seed`` already applied).
        dataset: map-style dataset of dict items.
        loss_fn: ``(model, batch) -> (loss, metrics)``.
        optim: optimisation settings.
        run_dir: run folder: ``metrics.csv`` and ``checkpoints/``.
        model_config: plain dict that rebuilds the model (stored in every checkpoint).
        config_yaml: the resolved config, stored beside the weights.
        parents: stage -> checkpoint this stage is built on.
        stop_at: end after this step's checkpoint, as a kill would (tests, time-boxed runs).
        validate: model -> loss on held-out data, run (in eval mode, without gradients) at
            every checkpoint and stored in its info.json and ``validation.csv``; after the
            last step the checkpoint with the lowest one is selected (``selected.json``).
            With ``optim.patience`` the run ends once that many evaluations in a row have
            not lowered it (the best checkpoint is selected then too).
        resume_changed: resume even though ``config_yaml`` differs from the checkpoint's in
            a training setting (:func:`resume_differences`); the keys are logged.

    Returns:
        ``{"step", "checkpoint", "last_loss", "seconds", "samples_per_s", "total_steps",
        "stopped_early"}``.

    Raises:
        RunFolderBusyError: another process is training into ``run_dir`` (:func:`_one_writer`).
    """
    optim.validate()
    if optim.patience and validate is None:
        raise ConfigError(
            f"optim.patience: {optim.patience} needs held-out data to watch; {stage} has "
            "none (give the stage a validation split, e.g. val_fraction=0.1)"
        )
    rank, local_rank, world = _distributed()
    total = optim.total_steps(len(dataset), world)
    device = _device(optim, local_rank)
    model.to(device)
    optimizer = _adamw(model, optim)
    run = _Run(
        stage=stage,
        model=model,
        optimizer=optimizer,
        ema=_Ema(model, optim.ema) if optim.ema > 0 else None,
        optim=optim,
        run_dir=Path(run_dir),
        total=total,
        rank=rank,
        world=world,
        device=device,
        model_config=model_config,
        config_yaml=config_yaml,
        parents=parents,
        validate=validate,
    )
    latest = ckpt.latest_checkpoint(run.run_dir)
    start = 0 if latest is None else _resume(run, latest, resume_changed)
    best, since = stopping_state(run.run_dir, start) if optim.patience else (math.inf, 0)
    if start >= total or (optim.patience and since >= optim.patience):
        return _already_trained(run, start)
    progress = _Progress(step=start, saved=latest, best=best, since=since)
    return _train_steps(run, dataset, loss_fn, progress, stop_at)


@dataclass
class _Run:
    """What one :func:`train` call trains and where: fixed for the whole run."""

    stage: str
    model: torch.nn.Module  # unwrapped (DDP wraps it in the loop only)
    optimizer: torch.optim.Optimizer
    ema: _Ema | None
    optim: OptimConfig
    run_dir: Path
    total: int  # optimizer steps of the run
    rank: int
    world: int
    device: torch.device
    # Stored in every checkpoint (see :func:`train`'s arguments).
    model_config: dict[str, Any]
    config_yaml: str
    parents: dict[str, str | os.PathLike[str]] | None
    validate: Callable[[torch.nn.Module], float] | None


@dataclass
class _Progress:
    """Where a run stands: its step, the checkpoint it saved last, its last loss, and the
    patience rule's state (best validation loss, evaluations since it)."""

    step: int
    saved: Path | None
    best: float
    since: int
    last_loss: float | None = None
    stopped_early: bool = False

    def evaluated(self, val_loss: float, patience: int) -> bool:
        """Record a validation loss; True when ``patience`` (0: off) evaluations in a row
        have not lowered the best one."""
        self.best, self.since = (
            (val_loss, 0) if val_loss < self.best else (self.best, self.since + 1)
        )
        return bool(patience) and self.since >= patience


def _device(optim: OptimConfig, local_rank: int) -> torch.device:
    """The device ``optim.device`` asks for (this process's GPU under torchrun)."""
    if optim.device == "cuda" or (optim.device == "auto" and torch.cuda.is_available()):
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def _adamw(model: torch.nn.Module, optim: OptimConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on the matrices and kernels only (not biases or norms)."""
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": optim.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=optim.lr,
        betas=(0.9, 0.95),
    )


def _resume(run: _Run, latest: Path, resume_changed: bool) -> int:
    """Load checkpoint ``latest`` (model, optimizer, moving average) after checking that it
    was trained as this run is; drop the metric rows logged after it. Returns its step."""
    info = ckpt.read_info(latest, stage=run.stage)
    if info.model_config != run.model_config:
        raise ckpt.CheckpointError(
            f"{latest}: was trained with another model config ("
            + "; ".join(config_differences(info.model_config, run.model_config))
            + "); use a new run folder (run_name=..., or another out=) to train a "
            "different model."
        )
    _check_resumed_settings(latest, run.config_yaml, run.stage, resume_changed)
    run.model.load_state_dict(ckpt.load_weights(latest))  # strict: every tensor must fit
    saved_extra: dict[str, torch.Tensor] = {}
    start = ckpt.load_trainer_state(latest, run.optimizer, saved_extra)
    if run.ema is not None:
        run.ema.load(run.model, saved_extra, latest)
    log.info("%s: resuming from %s (step %d)", run.stage, latest, start)
    if run.rank == 0:
        _rewrite_metrics_upto(run.run_dir / METRICS_FILE, start)
    return start


def _already_trained(run: _Run, start: int) -> dict[str, Any]:
    """The result of a run whose checkpoint is already its last step (or the patience rule's
    stop): nothing is trained."""
    log.info("%s: already trained to step %d", run.stage, start)
    rows = read_metrics(run.run_dir) if (run.run_dir / METRICS_FILE).exists() else []
    return {
        "step": start,
        "checkpoint": str(ckpt.resolve_checkpoint(run.run_dir)),  # the selected one, if any
        "last_loss": rows[-1]["loss"] if rows else None,
        "seconds": 0.0,
        "samples_per_s": None,
        "resumed_complete": True,
        "total_steps": run.total,
    }


def _train_steps(
    run: _Run, dataset: Dataset, loss_fn: LossFn, progress: _Progress, stop_at: int | None
) -> dict[str, Any]:
    """Train from ``progress.step`` to the run's last step, ``stop_at`` or the patience
    rule's stop: update, log, checkpoint. Returns :func:`train`'s result."""
    optim, start = run.optim, progress.step
    wrapped = _parallel(run)
    loader = _batches(run, dataset, start)
    autocast = (
        torch.autocast(run.device.type, dtype=torch.bfloat16)
        if optim.precision == "bf16"
        else nullcontext()
    )
    metrics = _MetricsLog(run.run_dir, run.stage, run.total, write=run.rank == 0)
    began = time.perf_counter()
    threads = torch.get_num_threads()
    if optim.threads:
        torch.set_num_threads(optim.threads)
    try:
        wrapped.train()
        for batch in loader:
            lr = lr_at(progress.step, optim, run.total)
            loss, values = _update(run, wrapped, loss_fn, batch, lr, autocast)
            progress.step += 1
            step = progress.step
            progress.last_loss = float(loss.detach())
            if not math.isfinite(progress.last_loss):
                raise FloatingPointError(
                    f"{run.stage}: loss is {progress.last_loss} at step {step}; lower "
                    "optim.lr or check the data."
                )
            if run.rank == 0 and (step % optim.log_every == 0 or step == run.total):
                elapsed = time.perf_counter() - began
                metrics.write(step, progress.last_loss, lr, values, elapsed)
            at_checkpoint = step % optim.checkpoint_every == 0 or step in (run.total, stop_at)
            if at_checkpoint and _checkpoint(run, progress):
                progress.stopped_early = step < run.total
                log.info(
                    "%s: validation loss not lower than %.4f for %d evaluations: stopping at "
                    "step %d of %d",
                    run.stage,
                    progress.best,
                    progress.since,
                    step,
                    run.total,
                )
                break
            if step == stop_at:
                break
    finally:
        torch.set_num_threads(threads)
        metrics.close()
    return _finish(run, progress, start, began)


def _parallel(run: _Run) -> torch.nn.Module:
    """The model to call in the loop: wrapped in DistributedDataParallel under torchrun."""
    if run.world <= 1:
        return run.model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [run.device] if run.device.type == "cuda" else None
    return DistributedDataParallel(run.model, device_ids=device_ids)


def _batches(run: _Run, dataset: Dataset, start: int) -> Iterable[Any]:
    """The batches of steps ``start..total-1`` for this rank (see :class:`StepBatchSampler`)."""
    optim = run.optim
    sampler = StepBatchSampler(
        len(dataset),
        optim.batch_size,
        seed=optim.seed,
        start=start,
        steps=run.total,
        rank=run.rank,
        world=run.world,
    )
    if optim.num_workers == 0 and callable(getattr(dataset, "batch", None)):
        # A dataset that collates a whole batch itself (indices -> the batch default_collate
        # would make of its items) is faster without the DataLoader's per-item calls.
        return (dataset.batch(indices) for indices in sampler)
    # Its own generator: creating the iterator must not draw from the global RNG, or a
    # resumed run's dropout masks would be shifted against the uninterrupted run's.
    return DataLoader(
        dataset,
        generator=torch.Generator().manual_seed(optim.seed + start),
        batch_sampler=sampler,
        num_workers=optim.num_workers,
        pin_memory=run.device.type == "cuda",
        persistent_workers=optim.num_workers > 0,
    )


def _update(
    run: _Run,
    wrapped: torch.nn.Module,
    loss_fn: LossFn,
    batch: Any,
    lr: float,
    autocast: Any,
) -> tuple[torch.Tensor, dict]:
    """One optimizer step at learning rate ``lr`` (gradients clipped, the moving average
    updated); returns ``loss_fn``'s loss and metrics."""
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    batch = _to(batch, run.device)
    with autocast:
        loss, metrics = loss_fn(wrapped, batch)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if run.optim.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.optim.grad_clip)
    run.optimizer.step()
    if run.ema is not None:
        run.ema.update(run.model)
    return loss, metrics


def _checkpoint(run: _Run, progress: _Progress) -> bool:
    """Validate (rank 0) and save the checkpoint of ``progress.step``; True when the patience
    rule ends the run (rank 0's decision, broadcast to every rank)."""
    optim, step = run.optim, progress.step
    stop = False
    # A run sized in epochs records its steps; one with patience, where it stands.
    extra: dict[str, Any] = {} if optim.steps else {"total_steps": run.total}
    kept = run.model if run.ema is None else run.ema.averaged
    if run.validate is not None and run.rank == 0:
        extra["val_loss"] = _validation_loss(kept, run.validate, run.run_dir, step)
        log.info("%s step %d validation loss %.4f", run.stage, step, extra["val_loss"])
        stop = progress.evaluated(extra["val_loss"], optim.patience)
        if optim.patience:
            extra["evaluations_since_best"] = progress.since
    if run.rank == 0:
        progress.saved = ckpt.save_checkpoint(
            run.run_dir,
            stage=run.stage,
            step=step,
            model=kept,
            model_config=run.model_config,
            config_yaml=run.config_yaml,
            optimizer=run.optimizer,
            parents=run.parents,
            extra_info=extra or None,
            trainer_tensors=None if run.ema is None else run.ema.trainer_tensors(run.model),
        )
    if run.world > 1:
        flag = torch.tensor([int(stop)], device=run.device)
        torch.distributed.broadcast(flag, 0)  # rank 0 alone validates
        stop = bool(flag.item())
    return stop


def _finish(run: _Run, progress: _Progress, start: int, began: float) -> dict[str, Any]:
    """After the last step: the caller's model takes the saved (averaged) weights, and a run
    with held-out data selects its best checkpoint. Returns :func:`train`'s result."""
    if run.ema is not None:  # the caller's model is what was saved (pictures, exports)
        run.model.load_state_dict(run.ema.averaged.state_dict())
    seconds = time.perf_counter() - began
    samples = (progress.step - start) * run.optim.batch_size * run.world
    saved = progress.saved
    ended = progress.step == run.total or progress.stopped_early
    if run.validate is not None and run.rank == 0 and ended:
        saved = ckpt.select_checkpoint(run.run_dir) or saved
        log.info("%s: checkpoint chosen by validation loss: %s", run.stage, saved)
    return {
        "step": progress.step,
        "checkpoint": str(saved),
        "last_loss": progress.last_loss,
        "seconds": seconds,
        "samples_per_s": samples / seconds if seconds > 0 else 0.0,
        "optim": asdict(run.optim),
        "total_steps": run.total,
        "stopped_early": progress.stopped_early,
    }


class _MetricsLog:
    """Rank 0's metric rows: ``metrics.csv`` (its header once) and TensorBoard when it is
    installed; on other ranks it writes nothing."""

    def __init__(self, run_dir: Path, stage: str, total: int, *, write: bool) -> None:
        self.stage, self.total = stage, total
        self._handle: Any = None
        self._writer: Any = None
        self._tensorboard: Any = None
        self._header_written = True
        if write:
            path = run_dir / METRICS_FILE
            run_dir.mkdir(parents=True, exist_ok=True)
            self._header_written = path.exists() and path.stat().st_size != 0
            self._handle = open(path, "a", newline="")  # noqa: SIM115 - closed in close()
            self._writer = csv.writer(self._handle)
            self._tensorboard = _tensorboard(run_dir)

    def write(
        self, step: int, loss: float, lr: float, metrics: dict[str, Any], elapsed: float
    ) -> None:
        """One row: step, loss, lr, the loss function's metrics, seconds since the start."""
        row = {
            "step": step,
            "loss": loss,
            "lr": lr,
            **{k: float(v) for k, v in metrics.items()},
            "elapsed_s": elapsed,
        }
        if not self._header_written:
            self._writer.writerow(list(row))
            self._header_written = True
        self._writer.writerow(list(row.values()))
        self._handle.flush()
        if self._tensorboard is not None:
            for key, value in row.items():
                if key != "step":
                    self._tensorboard.add_scalar(f"{self.stage}/{key}", value, step)
        log.info("%s step %d/%d loss %.4f", self.stage, step, self.total, loss)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


class _Ema:
    """The weights' exponential moving average (``torch.optim.swa_utils.AveragedModel``,
    buffers included). A checkpoint stores the average as the model (what a policy loads)
    and the raw weights and the update count as trainer tensors, so a resume continues both
    exactly."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self._swa = torch.optim.swa_utils.AveragedModel(
            model,
            multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay),
            use_buffers=True,
        )

    @property
    def averaged(self) -> torch.nn.Module:
        return self._swa.module

    def update(self, model: torch.nn.Module) -> None:
        self._swa.update_parameters(model)

    def trainer_tensors(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        raw = {f"extra.raw.{k}": v for k, v in model.state_dict().items()}
        return {**raw, "extra.ema_updates": self._swa.n_averaged}

    def load(self, model: torch.nn.Module, extra: dict[str, torch.Tensor], path: Path) -> None:
        """``model`` holds the checkpoint's averaged weights: make them the average, and put
        the raw weights back into ``model``."""
        if "extra.ema_updates" not in extra:
            raise ckpt.CheckpointError(
                f"{path}: holds no moving average (trained with optim.ema=0); resume it "
                "without ema, or train with ema in a new run folder (run_name=...)."
            )
        self.averaged.load_state_dict(model.state_dict())
        self._swa.n_averaged.copy_(extra["extra.ema_updates"])
        raw = {k[len("extra.raw.") :]: v for k, v in extra.items() if k.startswith("extra.raw.")}
        model.load_state_dict(raw)


def _validation_loss(
    model: torch.nn.Module, validate: Callable[[torch.nn.Module], float], run_dir: Path, step: int
) -> float:
    """Held-out loss at ``step``, appended to ``validation.csv``; the model is left training."""
    model.eval()
    try:
        with torch.no_grad():
            value = float(validate(model))
    finally:
        model.train()
    path = run_dir / VALIDATION_FILE
    rows = path.read_text().splitlines() if path.exists() else ["step,val_loss"]
    rows = [r for r in rows if not r.startswith(f"{step},")]  # a resumed step is replaced
    atomic_write_text(path, "\n".join([*rows, f"{step},{value}"]) + "\n")
    return value


def _tensorboard(run_dir: Path) -> Any:
    """A TensorBoard writer when the tensorboard package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def read_metrics(run_dir: str | os.PathLike[str]) -> list[dict[str, float]]:
    """Rows of ``metrics.csv`` as dicts of floats."""
    text = (Path(run_dir) / METRICS_FILE).read_text()
    return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(text))]
