"""Labelled play, segments, action noise (DART) and random starts in ``vw-robot collect``.

Chains and play episodes record the subtask of every frame; ``segments=True`` writes each
completed subtask as an episode of its own; ``action_noise`` executes noisy actions and stores
the expert's clean ones. Tiny images (16 px) keep an episode under a couple of seconds.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from vw_robot.data import format as fmt
from vw_robot.data.check import check_dataset
from vw_robot.data.dataset import ClipDataset
from vw_robot.data.video import read_video
from vw_robot.envs import make_env
from vw_robot.errors import UserError
from vw_robot.eval.collect import EpisodeJob, collect, noise_rng
from vw_robot.eval.seeding import episode_seed
from vw_robot.policies import make_policy

SIZE = 16


def _collect(out, tasks, **kwargs):
    kwargs.setdefault("episodes_per_task", 1)
    return collect(out, tasks, image_size=SIZE, **kwargs)


def _episodes(out):
    return sorted(p.parent.name for p in (out / fmt.EPISODES_DIR).glob(f"*/{fmt.META_FILE}"))


def _steps(out, episode_id):
    return fmt.load_steps(out, fmt.read_meta(out, episode_id))


def _frames(out, episode_id):
    return read_video(fmt.episode_dir(out, episode_id) / fmt.VIDEO_FILE)


@pytest.fixture(scope="module")
def play(tmp_path_factory):
    """One play episode (8 subtasks) collected with segments."""
    out = tmp_path_factory.mktemp("play") / "data"
    summary = _collect(out, ["playground/play"], segments=True)
    return out, summary


# --------------------------------------------------------------------------- labels
def test_chain_labels_match_its_plan(tmp_path):
    out = tmp_path / "data"
    _collect(out, ["playground/chain"], keep_failed=True)
    (source,) = _episodes(out)
    meta = fmt.read_meta(out, source)
    env = make_env("playground/chain", image_size=SIZE)
    _, info = env.reset(seed=meta.seed)
    env.close()
    assert [entry["subtask"] for entry in meta.subtasks] == list(info["chain"])
    labels = _steps(out, source)["subtask"]
    assert len(labels) == meta.num_frames
    assert np.all(np.diff(labels) >= 0) and labels[0] == 0
    # Frames from a subtask's start to the next one's start carry its index.
    for k, entry in enumerate(meta.subtasks):
        if entry["start"] is None:
            assert k not in labels
            continue
        nxt = meta.subtasks[k + 1]["start"] if k + 1 < len(meta.subtasks) else None
        end = nxt if nxt is not None else len(labels)
        assert np.all(labels[entry["start"] : end] == k)
        if entry["success_step"] is not None:
            assert entry["success_step"] == end or k == len(meta.subtasks) - 1
    if meta.success:
        assert all(entry["success_step"] is not None for entry in meta.subtasks)


# --------------------------------------------------------------------------- segments
def test_segments_are_slices_of_their_source(play):
    out, summary = play
    assert summary["tasks"]["playground/play"]["segments"] >= 1
    source = [e for e in _episodes(out) if "__seg" not in e][0]
    source_meta = fmt.read_meta(out, source)
    steps, frames = _steps(out, source), _frames(out, source)
    segments = [e for e in _episodes(out) if e.startswith(f"{source}__seg")]
    done = [k for k, e in enumerate(source_meta.subtasks) if e["success_step"] is not None]
    assert len(segments) == len(done)
    for segment_id in segments:
        meta = fmt.read_meta(out, segment_id)
        window = meta.segment
        k, first, last = window["subtask_index"], window["start"], window["end"]
        entry = source_meta.subtasks[k]
        assert window["source_episode"] == source and window["source_task"] == "playground/play"
        assert meta.task_id == "playground/" + entry["subtask"].replace("_", "-")
        assert first == entry["start"] and window["success_step"] == entry["success_step"]
        assert meta.success is True and meta.num_frames == last - first + 1
        seg = _steps(out, segment_id)
        np.testing.assert_array_equal(seg["actions"], steps["actions"][first:last])
        np.testing.assert_array_equal(seg["state"], steps["state"][first : last + 1])
        np.testing.assert_array_equal(_frames(out, segment_id), frames[first : last + 1])
        # The window's own success: from its detector's frame on, never before.
        success = seg["success"]
        assert not success[: entry["success_step"] - first].any()
        assert success[entry["success_step"] - first :].all()
        assert "subtask" not in seg


def test_segments_pass_data_check_and_train_as_subtask_episodes(play):
    out, _ = play
    assert check_dataset(out) == []
    segment = [e for e in _episodes(out) if "__seg" in e][0]
    task = fmt.read_meta(out, segment).task_id
    data = ClipDataset(out, clip_len=2, tasks=[task])
    assert data.task_ids == [task]
    assert segment in data.labelled_ids


def test_resumed_collection_neither_duplicates_nor_drops_segments(play, tmp_path):
    source_out, _ = play
    out = tmp_path / "data"
    shutil.copytree(source_out, out, ignore=shutil.ignore_patterns("cache", ".*.lock"))
    before = _episodes(out)
    # An interruption between the segments and the source's meta: one segment is missing.
    victim = [e for e in before if "__seg" in e][-1]
    shutil.rmtree(fmt.episode_dir(out, victim))
    summary = _collect(out, ["playground/play"], segments=True)
    assert _episodes(out) == before
    assert summary["episodes_in_dataset"] == len(before)
    # Complete now: a second rerun records nothing.
    summary = _collect(out, ["playground/play"], segments=True)
    assert summary["tasks"]["playground/play"]["skipped"] == 1
    assert summary["tasks"]["playground/play"]["segments"] == 0
    assert _episodes(out) == before


def test_segments_asked_for_later_are_added_once(play, tmp_path):
    out = tmp_path / "data"
    _collect(out, ["playground/play"])  # labelled, without segments
    assert [e for e in _episodes(out) if "__seg" in e] == []
    _collect(out, ["playground/play"], segments=True)
    assert _episodes(out) == _episodes(play[0])


# --------------------------------------------------------------------------- action noise
def test_noisy_collection_stores_the_experts_clean_actions(tmp_path):
    out = tmp_path / "data"
    task = "playground/open-drawer"
    _collect(out, [task], action_noise=0.2, keep_failed=True)
    (episode,) = _episodes(out)
    assert "__noise0.2__" in episode
    meta = fmt.read_meta(out, episode)
    assert meta.action_noise == 0.2
    steps = _steps(out, episode)
    labels, executed = steps["actions"], steps["executed_actions"]
    assert np.all(np.abs(executed) <= 1.0)
    assert np.abs(labels - executed).mean() > 0.05
    # Replay what acted: the same states, on which the expert says exactly the stored labels.
    env = make_env(task, image_size=SIZE)
    expert = make_policy("expert")
    obs, info = env.reset(seed=meta.seed)
    expert.reset(task_id=task, action_space=env.action_space, seed=meta.seed)
    for t in range(len(labels)):
        np.testing.assert_array_equal(obs["state"], steps["state"][t])
        clean = np.clip(expert.select_action(obs, info), -1.0, 1.0)
        np.testing.assert_array_equal(clean.astype(np.float32), labels[t])
        obs, _, _, _, info = env.step(executed[t])
    env.close()
    # The noise is the episode seed's: drawn again, it gives what acted.
    shaken = labels + 0.2 * noise_rng(meta.seed).standard_normal(labels.shape)
    np.testing.assert_allclose(np.clip(shaken, -1, 1), executed, atol=1e-6)


def test_no_noise_records_the_episode_as_before(tmp_path):
    """action_noise=0 and start=home: same id, same meta keys, the arrays of a plain rollout."""
    out = tmp_path / "data"
    task = "playground/turn-on-led"
    _collect(out, [task], action_noise=0.0, start="home")
    episode = f"playground__turn-on-led__s0__{0:05d}"
    assert _episodes(out) == [episode]
    payload = fmt.read_json(fmt.episode_dir(out, episode) / fmt.META_FILE)
    assert not {"action_noise", "start", "subtasks", "segment"} & set(payload)
    steps = _steps(out, episode)
    assert sorted(steps) == ["actions", "reward", "state", "success"]
    # The rollout every collection made before the switches existed.
    env = make_env(task, image_size=SIZE)
    expert = make_policy("expert")
    seed = episode_seed(0, task, 0)
    obs, info = env.reset(seed=seed)
    expert.reset(task_id=task, action_space=env.action_space, seed=seed)
    actions, first = [], None
    while first is None or len(actions) < first + 5:
        action = np.asarray(expert.select_action(obs, info), dtype=np.float32)
        obs, _, _, _, info = env.step(action)
        actions.append(np.clip(action, env.action_space.low, env.action_space.high))
        if info["is_success"] and first is None:
            first = len(actions)
    env.close()
    np.testing.assert_array_equal(steps["actions"], np.stack(actions))


def test_job_ids_name_the_variants():
    job = EpisodeJob("playground/open-drawer", 3, 0, (), "expert", False, 5, "lossless", 20)
    assert job.episode_id == "playground__open-drawer__s0__00003"
    noisy = EpisodeJob(
        *[getattr(job, f) for f in ("task_id", "index", "base_seed")],
        (),
        "expert",
        False,
        5,
        "lossless",
        20,
        start="random",
        action_noise=0.1,
    )
    assert noisy.episode_id == "playground__open-drawer__s0__random__noise0.1__00003"


# --------------------------------------------------------------------------- random starts
def test_random_start_collection_is_recorded_as_such(tmp_path):
    out = tmp_path / "data"
    _collect(out, ["playground/push-red-block-left"], start="random", keep_failed=True)
    (episode,) = _episodes(out)
    assert "__random__" in episode
    assert fmt.read_meta(out, episode).start == "random"


# --------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("tasks", "kwargs", "key"),
    [
        (["playground/open-drawer"], {"action_noise": -0.1}, "action_noise"),
        (["playground/open-drawer"], {"action_noise": float("nan")}, "action_noise"),
        (["playground/open-drawer"], {"action_noise": True}, "action_noise"),
        (["playground/open-drawer"], {"start": "sideways"}, "start"),
        (["playground/chain"], {"start": "random"}, "start"),
        (["metaworld/reach-v3"], {"start": "random"}, "start"),
        (["playground/open-drawer"], {"segments": True}, "segments"),
        (["playground/play"], {"segments": "yes"}, "segments"),
    ],
)
def test_bad_switches_are_refused_naming_the_key(tmp_path, tasks, kwargs, key):
    with pytest.raises(UserError, match=f"{key}="):
        _collect(tmp_path / "data", tasks, **kwargs)
    assert not (tmp_path / "data").exists()  # refused before anything is written


def test_failed_chain_is_dropped_with_the_segments_it_completed(tmp_path):
    out = tmp_path / "data"
    # Random motion completes no subtask: the chain fails at its first, 360 steps in.
    summary = _collect(
        out, ["playground/chain"], segments=True, policy="random", max_episode_steps=400
    )
    assert summary["tasks"]["playground/chain"]["dropped"] == 1
    (record,) = (out / fmt.DROPPED_DIR).glob("*.json")
    assert fmt.read_json(record)["segments"] == []
    summary = _collect(
        out, ["playground/chain"], segments=True, policy="random", max_episode_steps=400
    )
    assert summary["tasks"]["playground/chain"]["skipped"] == 1


def test_a_subtask_label_outside_the_plan_is_refused(play, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(play[0], out, ignore=shutil.ignore_patterns("cache", ".*.lock"))
    source = [e for e in _episodes(out) if "__seg" not in e][0]
    path = fmt.episode_dir(out, source) / fmt.STEPS_FILE
    steps = dict(np.load(path))
    steps["subtask"][3] = 8  # a play episode has subtasks 0..7
    np.savez(path, **steps)
    with pytest.raises(fmt.DatasetError, match=r"array 'subtask' .* holds 8 at frame 3"):
        _steps(out, source)


def test_segments_never_rerecord_a_source_made_with_another_camera(play, tmp_path):
    out = tmp_path / "data"
    _collect(out, ["playground/play"])  # front camera, no segments
    with pytest.raises(fmt.DatasetError, match="camera='front'"):
        _collect(out, ["playground/play"], segments=True, camera="top")
    assert [e for e in _episodes(out) if "__seg" in e] == []
