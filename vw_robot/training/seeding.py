"""One seed for every random number generator a training run draws from."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every GPU).

    Model initialisation and dropout draw from torch; code that draws from ``random`` or
    ``numpy.random`` (augmentations, a library's own sampling) would otherwise differ between
    two runs of one config. Checkpoints save and restore all three, so a resumed run goes on
    with the states the uninterrupted one had.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)  # the legacy global generator takes 32 bits
    torch.manual_seed(seed)  # seeds every CUDA device too
