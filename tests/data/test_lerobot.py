"""LeRobotDataset v3.0 export, validation and import (v3.0 and v2.1), on tiny data and on
folders written by LeRobot's own code (tests/data/fixtures/lerobot, made by make_fixtures.py
in a LeRobot venv)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vw_robot.data import format as fmt
from vw_robot.data.check import check_dataset
from vw_robot.data.lerobot import export_lerobot, import_lerobot, validate_lerobot
from vw_robot.data.video import read_video, resize_frames, write_video
from vw_robot.errors import UserError

FPS, SIZE = 10, 16
CAMERA = "observation.images.corner2"
# (frames, task id) per episode, in the manifest's (episode id) order.
EPISODES = ((8, "metaworld/reach-v3"), (5, "metaworld/push-v3"), (6, "metaworld/reach-v3"))
# What the CLI passes (vw_robot.envs.instructions); push-v3 is left out to test the fallback.
INSTRUCTIONS = {"metaworld/reach-v3": "reach the goal position"}
ROWS = 16  # an episode of N frames is N-1 (frame, action) rows and a final frame


def _make_dataset(root: Path) -> dict[str, dict[str, np.ndarray]]:
    """Our format, written directly: noise frames (so only an exact codec keeps them)."""
    rng = np.random.default_rng(0)
    fmt.init_dataset(root, image_size=SIZE, fps=FPS, codec="lossless")
    written = {}
    for k, (n, task) in enumerate(EPISODES):
        frames = rng.integers(0, 256, (n, SIZE, SIZE, 3), np.uint8)
        steps = {
            "actions": rng.uniform(-1, 1, (n - 1, 4)).astype(np.float32),
            "state": rng.normal(size=(n, 3)).astype(np.float32),
            "reward": rng.normal(size=n - 1).astype(np.float32),
            "success": np.zeros(n, bool),
        }
        meta = fmt.EpisodeMeta(
            episode_id=f"ep{k:03d}",
            task_id=task,
            num_frames=n,
            image_size=SIZE,
            fps=FPS,
            has_actions=True,
            source="expert",
            codec="lossless",
            video_sha256="",
            seed=k,
            env_spec={"task_id": task, "image_size": SIZE, "camera": "corner2"},
            action_low=[-1.0] * 4,
            action_high=[1.0] * 4,
        )
        fmt.write_episode(root, meta, frames, steps)
        written[meta.episode_id] = {"frames": frames, **steps}
    fmt.write_manifest(root)
    return written


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("ours") / "ds"
    return root, _make_dataset(root)


@pytest.fixture(scope="module")
def exported(source, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dst = tmp_path_factory.mktemp("lerobot") / "export"
    summary = export_lerobot(source[0], dst, instructions=INSTRUCTIONS)
    assert summary["episodes"] == 3 and summary["frames"] == ROWS and summary["tasks"] == 2
    assert summary["camera_key"] == CAMERA
    return dst


def _imported(out: Path) -> list[tuple[fmt.EpisodeMeta, np.ndarray, dict | None]]:
    rows = fmt.read_manifest(out)["episodes"]
    result = []
    for row in sorted(rows, key=lambda r: r["episode_id"]):
        meta = fmt.read_meta(out, row["episode_id"])
        frames = read_video(fmt.episode_dir(out, meta.episode_id) / fmt.VIDEO_FILE)
        steps = fmt.load_steps(out, meta) if meta.has_actions else None
        result.append((meta, frames, steps))
    return result


def test_export_validates_and_imports_back_exactly(source, exported, tmp_path):
    root, written = source
    assert validate_lerobot(exported) == []
    out = tmp_path / "back"
    summary = import_lerobot(exported, out, image_size=SIZE)
    assert summary["imported"] == 3 and summary["camera_key"] == CAMERA
    assert summary["version"] == "v3.0" and summary["fps"] == FPS
    assert check_dataset(out) == []
    episodes = _imported(out)
    assert [m.task_id for m, _, _ in episodes] == [task for _, task in EPISODES]
    for (meta, frames, steps), original in zip(episodes, written.values(), strict=True):
        assert np.array_equal(frames, original["frames"])  # lossless both ways, last frame too
        assert np.array_equal(steps["actions"], original["actions"])  # every action, once
        assert np.array_equal(steps["state"], original["state"])
        assert meta.num_frames == len(original["frames"]) and meta.has_actions
        # The recorded action space, not the data's range.
        assert (meta.action_low, meta.action_high) == ([-1.0] * 4, [1.0] * 4)


def test_export_layout_is_lerobot_v3(source, exported):
    info = json.loads((exported / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == FPS
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, ROWS, 2)
    assert info["vw_robot"] == {
        "task_ids": {
            "reach the goal position": "metaworld/reach-v3",
            "metaworld/push-v3": "metaworld/push-v3",
        },
        "final_frame": True,
        "action_low": [-1.0] * 4,
        "action_high": [1.0] * 4,
    }
    assert info["splits"] == {"train": "0:3"} and info["chunks_size"] == 1000
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["features"][CAMERA]["dtype"] == "video"
    assert info["features"][CAMERA]["shape"] == [SIZE, SIZE, 3]
    assert info["features"]["action"]["shape"] == [4]

    data = pq.read_table(exported / "data/chunk-000/file-000.parquet")
    assert data.schema.field("action").type == pa.list_(pa.float32(), 4)
    assert data.schema.field("observation.state").type == pa.list_(pa.float32(), 3)
    assert data.schema.field("timestamp").type == pa.float32()
    assert data.column("index").to_pylist() == list(range(ROWS))
    actions = np.concatenate([w["actions"] for w in source[1].values()])  # each once, in order
    assert np.array_equal(np.stack(data.column("action").to_numpy(zero_copy_only=False)), actions)
    assert pq.ParquetFile(exported / "data/chunk-000/file-000.parquet").num_row_groups == 3

    episodes = pq.read_table(exported / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["length"] for e in episodes] == [7, 4, 5]
    assert [e["dataset_from_index"] for e in episodes] == [0, 7, 11]
    # Each episode's video holds its rows' frames and then its final frame.
    assert [e[f"videos/{CAMERA}/from_timestamp"] for e in episodes] == [0.0, 0.8, 1.3]
    ends = [e[f"videos/{CAMERA}/to_timestamp"] for e in episodes]
    assert np.allclose(ends, [0.7, 1.2, 1.8])
    assert episodes[0]["tasks"] == ["reach the goal position"]
    assert episodes[1]["tasks"] == ["metaworld/push-v3"]  # no instruction given: the id
    assert episodes[0][f"stats/{CAMERA}/count"] == [7]
    last_states = [w["state"][-1].tolist() for w in source[1].values()]
    assert [e["vw_robot/final_state"] for e in episodes] == last_states

    tasks = pq.read_table(exported / "meta/tasks.parquet")
    assert tasks.column("task").to_pylist() == ["reach the goal position", "metaworld/push-v3"]
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]

    stats = json.loads((exported / "meta/stats.json").read_text())
    assert np.shape(stats[CAMERA]["mean"]) == (3, 1, 1) and stats[CAMERA]["count"] == [ROWS]
    pixels = np.concatenate([w["frames"][:-1] for w in source[1].values()]).reshape(-1, 3) / 255
    assert np.allclose(np.ravel(stats[CAMERA]["mean"]), pixels.mean(axis=0))
    assert np.allclose(np.ravel(stats[CAMERA]["std"]), pixels.std(axis=0))
    states = np.concatenate([w["state"][:-1] for w in source[1].values()])
    assert np.allclose(stats["observation.state"]["min"], states.min(axis=0))
    assert np.allclose(stats["observation.state"]["std"], states.std(axis=0), atol=1e-6)
    assert stats["frame_index"]["max"] == [6] and stats["index"]["count"] == [ROWS]


def test_small_files_roll_over_chunks_and_still_read(source, tmp_path):
    dst = tmp_path / "rolled"
    summary = export_lerobot(
        source[0], dst, chunks_size=2, data_files_size_in_mb=1e-6, video_files_size_in_mb=1e-6
    )
    assert summary["data_files"] == 3 and summary["video_files"] == 3
    assert (dst / "data/chunk-001/file-000.parquet").is_file()
    assert (dst / f"videos/{CAMERA}/chunk-001/file-000.mp4").is_file()
    assert validate_lerobot(dst) == []
    import_lerobot(dst, tmp_path / "back", image_size=SIZE)
    for (_, frames, steps), original in zip(
        _imported(tmp_path / "back"), source[1].values(), strict=True
    ):
        assert np.array_equal(frames, original["frames"])
        assert np.array_equal(steps["actions"], original["actions"])


def test_export_refuses_a_non_empty_folder_unless_told(source, tmp_path):
    dst = tmp_path / "taken"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty.*overwrite=True"):
        export_lerobot(source[0], dst)
    assert (dst / "keep.txt").read_text() == "mine"
    export_lerobot(source[0], dst, overwrite=True)
    assert not (dst / "keep.txt").exists() and validate_lerobot(dst) == []
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]  # no leftovers beside it


def _rewrite_episodes(dst: Path, column: str, change) -> None:
    path = dst / "meta/episodes/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    values = [change(i, v) for i, v in enumerate(table.column(column).to_pylist())]
    index = table.column_names.index(column)
    table = table.set_column(index, column, pa.array(values, table.schema.field(column).type))
    pq.write_table(table, path)


def test_validate_names_the_file_and_field_of_each_defect(exported, tmp_path):
    dst = Path(shutil.copytree(exported, tmp_path / "bad"))
    info = json.loads((dst / "meta/info.json").read_text())
    info["total_frames"] += 1
    (dst / "meta/info.json").write_text(json.dumps(info))
    _rewrite_episodes(dst, f"videos/{CAMERA}/to_timestamp", lambda i, v: v + (1.0 if i == 2 else 0))
    _rewrite_episodes(dst, "dataset_from_index", lambda i, v: v + (1 if i == 1 else 0))
    tasks = pq.read_table(dst / "meta/tasks.parquet")
    pq.write_table(tasks.replace_schema_metadata(None), dst / "meta/tasks.parquet")
    problems = validate_lerobot(dst)
    text = "\n".join(problems)
    assert "meta/info.json: field 'total_frames' is 17" in text
    assert "episode 2, videos/observation.images.corner2: to_timestamp" in text
    assert "episode 1: column 'dataset_from_index' is 8" in text
    assert "tasks.parquet: pandas metadata 'index_columns' is None" in text
    assert "it should be ['task']" in text
    assert "file-000.mp4 lasts 1.9 s (19 frames at 10 fps)" in text
    assert all(p.startswith(str(dst)) for p in problems)  # each names its file


# ------------------------------------------------------------------ foreign LeRobot folders


def _defaults(lengths: list[int], task_of: list[int]) -> dict[str, pa.Array]:
    frame_index = np.concatenate([np.arange(n) for n in lengths])
    return {
        "timestamp": pa.array((frame_index / FPS).astype(np.float32)),
        "frame_index": pa.array(frame_index.astype(np.int64)),
        "episode_index": pa.array(np.repeat(np.arange(len(lengths)), lengths).astype(np.int64)),
        "index": pa.array(np.arange(sum(lengths), dtype=np.int64)),
        "task_index": pa.array(np.repeat(task_of, lengths).astype(np.int64)),
    }


def _default_features() -> dict[str, dict]:
    names = ("timestamp", "frame_index", "episode_index", "index", "task_index")
    return {
        n: {"dtype": "float32" if n == "timestamp" else "int64", "shape": [1], "names": None}
        for n in names
    }


def _png(image: np.ndarray) -> dict[str, bytes | None]:
    return {"bytes": iio.imwrite("<bytes>", image, extension=".png"), "path": None}


def _image_dataset(root: Path, cameras=("observation.image",)) -> dict[str, np.ndarray]:
    """A v3.0 folder as LeRobot writes one with use_videos=False: PNG bytes in the rows,
    20x24 images (the import crops and resizes them), natural-language tasks."""
    rng = np.random.default_rng(1)
    lengths, task_of = [4, 3], [0, 1]
    total = sum(lengths)
    images = {c: rng.integers(0, 256, (total, 20, 24, 3), np.uint8) for c in cameras}
    action = rng.normal(size=(total, 2)).astype(np.float32) * 5  # a robot's units, not [-1, 1]
    state = rng.normal(size=(total, 2)).astype(np.float32)
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    columns = {c: pa.array([_png(i) for i in images[c]], image_type) for c in cameras}
    columns["observation.state"] = pa.array(list(state), pa.list_(pa.float32(), 2))
    columns["action"] = pa.array(list(action), pa.list_(pa.float32(), 2))
    columns.update(_defaults(lengths, task_of))
    (root / "data/chunk-000").mkdir(parents=True)
    pq.write_table(pa.table(columns), root / "data/chunk-000/file-000.parquet")
    features = {c: {"dtype": "image", "shape": [20, 24, 3], "names": None} for c in cameras}
    features["observation.state"] = {"dtype": "float32", "shape": [2], "names": None}
    features["action"] = {"dtype": "float32", "shape": [2], "names": None}
    features.update(_default_features())
    info = {
        "codebase_version": "v3.0",
        "fps": FPS,
        "features": features,
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": None,
        "total_episodes": 2,
        "total_frames": total,
    }
    (root / "meta").mkdir()
    (root / "meta/info.json").write_text(json.dumps(info))
    tasks = pa.table({"task_index": [0, 1], "task": ["pick up the cube", "open the drawer"]})
    pq.write_table(tasks, root / "meta/tasks.parquet")
    episodes = pa.table(
        {
            "episode_index": [0, 1],
            "tasks": [["pick up the cube"], ["open the drawer"]],
            "length": lengths,
            "data/chunk_index": [0, 0],
            "data/file_index": [0, 0],
            "dataset_from_index": [0, 4],
            "dataset_to_index": [4, 7],
        }
    )
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    pq.write_table(episodes, root / "meta/episodes/chunk-000/file-000.parquet")
    return {"action": action, "state": state, **images}


def test_import_v3_with_images_in_parquet(tmp_path):
    src = tmp_path / "src"
    made = _image_dataset(src)
    out = tmp_path / "out"
    summary = import_lerobot(src, out, image_size=16)
    assert summary["imported"] == 2 and summary["camera_key"] == "observation.image"
    assert check_dataset(out) == []
    (m0, f0, s0), (m1, f1, s1) = _imported(out)
    assert (m0.task_id, m1.task_id) == ("pick up the cube", "open the drawer")
    assert np.array_equal(f0, resize_frames(made["observation.image"][:4], 16))
    assert np.array_equal(f1, resize_frames(made["observation.image"][4:], 16))
    assert np.array_equal(s0["actions"], made["action"][:3])  # the last row's action dropped
    assert np.array_equal(s1["state"], made["state"][4:])
    # The source's own action range is recorded, so load_steps accepts it.
    assert m0.action_low == made["action"].min(axis=0).tolist()

    again = import_lerobot(src, out, image_size=16)
    assert again["imported"] == 0 and again["skipped_existing"] == 2


def test_camera_key_is_asked_for_when_there_are_several(tmp_path):
    src = tmp_path / "src"
    made = _image_dataset(src, cameras=("observation.images.top", "observation.images.wrist"))
    with pytest.raises(fmt.DatasetError, match=r"info\.json.*2 cameras.*top.*wrist.*camera_key"):
        import_lerobot(src, tmp_path / "out")
    with pytest.raises(fmt.DatasetError, match=r"info\.json.*camera_key='side'.*top, .*wrist"):
        import_lerobot(src, tmp_path / "out", camera_key="side")
    import_lerobot(src, tmp_path / "out", camera_key="observation.images.wrist", image_size=16)
    (_, frames, _), _ = _imported(tmp_path / "out")
    assert np.array_equal(frames, resize_frames(made["observation.images.wrist"][:4], 16))


def test_import_v21_one_file_per_episode(tmp_path):
    src = tmp_path / "v21"
    rng = np.random.default_rng(2)
    key, lengths = "observation.images.top", [5, 3]
    features = {key: {"dtype": "video", "shape": [SIZE, SIZE, 3], "names": None}}
    features["action"] = {"dtype": "float32", "shape": [3], "names": None}
    features.update(_default_features())
    info = {
        "codebase_version": "v2.1",
        "fps": FPS,
        "chunks_size": 1000,
        "features": features,
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/"
        "episode_{episode_index:06d}.mp4",
    }
    (src / "meta").mkdir(parents=True)
    (src / "meta/info.json").write_text(json.dumps(info))
    (src / "meta/tasks.jsonl").write_text('{"task_index": 0, "task": "stack"}\n')
    episodes = [
        {"episode_index": i, "tasks": ["stack"], "length": n} for i, n in enumerate(lengths)
    ]
    (src / "meta/episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in episodes))
    made = []
    for i, n in enumerate(lengths):
        frames = rng.integers(0, 256, (n, SIZE, SIZE, 3), np.uint8)
        action = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
        video = src / f"videos/chunk-000/{key}/episode_{i:06d}.mp4"
        video.parent.mkdir(parents=True, exist_ok=True)
        write_video(video, frames, FPS, "lossless")
        columns = {"action": pa.array(list(action), pa.list_(pa.float32(), 3))}
        columns.update(_defaults([n], [0]))
        columns["episode_index"] = pa.array(np.full(n, i, np.int64))
        (src / "data/chunk-000").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), src / f"data/chunk-000/episode_{i:06d}.parquet")
        made.append((frames, action))
    summary = import_lerobot(src, tmp_path / "out", image_size=SIZE)
    assert summary["version"] == "v2.1" and summary["imported"] == 2
    for (meta, frames, steps), (src_frames, action) in zip(
        _imported(tmp_path / "out"), made, strict=True
    ):
        assert meta.task_id == "stack" and np.array_equal(frames, src_frames)
        assert np.array_equal(steps["actions"], action[:-1]) and "state" not in steps


def test_bad_inputs_name_the_file_and_the_field(exported, tmp_path):
    with pytest.raises(fmt.DatasetError, match=r"meta/info\.json: file is missing"):
        import_lerobot(tmp_path, tmp_path / "out")

    src = Path(shutil.copytree(exported, tmp_path / "v16"))
    info = json.loads((src / "meta/info.json").read_text())
    (src / "meta/info.json").write_text(json.dumps({**info, "codebase_version": "v1.6"}))
    with pytest.raises(fmt.DatasetError, match=r"info\.json: field 'codebase_version' is 'v1.6'"):
        import_lerobot(src, tmp_path / "out")
    with pytest.raises(fmt.DatasetError, match=r"'codebase_version' is 'v3.0', version='v2.1'"):
        import_lerobot(exported, tmp_path / "out", version="v2.1")

    src = Path(shutil.copytree(exported, tmp_path / "short"))
    _rewrite_episodes(src, "length", lambda i, v: v + (2 if i == 0 else 0))
    with pytest.raises(
        fmt.DatasetError, match=r"file-000\.parquet: episode 0 has 7 rows; .*'length' = 9"
    ):
        import_lerobot(src, tmp_path / "out2", image_size=SIZE)
    # The manifest is rebuilt however far the import got: nothing was written.
    assert fmt.read_manifest(tmp_path / "out2")["num_episodes"] == 0

    src = Path(shutil.copytree(exported, tmp_path / "novideo"))
    next((src / "videos").rglob("*.mp4")).unlink()
    with pytest.raises(fmt.DatasetError, match=r"file-000\.mp4: cannot decode video"):
        import_lerobot(src, tmp_path / "out3", image_size=SIZE)


def test_videos_without_actions_export_and_come_back_without_actions(tmp_path):
    root = tmp_path / "videos"
    fmt.init_dataset(root, image_size=SIZE, fps=FPS, codec="lossless")
    frames = np.random.default_rng(3).integers(0, 256, (4, SIZE, SIZE, 3), np.uint8)
    meta = fmt.EpisodeMeta(
        episode_id="clip",
        task_id="pour-water",
        num_frames=4,
        image_size=SIZE,
        fps=FPS,
        has_actions=False,
        source="import:pour/a.mp4",
        codec="lossless",
        video_sha256="",
    )
    fmt.write_episode(root, meta, frames)
    fmt.write_manifest(root)
    summary = export_lerobot(root, tmp_path / "lr")
    assert summary["camera_key"] == "observation.image"  # no env_spec names a camera
    info = json.loads((tmp_path / "lr/meta/info.json").read_text())
    assert "action" not in info["features"] and validate_lerobot(tmp_path / "lr") == []
    import_lerobot(tmp_path / "lr", tmp_path / "back", image_size=SIZE)
    ((back, back_frames, steps),) = _imported(tmp_path / "back")
    assert not back.has_actions and steps is None and back.task_id == "pour-water"
    assert np.array_equal(back_frames, frames)


# ------------------------------------------------------- folders written by LeRobot's own code

FIXTURES = Path(__file__).parent / "fixtures" / "lerobot"
LEROBOT_WRITTEN = ("h264", "av1", "image", "v21_converted")


def _fixture_maker():
    """make_fixtures.py's pure-NumPy half (its LeRobot imports are inside its main)."""
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", LEROBOT_WRITTEN)
def test_lerobot_written_folders_pass_check_lerobot(name):
    src = FIXTURES / name
    # What LeRobot's writer and converter write under pandas 3: the task strings as the
    # unnamed pandas index, stored as large_string.
    tasks = pq.read_table(src / "meta/tasks.parquet")
    assert tasks.schema.field("__index_level_0__").type == pa.large_string()
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["__index_level_0__"]
    assert validate_lerobot(src) == []


