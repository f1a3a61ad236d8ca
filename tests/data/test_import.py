"""import_videos: plain video files -> a dataset of unlabelled episodes, resumable, tolerant of
files that do not decode."""

from __future__ import annotations

import re
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

from vw_robot.data import format as fmt
from vw_robot.data.check import check_dataset
from vw_robot.data.importer import episode_id_for, import_videos
from vw_robot.data.video import read_video

BLUE, RED = (30, 60, 220), (220, 30, 30)


def _write_plain_video(path: Path, frames: int = 10, fps: int = 10) -> None:
    """A 40x30 clip as a phone or webcam would give: blue middle, 4-pixel red side bands that
    the centre crop (columns 5..34) must cut away."""
    image = np.empty((30, 40, 3), np.uint8)
    image[:] = BLUE
    image[:, :4] = image[:, 36:] = RED
    path.parent.mkdir(parents=True, exist_ok=True)
    with imageio.get_writer(path, fps=fps, macro_block_size=1) as writer:
        for _ in range(frames):
            writer.append_data(image)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("videos")
    _write_plain_video(src / "pick" / "a.mp4")
    _write_plain_video(src / "pick" / "day 2" / "b.mp4", frames=12)
    _write_plain_video(src / "push" / "c.mkv")
    (src / "push" / "notes.txt").write_text("not a video")
    return src


def _copy(videos: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(videos, tmp_path / "src"))


def test_import_makes_a_clean_dataset_with_folder_task_ids(videos: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    summary = import_videos(videos, out, image_size=16, codec="lossless")
    assert summary["imported"] == 3 and summary["skipped_existing"] == 0
    assert summary["failed"] == [] and summary["frames"] == 32 and summary["fps"] == 10
    assert summary["bytes"] == sum(p.stat().st_size for p in out.rglob(fmt.VIDEO_FILE))
    assert check_dataset(out) == []

    manifest = fmt.read_manifest(out)
    rows = {r["source"]: r for r in manifest["episodes"]}
    assert set(rows) == {"import:pick/a.mp4", "import:pick/day 2/b.mp4", "import:push/c.mkv"}
    assert rows["import:pick/day 2/b.mp4"]["task_id"] == "pick"
    assert rows["import:push/c.mkv"]["task_id"] == "push"
    for row in rows.values():
        meta = fmt.read_meta(out, row["episode_id"])
        assert not meta.has_actions and meta.seed is None and meta.success is None
        assert meta.image_size == 16 and meta.fps == 10
        assert not (fmt.episode_dir(out, meta.episode_id) / fmt.STEPS_FILE).exists()
    frames = read_video(
        fmt.episode_dir(out, rows["import:pick/day 2/b.mp4"]["episode_id"]) / fmt.VIDEO_FILE
    )
    assert frames.shape == (12, 16, 16, 3)
    # The centre crop removed the red side bands; what is left is the (lossily encoded) blue.
    assert np.abs(frames.astype(int) - BLUE).max() < 20


def test_rerun_skips_everything_and_changes_nothing(videos: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    import_videos(videos, out, image_size=16)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob(fmt.VIDEO_FILE)}
    again = import_videos(videos, out, image_size=16)
    assert again["imported"] == 0 and again["skipped_existing"] == 3 and again["failed"] == []
    assert {p: p.stat().st_mtime_ns for p in out.rglob(fmt.VIDEO_FILE)} == stamps


def test_interrupted_episode_is_finished_on_rerun(videos: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    import_videos(videos, out, image_size=16)
    episode = fmt.episode_dir(out, episode_id_for("pick/a.mp4"))
    (episode / fmt.META_FILE).unlink()  # as if killed between video and meta
    again = import_videos(videos, out, image_size=16)
    assert again["imported"] == 1 and again["skipped_existing"] == 2
    assert check_dataset(out) == []


def test_corrupt_file_is_reported_and_the_rest_imported(videos: Path, tmp_path: Path) -> None:
    src = _copy(videos, tmp_path)
    bad = src / "pick" / "broken.mp4"
    good = (src / "pick" / "a.mp4").read_bytes()
    bad.write_bytes(good[: len(good) // 2])
    # With its index at the front, a cut-off mp4 decodes without error, just short. (Noise
    # frames, so that the frame data and not the index makes up most of the file.)
    web = src / "push" / "web.mp4"
    with imageio.get_writer(web, fps=10, ffmpeg_params=["-movflags", "+faststart"]) as writer:
        for frame in np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), np.uint8):
            writer.append_data(frame)
    web.write_bytes(web.read_bytes()[: web.stat().st_size // 2])
    out = tmp_path / "ds"
    summary = import_videos(src, out, image_size=16)
    assert summary["imported"] == 3
    assert len(summary["failed"]) == 2
    assert summary["failed"][0].startswith(f"{bad}: cannot decode video")
    assert summary["failed"][1].startswith(f"{web}: truncated video")
    assert all("\n" not in line for line in summary["failed"])
    assert fmt.read_manifest(out)["num_episodes"] == 3
    assert check_dataset(out) == []


def test_task_id_labels_every_video_including_top_level_ones(videos: Path, tmp_path: Path) -> None:
    src = _copy(videos, tmp_path)
    _write_plain_video(src / "top.mp4", frames=5)
    with pytest.raises(ValueError, match=r"top\.mp4.*task_id"):
        import_videos(src, tmp_path / "ds", image_size=16)
    assert not (tmp_path / "ds").exists()  # refused before anything was written
    summary = import_videos(src, tmp_path / "ds", task_id="pour", image_size=16, fps=5)
    assert summary["imported"] == 4 and summary["fps"] == 5
    manifest = fmt.read_manifest(tmp_path / "ds")
    assert {r["task_id"] for r in manifest["episodes"]} == {"pour"}


def test_output_inside_source_is_not_imported_again(videos: Path, tmp_path: Path) -> None:
    src = _copy(videos, tmp_path)
    import_videos(src, src / "dataset", image_size=16)
    again = import_videos(src, src / "dataset", image_size=16)
    assert again["imported"] == 0 and again["skipped_existing"] == 3


def test_other_settings_than_the_existing_dataset_are_refused(videos: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    import_videos(videos, out, image_size=16)
    with pytest.raises(fmt.DatasetError, match="image_size"):
        import_videos(videos, out, image_size=32)


def test_bad_sources_raise_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(ValueError, match=re.escape(str(missing))):
        import_videos(missing, tmp_path / "ds")
    (tmp_path / "empty" / "task").mkdir(parents=True)
    (tmp_path / "empty" / "task" / "readme.txt").write_text("no videos")
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "empty")) + ".*no video"):
        import_videos(tmp_path / "empty", tmp_path / "ds")
    (tmp_path / "file.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match="not a folder"):
        import_videos(tmp_path / "file.mp4", tmp_path / "ds")
    with pytest.raises(ValueError, match="codec"):
        import_videos(tmp_path / "empty", tmp_path / "ds", codec="divx")
    assert not (tmp_path / "ds").exists()


def test_episode_ids_are_deterministic_safe_and_distinct() -> None:
    ids = [episode_id_for(p) for p in ("a b/c d.mp4", "a-b/c-d.mp4", "a b/c d.avi", "x/ü?.mp4")]
    assert len(set(ids)) == 4
    assert ids[0] == episode_id_for(Path("a b") / "c d.mp4")
    assert all(re.fullmatch(r"import__[A-Za-z0-9_-]+__[0-9a-f]{8}", i) for i in ids)
