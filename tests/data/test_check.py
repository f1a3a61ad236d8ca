"""check_dataset / check_episode: a clean dataset passes; each planted defect is reported once
with the file it concerns; the check writes nothing."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from vw_robot.data import format as fmt
from vw_robot.data.check import check_dataset, check_episode, find_temp_files
from vw_robot.data.video import write_video

SIZE, FPS, STEPS = 16, 10, 9  # 9 steps -> 10 frames


def _frames(rng: np.random.Generator, n: int, size: int = SIZE) -> np.ndarray:
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)  # (T+1, H, W, 3)


def _steps(rng: np.random.Generator, n: int = STEPS) -> dict[str, np.ndarray]:
    return {
        "actions": rng.uniform(-1, 1, (n, 4)).astype(np.float32),
        "state": rng.normal(size=(n + 1, 6)).astype(np.float32),
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


@pytest.fixture(scope="module")
def clean_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two episodes with actions ("ep0", "ep1") and one video-only episode ("vid0")."""
    root = tmp_path_factory.mktemp("clean") / "ds"
    rng = np.random.default_rng(0)
    fmt.init_dataset(root, image_size=SIZE, fps=FPS, codec="lossless")
    for i in range(2):
        fmt.write_episode(root, _meta(f"ep{i}", seed=i), _frames(rng, STEPS + 1), _steps(rng))
    fmt.write_episode(root, _meta("vid0", source="import:x.mp4", seed=None), _frames(rng, 8))
    fmt.write_manifest(root)
    return root


@pytest.fixture
def dataset(clean_dataset: Path, tmp_path: Path) -> Path:
    """A fresh copy of the clean dataset for a test to damage (encoding once saves seconds)."""
    return Path(shutil.copytree(clean_dataset, tmp_path / "ds"))


def _ep(root: Path, episode_id: str = "ep0") -> Path:
    return fmt.episode_dir(root, episode_id)


def _edit_meta(root: Path, episode_id: str, change: Callable[[dict], None]) -> Path:
    path = _ep(root, episode_id) / fmt.META_FILE
    payload = json.loads(path.read_text())
    change(payload)
    path.write_text(json.dumps(payload))
    return path


def _tree(root: Path) -> dict[str, tuple[str, int]]:
    """Every path under ``root`` with its content hash (files) and mtime; a folder's mtime
    changes when anything is created, renamed or deleted in it."""
    return {
        str(p.relative_to(root)): (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder",
            p.stat().st_mtime_ns,
        )
        for p in sorted([root, *root.rglob("*")])
    }


def test_clean_dataset_has_no_problems(dataset: Path) -> None:
    assert check_dataset(dataset) == []
    assert check_dataset(dataset, decode=False, workers=1) == []
    assert check_episode(dataset, "ep0") == []
    for episode_id in ("ep0", "ep1", "vid0"):
        assert check_episode(dataset, episode_id, decode=False) == []


# Each defect: plant it, return (file that must be named, phrase that must be in the line).
def _truncate_video(root: Path) -> tuple[Path, str]:
    video = _ep(root) / fmt.VIDEO_FILE
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 2])
    return video, "unreadable or truncated"


def _delete_video(root: Path) -> tuple[Path, str]:
    video = _ep(root) / fmt.VIDEO_FILE
    video.unlink()
    return video, "file is missing"


def _more_frames_in_meta(root: Path) -> tuple[Path, str]:
    _edit_meta(root, "vid0", lambda m: m.update(num_frames=m["num_frames"] + 3))
    return _ep(root, "vid0") / fmt.VIDEO_FILE, "decodes to 8 frames, meta.json says num_frames=11"


def _video_of_other_size(root: Path) -> tuple[Path, str]:
    # Valid checksum, so the only fault is the frames' size.
    video = _ep(root) / fmt.VIDEO_FILE
    write_video(video, _frames(np.random.default_rng(1), STEPS + 1, size=20), FPS)
    _edit_meta(root, "ep0", lambda m: m.update(video_sha256=fmt.sha256_file(video)))
    return video, "frames are 20x20, meta.json says image_size=16"


