"""Hand-built datasets for tests: an episode of given frames and steps in the dataset format."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from vw_robot import checkpoint as ckpt
from vw_robot.data import format as fmt


def write_toy_episode(
    root: Path,
    episode_id: str,
    task_id: str,
    frames: np.ndarray,
    steps: dict[str, np.ndarray] | None = None,
    camera: str | None = None,
) -> None:
    """Write one expert episode (``steps``: None for video only) recorded with ``camera``
    (None: imported video, no camera) into the dataset ``root``; the writer fills in its
    frame count, image size, actions flag and checksum."""
    meta = fmt.EpisodeMeta(
        episode_id=episode_id,
        task_id=task_id,
        num_frames=0,
        image_size=0,
        fps=10,
        has_actions=False,
        source="expert",
        codec="lossless",
        video_sha256="",
        env_spec=None if camera is None else {"camera": camera},
    )
    fmt.write_episode(root, meta, frames, steps)


def save_stage(out: Path, stage: str, model: Any, config: Any) -> None:
    """Save ``model`` (a dataclass ``config``) as the checkpoint of pipeline stage ``stage``
    under ``out``, step 1, so later stages find it as they would a trained one."""
    ckpt.save_checkpoint(
        out / stage,
        stage=stage,
        step=1,
        model=model,
        model_config=dataclasses.asdict(config),
        config_yaml=f"stage: {stage}\n",
    )