@pytest.mark.parametrize("name", LEROBOT_WRITTEN)
def test_lerobot_written_folders_import(name, tmp_path):
    made = _fixture_maker()
    out = tmp_path / "out"
    ours = {made.TASKS[0]: "metaworld/pick-place-v3"}  # the CLI passes every instruction
    summary = import_lerobot(FIXTURES / name, out, image_size=16, task_ids=ours)
    assert summary["imported"] == 2 and summary["camera_key"] == made.CAMERA
    assert check_dataset(out) == []
    episodes = _imported(out)
    # An instruction of ours maps back to its task id; another task string is kept as is.
    assert [m.task_id for m, _, _ in episodes] == ["metaworld/pick-place-v3", "fold the towel"]
    for e, (meta, frames, steps) in enumerate(episodes):
        actions = made.episode_actions(e)
        assert np.array_equal(steps["actions"], actions[:-1])  # N frames, N-1 actions
        assert np.array_equal(steps["state"], made.episode_state(e))
        expected = resize_frames(made.episode_frames(e), 16).astype(np.float64)
        errors = np.abs(frames[:, None].astype(np.float64) - expected[None]).mean(axis=(2, 3, 4))
        assert np.array_equal(errors.argmin(axis=1), np.arange(len(frames)))  # frame k is k
        assert errors.diagonal().max() < (1e-9 if name == "image" else 8.0)  # PNG exact
        # LeRobot records no action space: the data's range over the whole folder is used.
        all_actions = np.concatenate([made.episode_actions(k) for k in range(2)])
        assert meta.action_low == all_actions.min(axis=0).tolist()
        assert meta.action_high == all_actions.max(axis=0).tolist()


