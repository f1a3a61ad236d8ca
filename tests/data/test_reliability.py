"""Nothing lost, nothing silent, data layer: values outside the action space, NaN,
manifests the loader and ``data check`` must both refuse with the same line, read-only and
shared datasets (cache elsewhere, files written with the umask), damaged frame caches."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vw_robot.data import format as fmt
from vw_robot.data.check import check_dataset
from vw_robot.data.dataset import ClipDataset, FrameCache, action_statistics
from vw_robot.data.sequences import ActionChunkDataset, SequenceDataset, export_sequences
from vw_robot.errors import UserError
from vw_robot.io import atomic_write_text

SIZE, FPS, STEPS, ACTION_DIM = 16, 10, 9, 4  # 9 steps -> 10 frames


def _steps(rng: np.random.Generator, n: int = STEPS) -> dict[str, np.ndarray]:
    return {
        "actions": rng.uniform(-1, 1, (n, ACTION_DIM)).astype(np.float32),
        "state": rng.normal(size=(n + 1, 3)).astype(np.float32),
        "reward": rng.normal(size=n).astype(np.float32),
        "success": np.arange(n + 1) >= n,
    }


def _meta(episode_id: str, **overrides) -> fmt.EpisodeMeta:
    fields = dict(
        episode_id=episode_id,
        task_id="toy/reach",
        num_frames=0,
        image_size=0,
        fps=FPS,
        has_actions=False,
        source="expert",
        codec="lossless",
        video_sha256="",
        seed=0,
        success=True,
    )
    fields.update(overrides)
    return fmt.EpisodeMeta(**fields)


def _frames(rng: np.random.Generator, n: int = STEPS + 1) -> np.ndarray:
    return rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)  # (T+1, H, W, 3)


@pytest.fixture(scope="module")
def clean_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two labelled episodes, "ep0" (bounds not recorded: the default Box[-1, 1]) and "ep1"
    (bounds recorded)."""
    root = tmp_path_factory.mktemp("clean") / "ds"
    rng = np.random.default_rng(0)
    fmt.init_dataset(root, image_size=SIZE, fps=FPS, codec="lossless")
    fmt.write_episode(root, _meta("ep0"), _frames(rng), _steps(rng))
    bounds = {"action_low": [-1.0] * ACTION_DIM, "action_high": [1.0] * ACTION_DIM}
    fmt.write_episode(root, _meta("ep1", seed=1, **bounds), _frames(rng), _steps(rng))
    fmt.write_manifest(root)
    return root


@pytest.fixture
def dataset(clean_dataset: Path, tmp_path: Path) -> Path:
    """A fresh copy of the clean dataset (without a cache) for a test to change."""
    return Path(shutil.copytree(clean_dataset, tmp_path / "ds"))


def _edit_steps(root: Path, episode_id: str, name: str, index: tuple, value: float) -> Path:
    path = fmt.episode_dir(root, episode_id) / fmt.STEPS_FILE
    steps = dict(np.load(path))
    steps[name][index] = value
    np.savez(path, **steps)
    return path


def _loader_error(root: Path, **kwargs) -> str:
    with pytest.raises(fmt.DatasetError) as caught:
        ClipDataset(root, clip_len=2, **kwargs)
    return str(caught.value)


# ----------------------------------------------------------------- values


def test_dataset_error_is_a_user_error() -> None:
    assert issubclass(fmt.DatasetError, UserError) and issubclass(fmt.DatasetError, ValueError)


@pytest.mark.parametrize("episode_id", ["ep0", "ep1"])  # default and recorded bounds
def test_huge_action_refused_by_check_and_loader(dataset: Path, episode_id: str) -> None:
    path = _edit_steps(dataset, episode_id, "actions", (4, 2), 1e30)
    problems = check_dataset(dataset, decode=False)
    assert len(problems) == 1, problems
    line = problems[0]
    assert line.startswith(f"{path}: action out of range in episode {episode_id!r}: ")
    assert "step 4, dimension 2 is 1e+30, outside [-1, 1]" in line
    assert line in _loader_error(dataset)  # the loader refuses with the same line
    meta = fmt.read_meta(dataset, episode_id)
    with pytest.raises(fmt.DatasetError, match="step 4, dimension 2 is 1e"):
        fmt.load_steps(dataset, meta)  # what the action-head stage reads
    with pytest.raises(fmt.DatasetError, match="step 4, dimension 2 is 1e"):
        ActionChunkDataset(dataset, None, 2, [episode_id], task_ids=["toy/reach"])


