"""Evaluation: deterministic rollouts, success statistics and reports."""

from __future__ import annotations

from vw_robot.eval.metrics import wilson_interval
from vw_robot.eval.report import summarize, write_report
from vw_robot.eval.rollout import EpisodeResult, evaluate, run_episode
from vw_robot.eval.seeding import episode_seed
from vw_robot.eval.tables import markdown_table

__all__ = [
    "EpisodeResult",
    "episode_seed",
    "evaluate",
    "markdown_table",
    "run_episode",
    "summarize",
    "wilson_interval",
    "write_report",
]
