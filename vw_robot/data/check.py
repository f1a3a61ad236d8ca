"""Read-only integrity check of a dataset: every problem, one line each, naming the file.

Usage::

    from vw_robot.data.check import check_dataset
    for line in check_dataset("data/metaworld"):
        print(line)

Nothing here writes, renames or deletes a file, so a check is safe to run at any time, also
beside a running collection (whose in-flight episodes it reports as incomplete).
"""

from __future__ import annotations

import fnmatch
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from vw_robot.data.format import (
    DATASET_FILE,
    META_FILE,
    STEPS_FILE,
    TEMP_PATTERN,
    VIDEO_FILE,
    DatasetError,
    EpisodeMeta,
    codec_problems,
    dropped_problems,
    episode_dir,
    list_episode_folders,
    load_steps,
    manifest_problems,
    read_dataset_info,
    read_json,
)
from vw_robot.data.video import read_video
from vw_robot.io import sha256_file

log = logging.getLogger(__name__)


def check_episode(
    root: str | os.PathLike[str], episode_id: str, *, decode: bool = True
) -> list[str]:
    """Every problem of one episode, one line each, each naming the file concerned.

    Checks ``meta.json`` (present, valid JSON, every key with its type, ``episode_id`` equal
    to the folder name, settings equal to ``dataset.json``'s), ``video.mp4`` (present, the
    checksum in meta, and with ``decode`` a full decode: frame count and resolution) and
    ``steps.npz`` (present exactly when meta says ``has_actions``; rows, dimensions, no NaN
    or inf, actions inside the action space: :func:`vw_robot.data.format.load_steps`).
    ``dataset.json`` itself is :func:`check_dataset`'s to report; when it does not parse, the
    comparisons with it are skipped.

    Args:
        root: dataset folder.
        episode_id: folder name under ``episodes/``.
        decode: decode the whole video. Without it the video is only checked to exist and to
            match ``meta.video_sha256`` (enough when a frame cache keyed by that checksum was
            validated when it was built).

    Returns:
        The problems; an empty list means the episode is sound.
    """
    try:
        info: dict[str, Any] | None = read_dataset_info(root)
    except DatasetError:
        info = None
    return _check_episode(Path(root), episode_id, decode, info)[0]


def check_dataset(
    root: str | os.PathLike[str], *, decode: bool = True, workers: int | None = None
) -> list[str]:
    """Every problem of a dataset, one line each, each naming the file concerned.

    In order: ``dataset.json`` (present, format, version, settings); every folder under
    ``episodes/`` (:func:`check_episode`, including folders the manifest does not list);
    ``manifest.json`` (present once there are complete episodes, well formed, listing exactly the
    complete episodes with the values in their meta, totals adding up); ``dropped/`` records
    that do not parse. Every line outside the per-episode checks comes from the functions
    :func:`vw_robot.data.format.read_manifest` runs, so the loaders refuse a dataset with such
    a problem with the same line; the per-episode lines are :func:`check_episode`'s, which the
    loaders run too.

    Temporary files left by an interrupted atomic write (``.*.tmp*``) are logged as warnings
    and not returned: they never hold data a reader uses (the rename that would publish them
    did not happen), a resumed run rewrites what they were for, and a collection running
    beside the check legitimately has some. :func:`find_temp_files` lists them for deletion.

    Args:
        root: dataset folder.
        decode: decode every video fully (see :func:`check_episode`).
        workers: threads checking episodes at once; ffmpeg decodes in its own process, so
            threads overlap well. Default: twice the CPU count, at most 8.

    Returns:
        The problems; an empty list means the dataset is sound.
    """
    root = Path(root)
    if not root.is_dir():
        return [f"{root}: dataset folder is missing or not a folder."]
    problems: list[str] = []
    info: dict[str, Any] | None = None
    try:
        info = read_dataset_info(root)
    except DatasetError as exc:
        problems.append(str(exc))
    if info is not None:
        problems += codec_problems(root, info)
    ids, stray = list_episode_folders(root)
    problems += stray

    if workers is None:
        workers = min(8, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(lambda i: _check_episode(root, i, decode, info), ids))
    metas: dict[str, EpisodeMeta] = {}
    for episode_id, (episode_problems, meta) in zip(ids, results, strict=True):
        problems += episode_problems
        if meta is not None:
            metas[episode_id] = meta

    problems += manifest_problems(root, metas)
    problems += dropped_problems(root)
    for temp in find_temp_files(root):
        log.warning(
            "%s: temporary file left by an interrupted write (or one in progress); safe to "
            "delete once no collection or import is running.",
            temp,
        )
    return problems