@pytest.mark.parametrize("kind", [pa.string(), pa.large_string()])
@pytest.mark.parametrize("column", ["task", "__index_level_0__"])
def test_task_strings_are_read_in_every_form_pandas_writes(exported, tmp_path, kind, column):
    src = Path(shutil.copytree(exported, tmp_path / "src"))
    texts = ["reach the goal position", "metaworld/push-v3"]
    table = pa.table({"task_index": pa.array([0, 1], pa.int64()), column: pa.array(texts, kind)})
    pandas = {"index_columns": [column], "columns": [], "column_indexes": []}
    path = src / "meta/tasks.parquet"
    pq.write_table(table.replace_schema_metadata({"pandas": json.dumps(pandas)}), path)
    assert validate_lerobot(src) == []
    import_lerobot(src, tmp_path / "out", image_size=SIZE)
    assert [m.task_id for m, _, _ in _imported(tmp_path / "out")] == [t for _, t in EPISODES]

    # A plain column (a RangeIndex): readable, but LeRobot could not look tasks up by text.
    pq.write_table(table.replace_schema_metadata(None), path)
    assert validate_lerobot(src) == [
        f"{path}: pandas metadata 'index_columns' is None; LeRobot reads the task strings as "
        f"the index, so it should be [{column!r}]."
    ]
    import_lerobot(src, tmp_path / "out2", image_size=SIZE)