def test_action_range_comes_from_meta_and_has_a_tolerance(tmp_path: Path) -> None:
    root, rng = tmp_path / "ds", np.random.default_rng(1)
    fmt.init_dataset(root, image_size=SIZE, fps=FPS, codec="lossless")
    wide = {"action_low": [-2.0] * ACTION_DIM, "action_high": [2.0] * ACTION_DIM}
    steps = _steps(rng)
    steps["actions"][0, 0] = 1.9  # inside the recorded Box[-2, 2]
    fmt.write_episode(root, _meta("wide", **wide), _frames(rng), steps)
    steps = _steps(rng)
    steps["actions"][0, 0] = 1.0005  # float rounding of a clipped expert action
    fmt.write_episode(root, _meta("edge"), _frames(rng), steps)
    fmt.write_manifest(root)
    assert check_dataset(root, decode=False) == []
    steps["actions"][0, 0] = 1.1
    with pytest.raises(fmt.DatasetError, match=r"default action space Box\[-1, 1\]"):
        fmt.write_episode(root, _meta("bad"), _frames(rng), steps)
    assert not fmt.episode_dir(root, "bad").exists()  # refused before anything is written
    with pytest.raises(fmt.DatasetError, match="action_low has 2 value"):
        fmt.write_episode(
            root, _meta("short", action_low=[-1, -1], action_high=[1, 1]), _frames(rng), steps
        )


def test_nan_state_refused_by_check_and_loader(dataset: Path) -> None:
    path = _edit_steps(dataset, "ep1", "state", (5, 0), np.nan)
    problems = check_dataset(dataset, decode=False)
    assert problems == [
        f"{path}: array 'state' contains NaN or inf in episode 'ep1': frame 5, dimension 0 is "
        "nan (1 non-finite value(s) in all)."
    ]
    assert problems[0] in _loader_error(dataset)


def test_non_finite_normaliser_statistics_refused(dataset: Path) -> None:
    with pytest.raises(fmt.DatasetError, match="action std of dimension 1 is inf"):
        action_statistics(np.array([[0.0, 1e308], [0.0, -1e308]]), "demo")
    stats = action_statistics(np.full((3, 2), 3e38, np.float32), "demo")  # float64: no overflow
    assert np.isfinite(stats["std"]).all() and stats["count"] == 3
    # A stored statistics file that is not finite (written by an older version) is recomputed.
    ds = ClipDataset(dataset, clip_len=2)
    good = ds.action_stats()
    (stored,) = (fmt.cache_root(dataset) / "action_stats").glob("*.json")
    payload = json.loads(stored.read_text())
    payload["stats"]["std"][0] = float("inf")
    stored.write_text(json.dumps(payload))
    assert ds.action_stats() == good
    assert np.isfinite(json.loads(stored.read_text())["stats"]["std"]).all()


# ----------------------------------------------------------------- manifest


def _rewrite_manifest(root: Path, change) -> Path:
    path = root / fmt.MANIFEST_FILE
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))
    return path


@pytest.mark.parametrize(
    "change, phrase",
    [
        (lambda m: m["episodes"].append(dict(m["episodes"][0])), "'ep0' is listed more than once"),
        (lambda m: m["episodes"].pop(), "complete episode(s) not listed: ep1"),
    ],
    ids=["duplicate", "missing"],
)
def test_manifest_refused_by_check_and_loader_with_the_same_lines(
    dataset: Path, change, phrase: str
) -> None:
    path = _rewrite_manifest(dataset, change)
    problems = check_dataset(dataset, decode=False)
    assert any(phrase in p and p.startswith(str(path)) for p in problems), problems
    with pytest.raises(fmt.DatasetError) as caught:
        fmt.read_manifest(dataset)  # the reader training uses
    for message in (str(caught.value), _loader_error(dataset, on_bad_episode="skip")):
        assert all(p in message for p in problems), (problems, message)
    with pytest.raises(fmt.DatasetError, match="listed more than once|not listed"):
        SequenceDataset(dataset, "anykey", 2)


def test_unlisted_incomplete_episode_refused_unless_skipped(dataset: Path) -> None:
    folder = fmt.episode_dir(dataset, "ep2")
    folder.mkdir()
    (folder / fmt.VIDEO_FILE).write_bytes(b"half a video")  # collection interrupted
    problems = check_dataset(dataset, decode=False)
    assert len(problems) == 1 and "the episode is incomplete" in problems[0]
    assert problems[0] in _loader_error(dataset)
    ds = ClipDataset(dataset, clip_len=2, on_bad_episode="skip")
    assert ds.skipped == ["ep2"] and len(ds.episodes) == 2


# ----------------------------------------------------------------- read-only, shared


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in [root, *root.rglob("*")]}


class _Tokenizer(torch.nn.Module):
    """Stands in for the tokenizer: (B, 3, S, S) uint8 -> (B, 2, 2) tokens."""

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return frames[:, :, ::8, ::8].float().mean(1).long()  # (B, 2, 2)


