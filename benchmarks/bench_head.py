"""Head training speed: samples/s of the action-head/BC training step, and where a step goes.

Usage:
    python benchmarks/bench_head.py                       # before/after, 64 px, two views
    python benchmarks/bench_head.py --repeats 7 --steps 3 --data /tmp/bench_head_data  # docs
    python benchmarks/bench_head.py --variants old,new,new-bf16,new-t1 --data /tmp/bench_data
    python benchmarks/bench_head.py --variants new,new-compile   # torch.compile (slow warm-up)
    python benchmarks/bench_head.py --variants new-t1,views-t1,kp-t1,views-kp-t1 --data /tmp/bd

It records a small dataset first (scripted experts of three Meta-World tasks, ``front+top`` at
64 px, with state and task, as ``vw-robot collect`` records them; ``--data`` keeps it for the
next run), builds the BC head of the default run's recipe (task conditioning, proprio state,
random shifts of 4 px, a 10% validation split) through the training stage's own setup, and
times training steps of batch 64. A step is split into data (indices -> batch), augmentation,
forward (with the loss), backward and optimizer (clip, AdamW, EMA when ``--ema``).

Variants (each its own model of the same initialisation; rounds interleaved, medians printed):
    old           per-item __getitem__ + DataLoader collation, the padded-float random shift
                  (the implementation before the batched path, d36e502, kept here to compare)
    new           ActionChunkDataset.batch (in-memory tables, one gather per key) + the
                  gathering random shift: the same batches, as the training loop runs them now
    new-bf16      new under bf16 autocast (optim.precision=bf16: not the same numerics), the
                  shifted frames made contiguous first as the stage does under bf16
    new-cl        new with the model in channels_last (the inputs already are, after a shift)
    new-nchw      new with the shifted frames made contiguous (NCHW convs, as bf16 does)
    new-t1        new on one torch thread (any variant: -t1)
    new-b128      new with batch 128 (samples/s per sample count; lr would need scaling)
    new-bf16-b128 both
    new-compile   new with torch.compile of the model (inductor on CPU)
    views         new with a trunk per camera view (experiment.bc.model.view_trunks=true; the
                  views' bands shift on their own)
    kp            new with spatial-softmax keypoints (experiment.bc.model.pool=spatial_softmax)
    views-kp      both (any of these takes the suffixes above: views-kp-t1)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from vw_robot.cli import load_config, main
from vw_robot.data import format as fmt
from vw_robot.training.loop import StepBatchSampler, _Ema
from vw_robot.training.stages import _head_setup

TASKS = ["metaworld/reach-v3", "metaworld/drawer-close-v3", "metaworld/button-press-topdown-v3"]
PHASES = ("data", "augment", "forward", "backward", "optimizer")


def old_random_shift(frames: torch.Tensor, pad: int) -> torch.Tensor:
    """The random shift before the batched path: a padded float copy, then a 3-index gather."""
    batch, _, height, width = frames.shape
    padded = F.pad(frames.float(), (pad, pad, pad, pad), mode="replicate")  # (B, C, S+2p, S+2p)
    offsets = torch.randint(0, 2 * pad + 1, (batch, 2))  # (B, 2): dy, dx
    rows = torch.arange(height)[None, :] + offsets[:, :1]  # (B, S)
    cols = torch.arange(width)[None, :] + offsets[:, 1:]  # (B, S)
    index = torch.arange(batch)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]  # (B, S, S, C)
    return out.permute(0, 3, 1, 2).to(frames.dtype)


def record_dataset(path: Path, episodes_per_task: int, image_size: int) -> None:
    """Expert episodes of :data:`TASKS`, two views stacked, as ``vw-robot collect`` does."""
    if (path / fmt.MANIFEST_FILE).exists():
        return
    argv = ["collect", f"tasks=[{','.join(TASKS)}]", f"episodes_per_task={episodes_per_task}"]
    argv += [f"image_size={image_size}", "camera=front+top", f"out={path}", "workers=1"]
    if main(argv) != 0:
        raise SystemExit(f"collecting the benchmark dataset into {path} failed")


class Variant:
    """One way of running a head training step, with its own model, optimizer and data."""

    def __init__(self, name: str, cfg: Any, args: argparse.Namespace) -> None:
        self.name = name
        self.old = name.startswith("old")
        self.batch_size = 128 if "b128" in name else args.batch_size
        self.threads = 1 if "-t1" in name else args.threads
        torch.manual_seed(0)
        cfg = copy.deepcopy(cfg)
        cfg.experiment.bc.model.view_trunks = name.startswith("views")
        cfg.experiment.bc.model.pool = "spatial_softmax" if "kp" in name.split("-") else "flatten"
        setup = _head_setup(cfg)
        self.dataset, self.model = setup.dataset, setup.model
        self.parameters = sum(p.numel() for p in self.model.parameters())
        self.shift = cfg.experiment.bc.augment_shift
        if "-cl" in name:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.model) if "compile" in name else self.model
        self.autocast = "bf16" in name
        self.nchw = "-nchw" in name
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3, betas=(0.9, 0.95))
        self.ema = _Ema(self.model, args.ema) if args.ema > 0 else None
        sampler = StepBatchSampler(len(self.dataset), self.batch_size, seed=0, start=0, steps=10**6)
        if self.old:
            loader = DataLoader(self.dataset, batch_sampler=sampler)
            self.batches = iter(loader)
        else:
            self.batches = (self.dataset.batch(indices) for indices in sampler)
        self.times: dict[str, list[float]] = {p: [] for p in PHASES}
        self.rates: list[float] = []

    def step(self) -> dict[str, float]:
        torch.set_num_threads(self.threads)
        clock = [time.perf_counter()]
        batch = next(self.batches)
        clock.append(time.perf_counter())
        frames = batch["frames"]  # (B, 3, S, S) uint8
        frames = (
            old_random_shift(frames, self.shift)
            if self.old
            else self.model.random_shift(frames, self.shift)  # per view with view_trunks
        )
        if self.nchw or (self.autocast and not self.old):
            frames = frames.contiguous()  # as the stage's loss does under bf16
        clock.append(time.perf_counter())
        context = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if self.autocast
            else contextlib.nullcontext()
        )
        with context:
            predicted = self.forward(
                frames, None, state=batch["state"], task=batch["task_index"]
            )  # (B, k, A)
            loss = self.model.chunk_loss(predicted, batch["actions"], batch["action_mask"])
        clock.append(time.perf_counter())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clock.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        float(loss.detach())
        clock.append(time.perf_counter())
        return {p: b - a for p, a, b in zip(PHASES, clock, clock[1:], strict=False)}

    def round(self, steps: int) -> None:
        began = time.perf_counter()
        rows = [self.step() for _ in range(steps)]
        self.rates.append(steps * self.batch_size / (time.perf_counter() - began))
        for phase in PHASES:
            self.times[phase].append(statistics.median(r[phase] for r in rows))


def run(args: argparse.Namespace) -> None:
    with contextlib.ExitStack() as stack:
        data = (
            Path(args.data)
            if args.data
            else Path(stack.enter_context(tempfile.TemporaryDirectory())) / "data"
        )
        record_dataset(data, args.episodes_per_task, args.image_size)
        overrides = [
            "stage=bc",
            f"dataset={data}",
            f"out={data.parent / 'bench_head_runs'}",
            "experiment.bc.task_conditioning=true",
            "experiment.bc.use_state=true",
            "experiment.bc.augment_shift=4",
            "experiment.bc.val_fraction=0.1",
        ]
        cfg = load_config("train", overrides)
        names = args.variants.split(",")
        variants = [Variant(name, cfg, args) for name in names]
        print(
            f"dataset {data}: {len(variants[0].dataset)} training samples, {args.image_size} px "
            f"front+top; torch {torch.__version__}, {args.threads} thread(s) unless -t1"
        )
        for variant in variants:  # warm-up: first-call allocations, the table, compilation
            began = time.perf_counter()
            for _ in range(args.warmup):
                variant.step()
            print(f"  warm-up {variant.name}: {time.perf_counter() - began:.1f} s", flush=True)
        for r in range(args.repeats):
            for variant in variants:
                variant.round(args.steps)
            print(
                f"  round {r + 1}/{args.repeats}: "
                + ", ".join(f"{v.name} {v.rates[-1]:.0f}" for v in variants),
                flush=True,
            )
        print()
        header = (
            "| variant | parameters | batch | samples/s (median) | best | "
            + " | ".join(f"{p} ms" for p in PHASES)
            + " |"
        )
        print(header)
        print("|" + "---|" * (5 + len(PHASES)))
        for v in variants:
            phases = " | ".join(f"{1000 * statistics.median(v.times[p]):.1f}" for p in PHASES)
            rate = statistics.median(v.rates)
            print(
                f"| {v.name} | {v.parameters:,} | {v.batch_size} | {rate:.0f} | "
                f"{max(v.rates):.0f} | {phases} |"
            )
        base = {v.name: statistics.median(v.rates) for v in variants}
        if "old" in base:
            print()
            for name, rate in base.items():
                if name != "old":
                    print(f"{name} / old: {rate / base['old']:.2f}x (medians)")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="old,new,new-bf16,old-t1,new-t1,new-bf16-t1")
    parser.add_argument("--data", default=None, help="dataset folder (recorded there if absent)")
    parser.add_argument("--episodes-per-task", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--ema", type=float, default=0.0, help="EMA decay in the step (0: off)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4, help="steps per round")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    return parser.parse_args(argv)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    run(parse())