def _episode_of_other_size(root: Path) -> tuple[Path, str]:
    rng = np.random.default_rng(1)
    fmt.write_episode(root, _meta("ep0"), _frames(rng, STEPS + 1, size=20), _steps(rng))
    fmt.write_manifest(root)
    return _ep(root) / fmt.META_FILE, "image_size is 20 but dataset.json says 16"


def _nan_action(root: Path) -> tuple[Path, str]:
    path = _ep(root) / fmt.STEPS_FILE
    steps = dict(np.load(path))
    steps["actions"][3, 1] = np.nan
    np.savez(path, **steps)
    return path, "array 'actions' contains NaN or inf"


def _short_actions(root: Path) -> tuple[Path, str]:
    path = _ep(root) / fmt.STEPS_FILE
    steps = dict(np.load(path))
    steps["actions"] = steps["actions"][:-2]
    np.savez(path, **steps)
    return path, "array 'actions' has 7 rows"


def _malformed_meta(root: Path) -> tuple[Path, str]:
    path = _ep(root) / fmt.META_FILE
    path.write_text('{"episode_id": "ep0", ')
    return path, "malformed JSON"


def _meta_without_key(root: Path) -> tuple[Path, str]:
    return _edit_meta(root, "ep0", lambda m: m.pop("fps")), "missing key(s) fps"


def _meta_wrong_type(root: Path) -> tuple[Path, str]:
    return _edit_meta(
        root, "ep0", lambda m: m.update(num_frames="10")
    ), "'num_frames' should be int"


def _video_replaced(root: Path) -> tuple[Path, str]:
    # Same shape and count: decodes fine, only the checksum gives it away.
    video = _ep(root) / fmt.VIDEO_FILE
    write_video(video, _frames(np.random.default_rng(2), STEPS + 1), FPS)
    return video, "differs from meta.json's"


def _stray_steps(root: Path) -> tuple[Path, str]:
    path = _ep(root, "vid0") / fmt.STEPS_FILE
    np.savez(path, **_steps(np.random.default_rng(3), 7))
    return path, "present although meta.json says has_actions=false"


def _deleted_steps(root: Path) -> tuple[Path, str]:
    path = _ep(root) / fmt.STEPS_FILE
    path.unlink()
    return path, "file is missing (meta says has_actions=true)"


def _wrong_episode_id(root: Path) -> tuple[Path, str]:
    path = _edit_meta(root, "vid0", lambda m: m.update(episode_id="vid9"))
    return path, "episode_id is 'vid9' but the folder is 'vid0'"


def _incomplete_episode(root: Path) -> tuple[Path, str]:
    path = _ep(root, "ep1") / fmt.META_FILE
    path.unlink()
    return path, "the episode is incomplete"


DEFECTS = [
    _truncate_video,
    _delete_video,
    _more_frames_in_meta,
    _video_of_other_size,
    _episode_of_other_size,
    _nan_action,
    _short_actions,
    _malformed_meta,
    _meta_without_key,
    _meta_wrong_type,
    _video_replaced,
    _stray_steps,
    _deleted_steps,
    _wrong_episode_id,
    _incomplete_episode,
]


@pytest.mark.parametrize("plant", DEFECTS, ids=lambda f: f.__name__.strip("_"))
def test_planted_defect_is_reported_with_its_file(
    dataset: Path, plant: Callable[[Path], tuple[Path, str]]
) -> None:
    path, phrase = plant(dataset)
    problems = check_dataset(dataset)
    hits = [p for p in problems if str(path) in p and phrase in p]
    assert hits, problems
    assert all("\n" not in p for p in problems)


@pytest.mark.parametrize("plant", [_truncate_video, _malformed_meta, _nan_action, _stray_steps])
def test_check_episode_reports_what_check_dataset_reports(
    dataset: Path, plant: Callable[[Path], tuple[Path, str]]
) -> None:
    path, _ = plant(dataset)
    folder = str(path.parent)
    expected = [p for p in check_dataset(dataset) if p.startswith(folder)]
    assert expected and check_episode(dataset, path.parent.name) == expected


def test_video_replaced_is_its_only_problem(dataset: Path) -> None:
    path, _ = _video_replaced(dataset)
    assert len(check_dataset(dataset)) == 1
    assert len(check_episode(dataset, "ep0", decode=False)) == 1