def test_round_trip_keeps_the_recorded_action_space(tmp_path):
    root = tmp_path / "ours"
    fmt.init_dataset(root, image_size=SIZE, fps=FPS, codec="lossless")
    rng = np.random.default_rng(4)
    low, high = [-2.0, -float("inf"), -1.0], [2.0, float("inf"), 1.0]
    frames = rng.integers(0, 256, (4, SIZE, SIZE, 3), np.uint8)
    actions = rng.uniform(-0.5, 0.5, (3, 3)).astype(np.float32)  # well inside the space
    meta = fmt.EpisodeMeta(
        episode_id="ep",
        task_id="robosuite/lift",
        num_frames=4,
        image_size=SIZE,
        fps=FPS,
        has_actions=True,
        source="expert",
        codec="lossless",
        video_sha256="",
        action_low=low,
        action_high=high,
    )
    fmt.write_episode(root, meta, frames, {"actions": actions})
    fmt.write_manifest(root)
    export_lerobot(root, tmp_path / "lr", instructions={"robosuite/lift": "lift the cube"})
    assert validate_lerobot(tmp_path / "lr") == []
    info = json.loads((tmp_path / "lr/meta/info.json").read_text())
    assert info["vw_robot"]["action_low"] == [-2.0, "-inf", -1.0]  # JSON has no infinity
    assert info["total_frames"] == 3  # 3 (frame, action) rows; the 4th frame follows them

    import_lerobot(tmp_path / "lr", tmp_path / "back", image_size=SIZE)
    ((back, back_frames, steps),) = _imported(tmp_path / "back")
    assert (back.action_low, back.action_high) == (low, high)
    assert back.task_id == "robosuite/lift" and np.array_equal(back_frames, frames)
    assert np.array_equal(steps["actions"], actions) and "state" not in steps


