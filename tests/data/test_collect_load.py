"""Collect -> store -> load round trip on real (tiny) expert episodes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from vw_robot.data import format as fmt
from vw_robot.data.dataset import ClipDataset, FrameCache, labelled_per_task, select_labelled
from vw_robot.data.video import read_video
from vw_robot.envs import make_env
from vw_robot.eval.collect import EpisodeJob, collect, record_episode
from vw_robot.policies import ExpertPolicy

TASKS = ["metaworld/reach-v3", "metaworld/drawer-close-v3"]
SIZE = 32


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    summary = collect(root, TASKS, episodes_per_task=2, image_size=SIZE, workers=1)
    assert all(row["kept"] == 2 for row in summary["tasks"].values())
    return root


def test_layout_and_manifest(dataset_root):
    manifest = fmt.read_manifest(dataset_root)
    assert manifest["num_episodes"] == 4 and not manifest["unreadable"]
    for row in manifest["episodes"]:
        meta = fmt.read_meta(dataset_root, row["episode_id"])
        assert meta.image_size == SIZE and meta.has_actions and meta.success
        assert meta.env_spec["task_id"] == meta.task_id and meta.versions["mujoco"]
        steps = fmt.load_steps(dataset_root, meta)
        assert steps["actions"].shape == (meta.num_frames - 1, 4)
        assert steps["state"].shape == (meta.num_frames, 4)
        assert steps["success"][-1]  # recorded past the first success
    assert not list(dataset_root.rglob(".*.tmp*"))


def test_stored_episode_equals_what_the_env_produced(dataset_root):
    # Re-run the first episode by hand: the lossless video and arrays must equal it exactly.
    job = EpisodeJob(
        "metaworld/reach-v3",
        0,
        0,
        (("image_size", SIZE), ("camera", None), ("max_episode_steps", None)),
        "expert",
        False,
        5,
        "lossless",
        20,
    )
    env = make_env("metaworld/reach-v3", image_size=SIZE)
    try:
        fresh = record_episode(env, ExpertPolicy(), job)
    finally:
        env.close()
    meta = fmt.read_meta(dataset_root, job.episode_id)
    decoded = read_video(fmt.episode_dir(dataset_root, job.episode_id) / fmt.VIDEO_FILE)
    np.testing.assert_array_equal(decoded, fresh["frames"])
    np.testing.assert_array_equal(
        fmt.load_steps(dataset_root, meta)["actions"], fresh["steps"]["actions"]
    )
    cached = FrameCache(dataset_root).frames(meta)
    np.testing.assert_array_equal(cached, decoded)


def test_clips_never_cross_episodes_and_match_the_episode(dataset_root):
    strided = ClipDataset(dataset_root, clip_len=4, stride=2)
    expected = sum(len(range(0, e.meta.num_frames - 3, 2)) for e in strided.episodes)
    assert len(strided) == expected
    for number, start in strided.index:
        assert start + 4 <= strided.episodes[number].meta.num_frames
    ds = ClipDataset(dataset_root, clip_len=4)
    item = ds[len(ds) - 1]  # stride 1: the last clip ends at the last episode's last frame
    episode = ds.episodes[-1]
    assert item["frames"].shape == (4, 3, SIZE, SIZE) and item["frames"].dtype == torch.uint8
    np.testing.assert_array_equal(item["frames"].permute(0, 2, 3, 1).numpy(), episode.frames[-4:])
    # The last frame has no action: masked and zero.
    assert item["action_mask"].tolist() == [True, True, True, False]
    np.testing.assert_array_equal(item["actions"][:3].numpy(), episode.steps["actions"][-3:])
    assert float(item["actions"][3].abs().sum()) == 0.0
    assert ds.task_ids[int(item["task_index"])] == episode.meta.task_id


def test_frame_step_subsamples(dataset_root):
    ds = ClipDataset(dataset_root, clip_len=3, frame_step=2)
    item, episode = ds[0], ds.episodes[0]
    np.testing.assert_array_equal(
        item["frames"].permute(0, 2, 3, 1).numpy(), episode.frames[[0, 2, 4]]
    )


def test_label_subset_is_deterministic_and_nested():
    ids = [f"ep{i}" for i in range(40)]
    a = select_labelled(ids, label_fraction=0.25, seed=3)
    assert a == select_labelled(list(reversed(ids)), label_fraction=0.25, seed=3)
    assert len(a) == 10 and a <= select_labelled(ids, label_fraction=0.5, seed=3)
    assert len(select_labelled(ids, labelled_episodes=4, seed=3)) == 4
    with pytest.raises(ValueError):
        select_labelled(ids, label_fraction=0.5, labelled_episodes=2)


def test_label_subset_is_stratified_by_task():
    # 20 + 20 + 16 episodes: an unstratified 10% draw can leave a task with no labels at all.
    sizes = {"a": 20, "b": 20, "c": 16}
    task_of = {f"{t}{i:02d}": t for t, n in sizes.items() for i in range(n)}
    ids = list(task_of)

    def per_task(subset):
        return {t: sum(task_of[e] == t for e in subset) for t in sizes}

    for seed in range(5):
        small = select_labelled(ids, label_fraction=0.1, seed=seed, task_of=task_of)
        quarter = select_labelled(ids, label_fraction=0.25, seed=seed, task_of=task_of)
        assert per_task(small) == {"a": 2, "b": 2, "c": 2}  # 1.6 rounds up to 2
        assert per_task(quarter) == {"a": 5, "b": 5, "c": 4}
        assert small <= quarter
        assert per_task(select_labelled(ids, label_fraction=0.01, seed=seed, task_of=task_of)) == {
            "a": 1,
            "b": 1,
            "c": 1,
        }
        dealt = select_labelled(ids, labelled_episodes=7, seed=seed, task_of=task_of)
        assert per_task(dealt) == {"a": 3, "b": 2, "c": 2}
        assert dealt <= select_labelled(ids, labelled_episodes=8, seed=seed, task_of=task_of)
    # A task's subset does not depend on the other tasks' episodes.
    only_c = {e: t for e, t in task_of.items() if t == "c"}
    assert select_labelled(list(only_c), label_fraction=0.25, seed=1, task_of=only_c) == {
        e for e in select_labelled(ids, label_fraction=0.25, seed=1, task_of=task_of) if e in only_c
    }
    assert select_labelled(ids, labelled_episodes=100, seed=0, task_of=task_of) == set(ids)
    with pytest.raises(ValueError, match="a00"):
        select_labelled(ids, label_fraction=0.5, task_of={"b00": "b"})
    assert labelled_per_task(sorted(small), task_of) == "6 (2 per task over 3 tasks)"
    assert labelled_per_task(sorted(quarter), task_of) == "14 (4-5 per task over 3 tasks)"


def test_unlabelled_episodes_hide_actions(dataset_root):
    ds = ClipDataset(dataset_root, clip_len=2, labelled_episodes=1)
    flags = {bool(ds[k]["has_actions"]) for k in range(len(ds))}
    assert flags == {True, False}
    unlabelled = next(ds[k] for k in range(len(ds)) if not ds[k]["has_actions"])
    assert not unlabelled["action_mask"].any()


def test_action_stats_computed_once_and_stored(dataset_root):
    ds = ClipDataset(dataset_root, clip_len=2)
    stats = ds.action_stats()
    actions = np.concatenate([e.steps["actions"] for e in ds.episodes])
    np.testing.assert_allclose(stats["mean"], actions.mean(0), rtol=1e-5)
    files = list((dataset_root / fmt.CACHE_DIR / "action_stats").glob("*.json"))
    assert len(files) == 1
    assert json.loads(files[0].read_text())["stats"] == stats


def test_cache_is_rebuilt_when_the_video_changes(tmp_path):
    root = tmp_path / "d"
    collect(root, TASKS[:1], episodes_per_task=1, image_size=SIZE)
    meta = fmt.read_meta(root, fmt.read_manifest(root)["episodes"][0]["episode_id"])
    cache = FrameCache(root)
    before = np.array(cache.frames(meta))
    # The episode is rewritten (e.g. re-collected) with different frames.
    frames = 255 - before
    fmt.write_episode(root, meta, frames, fmt.load_steps(root, meta))
    after = cache.frames(fmt.read_meta(root, meta.episode_id))
    np.testing.assert_array_equal(after, frames)


def test_resume_after_an_interrupted_collection(tmp_path):
    root = tmp_path / "d"
    collect(root, TASKS[:1], episodes_per_task=2, image_size=SIZE)
    ids = [r["episode_id"] for r in fmt.read_manifest(root)["episodes"]]
    # Interrupt: episode 1 lost its completion marker mid-write, a temp file is left over.
    (fmt.episode_dir(root, ids[1]) / fmt.META_FILE).unlink()
    (fmt.episode_dir(root, ids[1]) / ".video.tmp.mp4").write_bytes(b"partial")
    kept_mtime = os.stat(fmt.episode_dir(root, ids[0]) / fmt.VIDEO_FILE).st_mtime_ns
    summary = collect(root, TASKS[:1], episodes_per_task=3, image_size=SIZE)
    row = summary["tasks"][TASKS[0]]
    assert (row["skipped"], row["kept"]) == (1, 2)
    assert os.stat(fmt.episode_dir(root, ids[0]) / fmt.VIDEO_FILE).st_mtime_ns == kept_mtime
    assert fmt.read_manifest(root)["num_episodes"] == 3


def test_resuming_with_another_camera_is_refused(dataset_root, tmp_path):
    """Episode ids name task, seed and index, not the camera: a rerun with another camera would
    skip them as complete and leave a dataset of mixed cameras. Refused, nothing written; the
    head refuses labelled episodes of several cameras too."""
    import shutil

    from vw_robot.training.config import TrainConfig
    from vw_robot.training.stages import run_stage

    root = tmp_path / "d"
    shutil.copytree(dataset_root, root)
    before = sorted(p.name for p in (root / "episodes").iterdir())
    with pytest.raises(fmt.DatasetError, match=r"camera='front\+top'.*camera='corner2'"):
        collect(root, TASKS, episodes_per_task=3, image_size=SIZE, camera="corner2")
    assert sorted(p.name for p in (root / "episodes").iterdir()) == before
    # The suite's default camera (the view policies train on), named or not, resumes.
    collect(root, TASKS[:1], episodes_per_task=2, image_size=SIZE, camera="front+top")
    collect(root, TASKS[:1], episodes_per_task=2, image_size=SIZE)
    # Another collection seed adds new ids with the other camera: the dataset mixes them, and
    # a head trained on both is refused, naming the cameras.
    collect(root, TASKS[:1], episodes_per_task=1, image_size=SIZE, camera="corner2", seed=7)
    cfg = TrainConfig(stage="bc", dataset=str(root), out=str(tmp_path / "runs"))
    with pytest.raises(fmt.DatasetError, match=r"2 cameras \('front\+top'.*'corner2'"):
        run_stage(cfg)


def test_same_seeds_give_the_same_episodes(tmp_path):
    for name in ("a", "b"):
        collect(tmp_path / name, TASKS[:1], episodes_per_task=1, image_size=SIZE, seed=4)
    episode_id = fmt.read_manifest(tmp_path / "a")["episodes"][0]["episode_id"]
    a, b = (fmt.read_meta(tmp_path / n, episode_id) for n in ("a", "b"))
    assert a.video_sha256 == b.video_sha256 and a.seed == b.seed
    np.testing.assert_array_equal(
        fmt.load_steps(tmp_path / "a", a)["actions"], fmt.load_steps(tmp_path / "b", b)["actions"]
    )


def test_dataset_settings_are_fixed(tmp_path):
    root = tmp_path / "d"
    collect(root, TASKS[:1], episodes_per_task=1, image_size=SIZE)
    with pytest.raises(fmt.DatasetError, match="image_size=32.*image_size=64"):
        collect(root, TASKS[:1], episodes_per_task=1, image_size=64)


def test_refuses_a_non_empty_folder_that_is_not_a_dataset(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(fmt.DatasetError, match="not empty"):
        collect(tmp_path, TASKS[:1], episodes_per_task=1, image_size=SIZE)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_failed_demos_are_dropped_and_counted(tmp_path):
    summary = collect(
        tmp_path / "d",
        ["metaworld/reach-v3"],
        episodes_per_task=2,
        image_size=16,
        max_episode_steps=3,
        policy="random",
    )
    row = summary["tasks"]["metaworld/reach-v3"]
    assert (row["kept"], row["dropped"]) == (0, 2)
    assert len(fmt.read_manifest(tmp_path / "d")["dropped"]) == 2
    kept = collect(
        tmp_path / "k",
        ["metaworld/reach-v3"],
        episodes_per_task=1,
        image_size=16,
        max_episode_steps=3,
        policy="random",
        keep_failed=True,
    )
    assert kept["tasks"]["metaworld/reach-v3"]["kept"] == 1


def test_two_workers_write_the_same_dataset_as_one(tmp_path):
    collect(tmp_path / "one", TASKS, episodes_per_task=1, image_size=16, workers=1)
    collect(tmp_path / "two", TASKS, episodes_per_task=1, image_size=16, workers=2)
    rows = [fmt.read_manifest(tmp_path / n)["episodes"] for n in ("one", "two")]
    assert rows[0] == rows[1]
    for row in rows[0]:
        shas = {fmt.read_meta(tmp_path / n, row["episode_id"]).video_sha256 for n in ("one", "two")}
        assert len(shas) == 1