def test_fast_path_skips_decoding_but_still_checks_presence_and_checksum(dataset: Path) -> None:
    video, _ = _truncate_video(dataset)
    fast = check_episode(dataset, "ep0", decode=False)
    assert len(fast) == 1 and str(video) in fast[0] and "SHA-256" in fast[0]
    full = check_episode(dataset, "ep0")
    assert any("unreadable or truncated" in p for p in full) and len(full) == 2
    video.unlink()
    assert check_episode(dataset, "ep0", decode=False) == [f"{video}: file is missing."]


def test_frame_count_in_meta_also_breaks_steps_and_manifest(dataset: Path) -> None:
    _edit_meta(dataset, "ep0", lambda m: m.update(num_frames=12))
    problems = "\n".join(check_dataset(dataset))
    assert "decodes to 10 frames, meta.json says num_frames=12" in problems
    assert f"{_ep(dataset) / fmt.STEPS_FILE}: array 'actions' has 9 rows" in problems
    assert "episode 'ep0' has num_frames=10, its meta.json says 12" in problems


def test_dataset_file_problems(dataset: Path) -> None:
    info_path = dataset / fmt.DATASET_FILE
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({**info, "version": 99}))
    assert any(str(info_path) in p and "version 99" in p for p in check_dataset(dataset))
    info_path.write_text(json.dumps({**info, "image_size": 32}))
    problems = check_dataset(dataset)
    assert sum("image_size is 16 but dataset.json says 32" in p for p in problems) == 3
    info_path.unlink()
    assert check_dataset(dataset) == [f"{info_path}: file is missing."]
    missing = dataset.parent / "nothing-here"
    assert check_dataset(missing) == [f"{missing}: dataset folder is missing or not a folder."]


def test_manifest_problems(dataset: Path) -> None:
    manifest_path = dataset / fmt.MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())

    def problems_with(payload: dict) -> str:
        manifest_path.write_text(json.dumps(payload))
        found = check_dataset(dataset, decode=False)
        assert found and all(str(manifest_path) in p for p in found), found
        return "\n".join(found)

    ghost = {**manifest["episodes"][0], "episode_id": "ghost"}
    text = problems_with({**manifest, "episodes": manifest["episodes"] + [ghost]})
    assert "lists episode 'ghost'" in text
    text = problems_with({**manifest, "episodes": manifest["episodes"][1:]})
    assert "not listed: ep0" in text
    rows = [dict(r) for r in manifest["episodes"]]
    rows[2]["task_id"] = "other"
    assert "episode 'vid0' has task_id='other'" in problems_with({**manifest, "episodes": rows})
    assert "num_frames is 1 but" in problems_with({**manifest, "num_frames": 1})
    assert "no 'episodes' list" in problems_with({"format": fmt.FORMAT})
    manifest_path.write_text("[")
    assert "malformed JSON" in "".join(check_dataset(dataset, decode=False))
    manifest_path.unlink()
    assert check_dataset(dataset, decode=False) == [
        f"{manifest_path}: file is missing; rebuild it with vw_robot.data.format.write_manifest."
    ]


def test_empty_new_dataset_is_clean(tmp_path: Path) -> None:
    fmt.init_dataset(tmp_path / "new", image_size=SIZE, fps=FPS, codec="lossless")
    assert check_dataset(tmp_path / "new") == []


def test_temporary_files_are_warned_about_not_failed(
    dataset: Path, caplog: pytest.LogCaptureFixture
) -> None:
    leftover = _ep(dataset) / ".video.tmp.mp4"
    leftover.write_bytes(b"half a video")
    with caplog.at_level(logging.WARNING, logger="vw_robot"):
        assert check_dataset(dataset) == []
    assert str(leftover) in caplog.text
    assert find_temp_files(dataset) == [leftover]


def test_check_never_modifies_the_dataset(dataset: Path) -> None:
    for plant in (_truncate_video, _nan_action, _malformed_meta, _stray_steps):
        plant(dataset)
    (dataset / fmt.MANIFEST_FILE).write_text("{")
    (_ep(dataset, "ep1") / ".steps.npz.x1.tmp").write_bytes(b"")
    before = _tree(dataset)
    assert check_dataset(dataset)
    for episode_id in ("ep0", "ep1", "vid0"):
        check_episode(dataset, episode_id)
    assert _tree(dataset) == before