def test_export_refuses_two_tasks_with_one_instruction(source, tmp_path):
    same = {"metaworld/reach-v3": "reach", "metaworld/push-v3": "reach"}
    with pytest.raises(fmt.DatasetError, match=r"'metaworld/reach-v3' and 'metaworld/push-v3'"):
        export_lerobot(source[0], tmp_path / "lr", instructions=same)


def test_recorded_metadata_that_does_not_fit_is_named(exported, tmp_path):
    src = Path(shutil.copytree(exported, tmp_path / "src"))
    info = json.loads((src / "meta/info.json").read_text())
    info["vw_robot"]["action_low"] = [-1.0, -1.0]
    (src / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(fmt.DatasetError, match=r"info\.json: field 'vw_robot'.*hold 4 values"):
        import_lerobot(src, tmp_path / "out", image_size=SIZE)
    (problem,) = validate_lerobot(src)
    assert "info.json: field 'vw_robot': action_low / action_high should hold 4 values" in problem


def test_check_lerobot_checks_what_our_export_adds(exported, tmp_path):
    dst = Path(shutil.copytree(exported, tmp_path / "bad"))
    video = dst / f"videos/{CAMERA}/chunk-000/file-000.mp4"
    write_video(video, read_video(video)[:-1], FPS, "lossless")  # the last final frame lost
    path = dst / "meta/episodes/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["vw_robot/final_state"]), path)
    assert validate_lerobot(dst) == [f"{path}: column 'vw_robot/final_state' is missing."]
    pq.write_table(table, path)
    assert validate_lerobot(dst) == [
        f"{path}: episode 2, videos/{CAMERA}: no final frame after the rows (info.json's "
        f"vw_robot.final_frame): {video} ends at 1.8 s."
    ]