def _train_everything(root: Path, cache_dir: Path | None = None) -> None:
    """Every loader that writes derived files, and one optimiser step on a clip batch."""
    clips = ClipDataset(root, clip_len=2, cache_dir=cache_dir)
    clips.action_stats()
    batch = next(iter(torch.utils.data.DataLoader(clips, batch_size=4)))
    model = torch.nn.Linear(3, ACTION_DIM)
    features = batch["frames"].float().mean(dim=(1, 3, 4))  # (B, 3)
    loss = (model(features) - batch["actions"][:, 0]).pow(2).mean()
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    export_sequences(root, _Tokenizer(), None, "k", cache_dir=cache_dir)
    assert len(SequenceDataset(root, "k", 3, cache_dir=cache_dir)) > 0
    heads = ActionChunkDataset(
        root, "k", 2, ["ep0", "ep1"], task_ids=["toy/reach"], next_tokens=True, cache_dir=cache_dir
    )
    assert heads[0]["next_tokens"].shape == (4,)


def test_cache_root_choices(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert fmt.cache_root(dataset) == dataset / fmt.CACHE_DIR
    given = fmt.cache_root(dataset, tmp_path / "scratch")
    assert given.parent == tmp_path / "scratch" and given.name.startswith("ds-")
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if Path(p) == dataset else real_access(p, mode)
    )
    with caplog.at_level(logging.INFO, logger="vw_robot"):
        private = fmt.cache_root(dataset)
    assert private == tmp_path / "xdg" / "vw_robot" / given.name  # same key as under cache_dir
    assert f"{private} ({dataset} is not writable)" in caplog.text
    # Another folder with the same name gets another key.
    assert fmt.cache_root(tmp_path / "other" / "ds").name != private.name


def test_unwritable_dataset_trains_from_a_per_user_cache(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Works as root too (chmod would not stop root): the writability probe says no.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if Path(p) == dataset else real_access(p, mode)
    )
    before = _tree(dataset)
    _train_everything(dataset)
    assert _tree(dataset) == before  # nothing written inside the dataset
    cache = fmt.cache_root(dataset)
    assert cache.is_relative_to(tmp_path / "xdg")
    for sub in ("frames", "action_stats", "sequences/k"):
        assert any((cache / sub).iterdir()), sub


def test_cache_dir_option_keeps_the_dataset_untouched(dataset: Path, tmp_path: Path) -> None:
    before = _tree(dataset)
    _train_everything(dataset, cache_dir=tmp_path / "scratch")
    assert _tree(dataset) == before
    assert any((fmt.cache_root(dataset, tmp_path / "scratch") / "frames").iterdir())


def test_read_only_dataset_trains(dataset: Path, tmp_path: Path, monkeypatch) -> None:
    """``chmod -R a-w``: the per-user cache, for root too (whom access() lets write anywhere;
    CI runs as root), and nothing is written inside the dataset."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for path in [dataset, *dataset.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    before = _tree(dataset)
    try:
        _train_everything(dataset)
        assert fmt.cache_root(dataset).is_relative_to(tmp_path / "xdg")
        assert _tree(dataset) == before
    finally:
        for path in [dataset, *dataset.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["022", "027"])
def test_files_are_written_with_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        root, rng = tmp_path / "ds", np.random.default_rng(2)
        fmt.init_dataset(root, image_size=SIZE, fps=FPS, codec="lossless")
        fmt.write_episode(root, _meta("ep0"), _frames(rng), _steps(rng))
        fmt.write_manifest(root)
        ClipDataset(root, clip_len=2).action_stats()
        atomic_write_text(tmp_path / "note.txt", "x")
    finally:
        os.umask(old)
    files = [p for p in [tmp_path / "note.txt", *root.rglob("*")] if p.is_file()]
    names = {p.name for p in files}
    assert {"dataset.json", "manifest.json", "meta.json", "steps.npz", "ep0.u8"} <= names
    for path in files:  # lock files (".manifest.lock") included
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


# ----------------------------------------------------------------- frame cache


@pytest.mark.parametrize("damage", ["truncate", "flip", "old key", "key"])
def test_damaged_frame_cache_is_rebuilt(dataset: Path, damage: str, caplog) -> None:
    meta = fmt.read_meta(dataset, "ep0")
    cache = FrameCache(dataset)
    expected = np.array(cache.frames(meta))
    data = cache.folder / "ep0.u8"
    key = cache.folder / "ep0.json"
    if damage == "truncate":
        data.write_bytes(data.read_bytes()[:100])
    elif damage == "flip":  # same size, other bytes: only the checksum tells
        raw = bytearray(data.read_bytes())
        raw[7] ^= 0xFF
        data.write_bytes(bytes(raw))
    elif damage == "old key":  # written before checksums were recorded
        payload = json.loads(key.read_text())
        del payload["frames_sha256"]
        key.write_text(json.dumps(payload))
    else:
        key.write_text("{")
    with caplog.at_level(logging.WARNING, logger="vw_robot"):
        again = cache.frames(meta)
    np.testing.assert_array_equal(again, expected)
    assert f"frame cache {data}" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vw_robot"):
        np.testing.assert_array_equal(cache.frames(meta), expected)  # the rebuilt file is used
    assert not caplog.text
    ClipDataset(dataset, clip_len=2)
