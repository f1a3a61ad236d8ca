"""Where a LeRobot folder's episodes live, as the import reads them: ``meta/info.json``, the
camera to import, and each episode's data file, video file and time offset (v3.0 episodes
files, or v2.x ``meta/episodes.jsonl``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vw_robot.data.format import DatasetError, read_json
from vw_robot.data.lerobot.schema import (
    CHUNKS_SIZE,
    CODEBASE_VERSION,
    EPISODES_DIR,
    FINAL_STATE_COLUMN,
    INFO_PATH,
    LEGACY_EPISODES_PATH,
    READ_VERSIONS,
    read_jsonl,
    read_schema,
    read_table,
    video_keys,
)


@dataclass
class SourceEpisode:
    """Where one episode of a LeRobot folder lives."""

    index: int
    length: int
    data_file: Path
    video_file: Path | None  # None: frames are in the parquet rows
    video_from: float  # seconds into video_file at which the episode starts
    tasks: list[str]  # from the episodes metadata (the rows' task_index wins)
    meta_file: Path  # the metadata file that describes it (named in errors)
    final_state: list[float] | None = None  # our exports: the state after the last row


def read_info(src: Path, version: str | None) -> dict[str, Any]:
    path = src / INFO_PATH
    info = read_json(path)
    if not isinstance(info, dict):
        raise DatasetError(f"{path}: expected a JSON object, got {type(info).__name__}.")
    found = info.get("codebase_version")
    if found not in READ_VERSIONS:
        raise DatasetError(
            f"{path}: field 'codebase_version' is {found!r}; this reader knows "
            f"{', '.join(READ_VERSIONS)}."
        )
    if version is not None and version != found:
        raise DatasetError(
            f"{path}: field 'codebase_version' is {found!r}, version={version!r} was asked for."
        )
    fps = info.get("fps")
    if isinstance(fps, float) and fps.is_integer():
        fps = int(fps)
    if isinstance(fps, bool) or not isinstance(fps, int) or fps < 1:
        raise DatasetError(f"{path}: field 'fps' should be a positive int, got {fps!r}.")
    info["fps"] = fps
    features = info.get("features")
    if not isinstance(features, dict) or not all(
        isinstance(f, dict) and isinstance(f.get("dtype"), str) for f in features.values()
    ):
        raise DatasetError(
            f"{path}: field 'features' should map each feature name to an object with a 'dtype'."
        )
    for key in ("data_path", *(["video_path"] if video_keys(features) else [])):
        if not isinstance(info.get(key), str):
            raise DatasetError(f"{path}: field {key!r} should be a path template string.")
    return info


def choose_camera(src: Path, features: dict[str, Any], camera_key: str | None) -> str:
    cameras = [k for k, f in features.items() if f["dtype"] in ("image", "video")]
    path = src / INFO_PATH
    if camera_key is not None:
        if camera_key not in cameras:
            raise DatasetError(
                f"{path}: camera_key={camera_key!r} is not an image or video feature; "
                f"'features' has {', '.join(cameras) or 'none'}."
            )
        return camera_key
    if len(cameras) == 1:
        return cameras[0]
    if not cameras:
        raise DatasetError(f"{path}: 'features' has no image or video feature to import.")
    raise DatasetError(
        f"{path}: 'features' has {len(cameras)} cameras ({', '.join(cameras)}); choose one "
        "with camera_key=..."
    )


def read_episodes(
    src: Path, info: dict[str, Any], camera_key: str, final_frame: bool = False
) -> list[SourceEpisode]:
    is_video = info["features"][camera_key]["dtype"] == "video"
    if info["codebase_version"] != CODEBASE_VERSION:
        return _read_legacy_episodes(src, info, camera_key if is_video else None)
    files = sorted((src / EPISODES_DIR).glob("*/*.parquet"))
    if not files:
        raise DatasetError(
            f"{src / EPISODES_DIR}: no episodes parquet file (chunk-*/file-*.parquet)."
        )
    needed = ["episode_index", "length", "data/chunk_index", "data/file_index"]
    video_columns = [
        f"videos/{camera_key}/{c}" for c in ("chunk_index", "file_index", "from_timestamp")
    ]
    episodes = []
    for path in files:
        schema = read_schema(path)
        columns = needed + (video_columns if is_video else [])
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise DatasetError(f"{path}: column(s) {', '.join(missing)} missing.")
        optional = [c for c in ("tasks", FINAL_STATE_COLUMN) if c in schema.names]
        needs_final_state = final_frame and "observation.state" in info["features"]
        if needs_final_state and FINAL_STATE_COLUMN not in optional:
            raise DatasetError(
                f"{path}: column {FINAL_STATE_COLUMN!r} missing; {src / INFO_PATH} says each "
                "episode's final frame follows its rows."
            )
        for row in read_table(path, columns + optional).to_pylist():
            if any(row[c] is None for c in columns):
                raise DatasetError(
                    f"{path}: episode {row['episode_index']} has an empty field among "
                    f"{', '.join(columns)}."
                )
            video_file = None
            if is_video:
                video_file = src / info["video_path"].format(
                    video_key=camera_key,
                    chunk_index=row[video_columns[0]],
                    file_index=row[video_columns[1]],
                )
            episodes.append(
                SourceEpisode(
                    index=int(row["episode_index"]),
                    length=int(row["length"]),
                    data_file=src
                    / info["data_path"].format(
                        chunk_index=row["data/chunk_index"], file_index=row["data/file_index"]
                    ),
                    video_file=video_file,
                    video_from=float(row[video_columns[2]]) if is_video else 0.0,
                    tasks=list(row.get("tasks") or []),
                    meta_file=path,
                    final_state=row.get(FINAL_STATE_COLUMN),
                )
            )
    return _checked_order(episodes, src / EPISODES_DIR)


def _read_legacy_episodes(
    src: Path, info: dict[str, Any], video_key: str | None
) -> list[SourceEpisode]:
    """v2.x: one parquet and one mp4 per episode, listed in meta/episodes.jsonl."""
    path = src / LEGACY_EPISODES_PATH
    chunks_size = info.get("chunks_size", CHUNKS_SIZE)
    episodes = []
    for row in read_jsonl(path):
        try:
            index, length = int(row["episode_index"]), int(row["length"])
        except (KeyError, TypeError, ValueError):
            raise DatasetError(
                f"{path}: each line should have an int 'episode_index' and 'length'."
            ) from None
        where = {"episode_chunk": index // chunks_size, "episode_index": index}
        episodes.append(
            SourceEpisode(
                index=index,
                length=length,
                data_file=src / info["data_path"].format(**where),
                video_file=None
                if video_key is None
                else src / info["video_path"].format(video_key=video_key, **where),
                video_from=0.0,
                tasks=[str(t) for t in row.get("tasks") or []],
                meta_file=path,
            )
        )
    return _checked_order(episodes, path)


def _checked_order(episodes: list[SourceEpisode], where: Path) -> list[SourceEpisode]:
    episodes = sorted(episodes, key=lambda e: e.index)
    seen = set()
    for episode in episodes:
        if episode.index in seen:
            raise DatasetError(
                f"{episode.meta_file}: field 'episode_index' repeats {episode.index}."
            )
        if episode.length < 1:
            raise DatasetError(
                f"{episode.meta_file}: episode {episode.index} has field 'length' = "
                f"{episode.length}; it should be >= 1."
            )
        seen.add(episode.index)
    if not episodes:
        raise DatasetError(f"{where}: lists no episodes.")
    return episodes
