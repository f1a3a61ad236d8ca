"""Rollout harness: determinism across worker counts, failures recorded, reports written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vw_robot.envs import make_env
from vw_robot.eval import evaluate, run_episode, write_report

TASKS = ["metaworld/reach-v3", "metaworld/drawer-close-v3"]
ENV_KWARGS = {"image_size": 16, "max_episode_steps": 30}


def _outcomes(results):
    return {
        t: [(e.seed, e.success, e.steps, round(e.episode_return, 6)) for e in eps]
        for t, eps in results.items()
    }


def test_one_and_two_workers_give_identical_results():
    kwargs = dict(policy="random", episodes_per_task=3, base_seed=5, env_kwargs=ENV_KWARGS)
    one = evaluate(TASKS, workers=1, **kwargs)
    two = evaluate(TASKS, workers=2, **kwargs)
    assert _outcomes(one) == _outcomes(two)
    assert [e.index for e in one[TASKS[0]]] == [0, 1, 2]


class _ExplodingPolicy:
    name = "exploding"

    def reset(self, *, task_id, action_space, seed=None):
        self.calls = 0

    def select_action(self, obs, info):
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("simulated policy failure")
        return np.zeros(4, np.float32)


def _exploding_factory(name):
    return _ExplodingPolicy()


def test_an_episode_that_raises_is_a_recorded_failure_and_the_run_goes_on():
    results = evaluate(
        ["metaworld/reach-v3"],
        policy="exploding",
        episodes_per_task=2,
        env_kwargs=ENV_KWARGS,
        policy_factory=_exploding_factory,
    )
    episodes = results["metaworld/reach-v3"]
    assert len(episodes) == 2
    for ep in episodes:
        assert not ep.success and ep.steps == 2
        assert "simulated policy failure" in ep.error


def test_run_episode_records_frames_and_stops_on_success():
    from vw_robot.policies import ExpertPolicy

    env = make_env("metaworld/reach-v3", image_size=16)
    try:
        ep = run_episode(env, ExpertPolicy(), "metaworld/reach-v3", seed=0, record=True)
    finally:
        env.close()
    assert ep.success and ep.error is None
    assert ep.frames.shape == (ep.steps + 1, 16, 16, 3)


def test_write_report(tmp_path):
    results = evaluate(
        ["metaworld/reach-v3"],
        policy="expert",
        episodes_per_task=2,
        env_kwargs={"image_size": 16},
        videos_per_task=1,
    )
    summary = write_report(tmp_path, results, config={"policy": "expert"})
    assert summary["tasks"]["metaworld/reach-v3"]["successes"] == 2
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["config"] == {"policy": "expert"}
    assert payload["provenance"]["packages"]["mujoco"]
    assert len(payload["episodes"]) == 2
    assert "metaworld/reach-v3" in (tmp_path / "results.md").read_text()
    video = tmp_path / "videos" / "metaworld__reach-v3__ep000.mp4"
    import imageio.v3 as iio

    frames = iio.imread(video)
    assert frames.shape[1:] == (16, 16, 3)
    assert len(frames) == results["metaworld/reach-v3"][0].steps + 1
    assert (tmp_path / "rollouts.mp4").exists()
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temporaries


@pytest.mark.parametrize("batch", [None, 2])
def test_skipped_episodes_are_not_run_and_the_others_match_a_full_run(batch):
    """What a resumed evaluation relies on: one pass over every task, the recorded episodes
    left out, each other episode handed over as it ends, seeds as in a full run."""
    kwargs = dict(policy="random", episodes_per_task=3, base_seed=5, env_kwargs=ENV_KWARGS)
    full = _outcomes(evaluate(TASKS, **kwargs))
    skip = {(TASKS[0], 0), (TASKS[0], 1), (TASKS[1], 2)}
    seen = []
    part = evaluate(TASKS, workers=2, batch=batch, skip=skip, on_episode=seen.append, **kwargs)
    assert [e.index for e in part[TASKS[0]]] == [2]
    assert [e.index for e in part[TASKS[1]]] == [0, 1]
    assert sorted((e.task_id, e.index) for e in seen) == sorted(
        [(TASKS[0], 2), (TASKS[1], 0), (TASKS[1], 1)]
    )
    assert _outcomes(part) == {TASKS[0]: full[TASKS[0]][2:], TASKS[1]: full[TASKS[1]][:2]}
