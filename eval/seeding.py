"""Deterministic per-episode seeds: episode i of task t gets a seed that depends only on the base
seed, the task and i — not on batch size, worker count or when other episodes ended."""

from __future__ import annotations

import zlib

import numpy as np


def episode_seed(base_seed: int, task_id: str, index: int) -> int:
    """Seed of episode ``index`` of ``task_id``: a function of (base seed, task, index) only.

    It does not depend on batch size, worker count or the order episodes finish in, so runs
    with different parallelism evaluate the same episodes. ``crc32`` (not ``hash``) keeps the
    task's contribution stable across processes and Python versions.
    """
    if base_seed < 0 or index < 0:
        raise ValueError(f"base_seed={base_seed} and index={index} must be non-negative.")
    sequence = np.random.SeedSequence([base_seed, zlib.crc32(task_id.encode()), index])
    return int(sequence.generate_state(1, dtype=np.uint32)[0] >> 1)  # < 2**31 - 1
