"""Batched learned policies (``make_batch``): rows at different points of their episodes act as
each would alone, through the eval harness too (episodes, chains), on tiny random checkpoints."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vw_robot import checkpoint as ckpt
from vw_robot.envs import playground_tasks as pt
from vw_robot.envs.playground_suite import task_id as playground_task
from vw_robot.eval import evaluate
from vw_robot.eval.chains import evaluate_chains
from vw_robot.heads import run_name
from vw_robot.models.registry import build_model
from vw_robot.models.sequence_layout import SequenceLayout
from vw_robot.policies import make_policy
from vw_robot.policies.base import RowErrors
from vw_robot.policies.videoworld import PolicyMismatchError, load_policy

SIZE = 32
TASKS = ["metaworld/reach-v3", "metaworld/drawer-close-v3"]
# Batched and unbatched forwards differ only in float rounding (other matmul shapes); greedy
# decoding then makes the same choices and the head's actions differ by about 1e-7.
ACTION_ATOL = 1e-5


def _save(run: Path, stage: str, kind: str, config: dict, parents=None, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    return ckpt.save_checkpoint(
        run,
        stage=stage,
        step=0,
        model=build_model(kind, config),
        model_config=config,
        config_yaml="random: true\n",
        parents=parents,
    )


def build_tiny_policies(
    root: Path,
    tasks: list[str],
    positions: str = "absolute",
    chunk: int = 2,
    size: int = SIZE,
    camera: str | None = None,
) -> dict[str, Path]:
    """Randomly initialised tiny VideoWorld, BC and no-LDM policy checkpoints for ``tasks``
    (``size`` px frames of ``camera``, None: not recorded; 4-D actions) in the folders a run
    gives heads on every label (``videoworld-100pct_seed0``, ...): random weights decode and act
    like trained ones do."""
    levels, horizon = [8, 5, 5, 5], 2
    conv = {"image_size": size, "down_factor": 8, "channels": [8, 8, 8], "num_res_blocks": 1}
    tokenizer = _save(root / "tokenizer", "tokenizer", "FrameTokenizer", {**conv, "levels": levels})
    ldm_config = {**conv, "horizon": horizon, "dim": 16, "heads": 2, "layers": 1, "levels": levels}
    ldm = _save(root / "ldm", "ldm", "LatentDynamicsModel", ldm_config)

    def transformer(name: str, h: int) -> Path:
        layout = SequenceLayout(
            num_frame_tokens=(size // 8) ** 2,
            frame_vocab=math.prod(levels),
            horizon=h,
            code_vocab=math.prod(levels) if h else 1,
        )
        config = {
            "layout": dataclasses.asdict(layout),
            "num_layers": 2,
            "num_heads": 2,
            "dim": 32,
            "max_timesteps": 3,
            "positions": positions,
            "num_tasks": len(tasks),
            "task_ids": list(tasks),
        }
        parents = {"tokenizer": tokenizer, **({"ldm": ldm} if h else {})}
        return _save(root / name, "transformer", "VideoTransformer", config, parents, seed=1)

    head = {
        "image_size": size,
        "down_factor": 8,
        "channels": [8, 8, 8],
        "num_res_blocks": 1,
        "feature_dim": 8,
        "horizon": horizon,
        "code_levels": levels,
        "code_embed_dim": 4,
        "hidden": 32,
        "action_dim": 4,
        "chunk": chunk,
        "task_ids": list(tasks),
        "env": {"image_size": size, "camera": camera, "labelled_episodes": []},
    }
    with_codes = transformer("transformer", horizon)
    without = transformer("transformer_nocodes", 0)
    return {
        "videoworld": _save(
            root / run_name("videoworld", 1.0, 0),
            "action_head",
            "ActionHead",
            {**head, "use_codes": True},
            {"transformer": with_codes, "tokenizer": tokenizer, "ldm": ldm},
            seed=2,
        ),
        "bc": _save(
            root / run_name("bc", 1.0, 0), "bc", "ActionHead", {**head, "use_codes": False}, seed=3
        ),
        "noldm": _save(
            root / run_name("noldm", 1.0, 0),
            "noldm_head",
            "ActionHead",
            {**head, "use_codes": False, "use_next_frame": True},
            {"transformer": without, "tokenizer": tokenizer},
            seed=4,
        ),
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    paths = build_tiny_policies(root / "absolute", TASKS)
    paths["rope"] = build_tiny_policies(root / "rope", TASKS, positions="rope")["videoworld"]
    return paths


def _frames(row: int, steps: int) -> list[np.ndarray]:
    rng = np.random.default_rng(100 + row)
    return [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(steps)]


@pytest.mark.parametrize("kind", ["videoworld", "rope", "bc", "noldm"])
def test_rows_at_different_points_act_as_each_row_alone(tiny, kind):
    """Three rows restart at different steps, switch tasks and sit out some steps (so only
    some rows decode, with their KV-cache rows copied out and back); each row's actions
    equal those of a policy of its own driven through the single-env API."""
    batch = load_policy(tiny[kind]).make_batch(3)
    alone = [load_policy(tiny[kind]) for _ in range(3)]
    frames = [_frames(row, 14) for row in range(3)]
    restarts = {0: [0, 1, 2], 3: [1], 5: [2], 9: [0, 1]}
    idle = {4: [0], 6: [0, 2], 7: [1], 11: [2]}  # rows that do not act at that step
    for step in range(14):
        for row in restarts.get(step, []):
            task = TASKS[(row + step) % 2]
            batch.reset(row, task_id=task)
            alone[row].reset(task_id=task)
        rows = [row for row in range(3) if row not in idle.get(step, [])]
        obs = [{"pixels": frames[row][step]} for row in rows]
        got = batch.select_actions(obs, [{}] * len(rows), rows)
        assert got.shape == (len(rows), 4) and got.dtype == np.float32
        want = np.stack([alone[row].select_action(o) for row, o in zip(rows, obs, strict=True)])
        np.testing.assert_allclose(got, want, rtol=0, atol=ACTION_ATOL)
        if kind != "bc":  # every row's KV-cache row holds what its own policy's cache holds
            for row in range(3):
                assert _cached(batch._cache, row) == _cached(alone[row]._single._cache, 0)


def _cached(cache, row: int) -> list[tuple[int, int]]:
    """(id, position) of the entries a KV-cache row holds, in order."""
    valid = cache.valid[row, : cache.length]
    ids = cache.ids[row, : cache.length][valid]
    positions = cache.positions[row, : cache.length][valid]
    return list(zip(ids.tolist(), positions.tolist(), strict=True))


def test_a_row_that_cannot_read_its_observation_fails_alone(tiny):
    batch = load_policy(tiny["videoworld"]).make_batch(2)
    alone = load_policy(tiny["videoworld"])
    for row in range(2):
        batch.reset(row, task_id=TASKS[0])
    alone.reset(task_id=TASKS[0])
    good, bad = _frames(0, 2), {"pixels": np.zeros((16, 16, 3), np.uint8)}
    with pytest.raises(RowErrors) as caught:
        batch.select_actions([{"pixels": good[0]}, bad], [{}, {}], [0, 1])
    assert set(caught.value.errors) == {1} and set(caught.value.actions) == {0}
    assert isinstance(caught.value.errors[1], PolicyMismatchError)
    np.testing.assert_allclose(
        caught.value.actions[0], alone.select_action({"pixels": good[0]}), atol=ACTION_ATOL
    )
    # Row 0 took in its frame once: its next step still matches the policy alone.
    np.testing.assert_allclose(
        batch.select_actions([{"pixels": good[1]}], [{}], [0])[0],
        alone.select_action({"pixels": good[1]}),
        atol=ACTION_ATOL,
    )
    with pytest.raises(PolicyMismatchError, match="16x16"):  # the single-env API re-raises
        alone.select_action(bad)
    with pytest.raises(RuntimeError, match="before reset"):
        load_policy(tiny["bc"]).make_batch(2).select_actions([bad], [{}], [1])


def test_plan_frames_of_a_batch_row(tiny):
    batch = load_policy(tiny["videoworld"]).make_batch(2)
    frames = _frames(0, 1)
    for row in range(2):
        batch.reset(row, task_id=TASKS[row])
    batch.select_actions([{"pixels": frames[0]}, {"pixels": frames[0]}], [{}, {}], [0, 1])
    plan = batch.plan_frames(1)
    assert plan.shape == (3, SIZE, SIZE, 3)
    np.testing.assert_array_equal(plan[0], frames[0])


class _Recorder:
    """Wraps a learned policy (and its batches) to log every action per (task, seed)."""

    def __init__(self, policy, log: dict) -> None:
        self._policy, self._log, self._key = policy, log, None
        self.name = policy.name

    def check_task(self, *args, **kwargs):
        return self._policy.check_task(*args, **kwargs)

    def reset(self, *, task_id, action_space=None, seed=None):
        self._key = (task_id, seed)
        self._policy.reset(task_id=task_id, action_space=action_space, seed=seed)

    def select_action(self, obs, info=None):
        action = self._policy.select_action(obs, info)
        self._log.setdefault(self._key, []).append(action)
        return action

    def make_batch(self, size):
        return _BatchRecorder(self._policy.make_batch(size), self._log)


class _BatchRecorder:
    def __init__(self, batch, log: dict) -> None:
        self._batch, self._log, self._keys = batch, log, {}
        self.size = batch.size

    def reset(self, row, *, task_id, action_space=None, seed=None):
        self._keys[row] = (task_id, seed)
        self._batch.reset(row, task_id=task_id, action_space=action_space, seed=seed)

    def select_actions(self, obs, infos, rows):
        actions = self._batch.select_actions(obs, infos, rows)
        for row, action in zip(rows, actions, strict=True):
            self._log.setdefault(self._keys[row], []).append(action)
        return actions


def _recording(log: dict, **kwargs):
    return lambda spec: _Recorder(make_policy(spec, **kwargs), log)


def _assert_same_actions(one: dict, other: dict, keys) -> None:
    for key in keys:
        assert len(one[key]) == len(other[key]), key
        np.testing.assert_allclose(
            np.stack(one[key]), np.stack(other[key]), rtol=0, atol=ACTION_ATOL, err_msg=str(key)
        )


@pytest.mark.parametrize(("kind", "workers"), [("videoworld", 2), ("noldm", 1)])
def test_batched_evaluation_matches_the_unbatched_run_episode_by_episode(tiny, kind, workers):
    """Five episodes per task through three slots (slots refill, tasks switch mid-run)."""
    kwargs = {
        "policy": str(tiny[kind]),
        "episodes_per_task": 5,
        "base_seed": 3,
        "env_kwargs": {"image_size": SIZE, "max_episode_steps": 7},
        "stop_on_success": False,
    }
    plain_log, batched_log = {}, {}
    plain = evaluate(TASKS, workers=1, policy_factory=_recording(plain_log), **kwargs)
    done = []
    batched = evaluate(
        TASKS,
        workers=workers,
        batch=3,
        policy_factory=_recording(batched_log),
        progress=done.append,
        **kwargs,
    )
    assert sum(done) == 10
    for task in TASKS:
        assert [e.index for e in batched[task]] == list(range(5))
        for a, b in zip(plain[task], batched[task], strict=True):
            assert (a.seed, a.success, a.steps, a.error) == (b.seed, b.success, b.steps, b.error)
            assert a.episode_return == pytest.approx(b.episode_return, rel=1e-5, abs=1e-6)
            assert a.error is None and a.steps == 7
    keys = [(task, e.seed) for task in TASKS for e in plain[task]]
    _assert_same_actions(plain_log, batched_log, keys)


def test_batched_chains_of_a_learned_policy_match_unbatched_chains(tmp_path):
    subtasks = [playground_task(name) for name in pt.SUBTASK_NAMES]
    path = build_tiny_policies(tmp_path, subtasks, chunk=3)["videoworld"]
    kwargs = {"num_chains": 3, "chain_length": 2, "steps_per_subtask": 4, "image_size": SIZE}
    plain_log, batched_log = {}, {}
    plain = evaluate_chains(policy=str(path), policy_factory=_recording(plain_log), **kwargs)
    batched = evaluate_chains(
        policy=str(path), batch=2, policy_factory=_recording(batched_log), **kwargs
    )
    assert [c.to_json() for c in plain] == [c.to_json() for c in batched]
    keys = [k for k in plain_log if k[1] != 0]  # seed 0: the pre-flight check's one action
    assert len(keys) >= 3  # each chain's first subtask at least: the policy row was reset
    _assert_same_actions(plain_log, batched_log, keys)