def find_temp_files(root: str | os.PathLike[str]) -> list[Path]:
    """Temporary files of interrupted atomic writes anywhere under ``root`` (sorted)."""
    found = []
    for folder, _, files in os.walk(root):
        found += [Path(folder) / n for n in files if fnmatch.fnmatch(n, TEMP_PATTERN)]
    return sorted(found)


def _check_episode(
    root: Path, episode_id: str, decode: bool, info: dict[str, Any] | None
) -> tuple[list[str], EpisodeMeta | None]:
    """Problems of one episode, and its meta when that parsed (for the manifest check)."""
    try:
        return _episode_problems(root, episode_id, decode, info)
    except OSError as exc:  # unreadable file or folder (permissions, I/O error): still one line
        where = exc.filename or episode_dir(root, episode_id)
        return [f"{where}: cannot be read ({type(exc).__name__}: {exc.strerror or exc})."], None


def _episode_problems(
    root: Path, episode_id: str, decode: bool, info: dict[str, Any] | None
) -> tuple[list[str], EpisodeMeta | None]:
    folder = episode_dir(root, episode_id)
    meta_path, video, steps_path = folder / META_FILE, folder / VIDEO_FILE, folder / STEPS_FILE
    if not folder.is_dir():
        return [f"{folder}: episode folder is missing."], None
    if not meta_path.exists():
        # write_episode writes meta.json last, so this is an interrupted (or running) write.
        return [
            f"{meta_path}: file is missing, so the episode is incomplete (interrupted or still "
            "being written); resume the collection or import to finish it, or delete the folder."
        ], None

    problems: list[str] = []
    try:
        meta: EpisodeMeta | None = EpisodeMeta.from_json(read_json(meta_path), meta_path)
    except DatasetError as exc:
        problems.append(str(exc))
        meta = None
    if meta is None:
        # The video can still be checked on its own; steps.npz cannot without num_frames.
        if not video.exists():
            problems.append(f"{video}: file is missing.")
        elif decode:
            problems += _decode_problems(video, None)
        return problems, None

    if meta.episode_id != episode_id:
        problems.append(
            f"{meta_path}: episode_id is {meta.episode_id!r} but the folder is {episode_id!r}."
        )
    if info is not None:
        for key in ("image_size", "fps", "codec"):
            if getattr(meta, key) != info.get(key):
                problems.append(
                    f"{meta_path}: {key} is {getattr(meta, key)!r} but {DATASET_FILE} says "
                    f"{info.get(key)!r}."
                )

    if not video.exists():
        problems.append(f"{video}: file is missing.")
    else:
        try:
            digest = sha256_file(video)
        except OSError as exc:
            problems.append(f"{video}: cannot read the file ({exc.strerror or exc}).")
        else:
            if digest != meta.video_sha256:
                problems.append(
                    f"{video}: SHA-256 {digest[:12]}... differs from meta.json's "
                    f"{meta.video_sha256[:12]}...; the file changed after it was written."
                )
            if decode:
                problems += _decode_problems(video, meta)

    if meta.has_actions:
        try:
            steps = load_steps(root, meta)
        except DatasetError as exc:
            problems.append(str(exc))
        else:
            for key, name in (("action_dim", "actions"), ("state_dim", "state")):
                have = steps[name].shape[1] if name in steps else None
                if getattr(meta, key) != have:
                    problems.append(
                        f"{steps_path}: array {name!r} has dimension {have}, meta.json says "
                        f"{key}={getattr(meta, key)!r}."
                    )
    elif steps_path.exists():
        problems.append(
            f"{steps_path}: file present although meta.json says has_actions=false; delete it "
            "or fix the meta."
        )
    return problems, meta


def _decode_problems(video: Path, meta: EpisodeMeta | None) -> list[str]:
    try:
        frames = read_video(video)  # (T, H, W, 3)
    except ValueError as exc:
        return [f"{video}: unreadable or truncated video ({_reason(exc)})."]
    problems = []
    height, width = frames.shape[1:3]
    if height != width:
        problems.append(f"{video}: frames are {width}x{height}, not square.")
    if meta is not None:
        if len(frames) != meta.num_frames:
            problems.append(
                f"{video}: decodes to {len(frames)} frames, meta.json says "
                f"num_frames={meta.num_frames}."
            )
        if (height, width) != (meta.image_size, meta.image_size):
            problems.append(
                f"{video}: frames are {width}x{height}, meta.json says image_size="
                f"{meta.image_size}."
            )
    return problems


def _reason(exc: Exception) -> str:
    """The cause from read_video's message, on one line (imageio appends ffmpeg's stderr)."""
    text = str(exc).strip().splitlines()[0]
    marker = "cannot decode video ("
    if marker in text:
        text = text.split(marker, 1)[1].rstrip(")")
    elif ": " in text:
        text = text.split(": ", 1)[1]  # drop the path; the caller names the file
    return text.rstrip(".")
