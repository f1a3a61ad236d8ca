"""Batched evaluation (``evaluate(..., batch=N)``): the scripted expert and random actions give
exactly the episodes of the per-process path whatever the slots and worker processes; slots
refill; seeds, videos, errors and progress as before; chains too."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from vw_robot.envs import make_env
from vw_robot.errors import UserError
from vw_robot.eval import episode_seed, evaluate
from vw_robot.eval.batched import _serve
from vw_robot.eval.chains import evaluate_chains

TASKS = ["metaworld/reach-v3", "metaworld/drawer-close-v3"]
ENV_KWARGS = {"image_size": 16, "max_episode_steps": 30}
COMMON = {"episodes_per_task": 4, "base_seed": 5, "videos_per_task": 1}
# The expert succeeds after about 40-120 steps: episodes end at different steps.
LIMITS = {"expert": {"image_size": 16, "max_episode_steps": 150}, "random": ENV_KWARGS}


def _same_episodes(one, other) -> None:
    assert list(one) == list(other)
    for task in one:
        assert [e.to_json() for e in one[task]] == [e.to_json() for e in other[task]]
        for a, b in zip(one[task], other[task], strict=True):
            if a.frames is None:
                assert b.frames is None
            else:
                np.testing.assert_array_equal(a.frames, b.frames)


@pytest.fixture(scope="module")
def unbatched():
    return {
        policy: evaluate(TASKS, policy=policy, env_kwargs=env, **COMMON)
        for policy, env in LIMITS.items()
    }


@pytest.mark.parametrize(("slots", "workers"), [(1, 1), (3, 1), (3, 2)])
@pytest.mark.parametrize("policy", ["expert", "random"])
def test_expert_and_random_give_the_unbatched_episodes(unbatched, policy, slots, workers):
    """Eight episodes through `slots` slots (each slot runs several, switching task)."""
    done = []
    results = evaluate(
        TASKS,
        policy=policy,
        batch=slots,
        workers=workers,
        env_kwargs=LIMITS[policy],
        progress=done.append,
        **COMMON,
    )
    _same_episodes(unbatched[policy], results)
    assert sum(done) == 8 and set(done) == {1}
    for task in TASKS:
        assert [e.seed for e in results[task]] == [episode_seed(5, task, i) for i in range(4)]
        assert results[task][0].frames.shape == (results[task][0].steps + 1, 16, 16, 3)
        assert all(e.frames is None for e in results[task][1:])
    if policy == "expert":  # episodes of different lengths: slots refilled at different steps
        steps = {e.steps for task in TASKS for e in results[task]}
        assert len(steps) > 1 and all(e.success for task in TASKS for e in results[task])


class _ExplodingPolicy:
    """A user policy without make_batch: batched evaluation builds one per slot."""

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


def test_an_episode_that_raises_is_recorded_and_the_others_go_on():
    results = evaluate(
        TASKS,
        policy="exploding",
        episodes_per_task=3,
        env_kwargs=ENV_KWARGS,
        policy_factory=_exploding_factory,
        batch=2,
    )
    for task in TASKS:
        assert [e.index for e in results[task]] == [0, 1, 2]
        for ep in results[task]:
            assert not ep.success and ep.steps == 2
            assert "simulated policy failure" in ep.error


def test_batch_must_be_a_positive_int():
    for bad in (0, -1, True, 2.0):
        with pytest.raises(UserError, match="batch="):
            evaluate(TASKS, policy="random", episodes_per_task=1, batch=bad)
        with pytest.raises(UserError, match="batch="):
            evaluate_chains(policy="random", num_chains=1, batch=bad)


def test_chains_with_batch_equal_chains_without():
    kwargs = {
        "policy": "expert",
        "num_chains": 3,
        "chain_length": 2,
        "steps_per_subtask": 50,
        "image_size": 16,
        "base_seed": 1,
        "videos": 1,
    }
    plain = evaluate_chains(**kwargs)
    done = []
    batched = evaluate_chains(batch=2, workers=2, progress=done.append, **kwargs)
    assert [c.to_json() for c in plain] == [c.to_json() for c in batched]
    np.testing.assert_array_equal(plain[0].frames, batched[0].frames)
    assert batched[1].frames is None and sum(done) == 3
    assert any(c.completed >= 1 for c in plain)  # a subtask switch reset the policy's row


def test_an_env_worker_ends_when_the_pipe_to_its_parent_closes():
    """What happens to workers whose evaluating process dies: their pipe closes."""
    here, there = multiprocessing.Pipe()
    here.close()
    _serve(there, make_env, ENV_KWARGS, 1)  # returns instead of waiting for commands
