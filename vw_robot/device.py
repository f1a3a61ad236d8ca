"""One place that turns a device name from a config into a ``torch.device``."""

from __future__ import annotations

import torch

from vw_robot.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda[:k]"`` as a device.

    Raises:
        ConfigError: an unknown name, or CUDA asked for where none is visible.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError(f"device={name!r}: use auto, cpu or cuda[:k].")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r}: CUDA is not available on this machine.")
    return torch.device(name)
