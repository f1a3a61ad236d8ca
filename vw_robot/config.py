"""Typed configs for the command-line jobs, registered in Hydra's ConfigStore.

The YAML files in ``vw_robot.configs`` name one of these schemas in their defaults list, so
Hydra type-checks every value (``episodes_per_task=abc`` fails naming the key) and the
``validate`` methods check ranges and names before any work starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional  # noqa: UP035 - OmegaConf needs typing.Optional on Python 3.10

from hydra.core.config_store import ConfigStore


class ConfigError(ValueError):
    """A config value that does not fit; the message names the key."""


def _check(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


@dataclass
class RunConfig:
    """The main job: roll out a policy on a suite, print a per-task table, save videos."""

    policy: str = "expert"  # "expert" or "random" (learned policies come with the training stages)
    suite: Optional[str] = "metaworld/mt10"  # a suite from `vw-robot tasks`; ignored if tasks set
    tasks: list[str] = field(default_factory=list)  # explicit task ids, override the suite
    episodes_per_task: int = 5  # evaluation episodes per task
    seed: int = 0  # base seed; episode i of task t uses episode_seed(seed, t, i)
    workers: int = 1  # rollout processes (spawn); results do not depend on it
    image_size: int = 64  # square camera image side in pixels
    camera: Optional[str] = None  # None: the suite's default camera
    max_episode_steps: Optional[int] = None  # None: the task's default time limit
    videos_per_task: int = 1  # first N episodes of each task are saved as mp4
    stop_on_success: bool = True  # end an episode at its first success
    fps: int = 20  # frame rate of saved videos
    out: str = "runs/run"  # output folder (results.json, results.md, videos/)

    def validate(self) -> list[str]:
        """Check values; return the resolved task ids."""
        from vw_robot.envs import resolve_tasks
        from vw_robot.envs.rendering import validate_image_size
        from vw_robot.policies import make_policy

        _check(self.episodes_per_task >= 1, "episodes_per_task", f"{self.episodes_per_task} < 1")
        _check(self.workers >= 1, "workers", f"{self.workers} < 1")
        _check(self.seed >= 0, "seed", f"{self.seed} is negative")
        _check(self.videos_per_task >= 0, "videos_per_task", f"{self.videos_per_task} < 0")
        _check(self.fps >= 1, "fps", f"{self.fps} < 1")
        _check(
            self.max_episode_steps is None or self.max_episode_steps >= 1,
            "max_episode_steps",
            f"{self.max_episode_steps} < 1",
        )
        try:
            validate_image_size(self.image_size)
        except ValueError as exc:
            raise ConfigError(f"image_size: {exc}") from None
        try:
            make_policy(self.policy)
        except ValueError as exc:
            raise ConfigError(f"policy: {exc}") from None
        try:
            tasks = resolve_tasks(self.suite, self.tasks)
        except ValueError as exc:
            raise ConfigError(f"{'tasks' if self.tasks else 'suite'}: {exc}") from None
        if self.camera is not None:
            from vw_robot.envs import get_spec

            for task_id in tasks:
                cameras = get_spec(task_id).cameras
                _check(
                    self.camera in cameras,
                    "camera",
                    f"{self.camera!r} is not a camera of {task_id}; allowed: {', '.join(cameras)}",
                )
        return tasks


@dataclass
class TasksConfig:
    """List suites and their task ids."""

    suite: Optional[str] = None  # None: every suite


def register_configs() -> None:
    """Register the schemas the YAML files extend (idempotent)."""
    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunConfig)
    store.store(name="tasks_schema", node=TasksConfig)
