"""Turn a folder of ordinary video files into a dataset of unlabelled episodes.

Usage::

    from vw_robot.data.importer import import_videos
    # videos/<task>/<any path>.mp4 -> one episode each, task id = <task>
    summary = import_videos("videos", "data/my_videos", image_size=64)
    # every video under "clips" gets one label
    summary = import_videos("clips", "data/my_videos", task_id="pour-water")

Episodes have no actions (``has_actions=False``), ``source="import:<relative path>"`` and no
seed or success flag. Their ids derive from the relative path alone, so running the same
import again skips what is already complete and finishes what was interrupted.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from vw_robot.data.format import (
    DATASET_FILE,
    VIDEO_FILE,
    EpisodeMeta,
    episode_dir,
    init_dataset,
    is_complete,
    read_dataset_info,
    write_episode,
    write_manifest,
)
from vw_robot.data.video import CODECS, resize_frames
from vw_robot.errors import UserError
from vw_robot.provenance import provenance

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
# Frames resized per batch while decoding: bounds memory to a few full-size frames however
# long or large the source video is (only the small resized frames are kept).
_DECODE_CHUNK = 32


def import_videos(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    task_id: str | None = None,
    image_size: int = 64,
    fps: int | None = None,
    codec: str = "lossless",
    extensions: Iterable[str] = VIDEO_EXTENSIONS,
) -> dict[str, Any]:
    """Import every video file under ``src`` as one episode of the dataset ``out``.

    Frames are centre-cropped to a square and resized to ``image_size`` (see
    :func:`vw_robot.data.video.resize_frames`). A dataset has one frame rate and frames are
    not resampled: a video whose own rate differs is stored frame for frame at the dataset's
    rate (a warning names it). Hidden files and folders (names starting with ".") and
    anything inside ``out`` are ignored. A video that cannot be decoded is skipped and listed
    under ``"failed"``; the other videos are still imported. ``manifest.json`` is rebuilt at
    the end, also when the import stops early.

    Args:
        src: folder searched recursively for videos.
        out: dataset folder (created, or an existing dataset with the same settings).
        task_id: label for every video. Default: the name of the folder directly under
            ``src`` that holds the video (``src/<task>/.../clip.mp4`` -> ``<task>``).
        image_size: side of the square frames stored.
        fps: the dataset's frame rate. Default: the rate of an existing ``out`` dataset,
            else the first readable video's rate, rounded.
        codec: video preset (:data:`vw_robot.data.video.CODECS`).
        extensions: file endings taken as videos (case-insensitive).

    Returns:
        ``imported`` (episodes written by this call), ``skipped_existing`` (already complete),
        ``failed`` (``"<path>: <reason>"`` per video that could not be decoded), ``frames``
        and ``bytes`` (of the videos written by this call) and ``fps`` (the dataset's).

    Raises:
        ValueError: ``src`` is missing, not a folder or holds no videos; a video lies directly
            in ``src`` and no ``task_id`` was given; a bad argument; ``fps`` was not given
            and no video's frame rate could be read.
        DatasetError: ``out`` holds a dataset with other settings, or another folder's files.
    """
    _check_import_args(task_id=task_id, image_size=image_size, fps=fps, codec=codec)
    src, out = Path(src), Path(out)
    videos = find_videos(src, extensions, exclude=out)
    jobs = _import_jobs(src, videos, task_id)
    if fps is None:
        fps = _dataset_fps(out) or _first_fps(videos)
    init_dataset(out, image_size=image_size, fps=fps, codec=codec)

    summary: dict[str, Any] = {
        "imported": 0,
        "skipped_existing": 0,
        "failed": [],
        "frames": 0,
        "bytes": 0,
        "fps": fps,
    }
    try:
        _import_all(out, jobs, summary, image_size=image_size, fps=fps, codec=codec)
    finally:
        # Rebuilt from the episodes on disk, so it is right however far the loop got.
        write_manifest(out)
    log.info(
        "import: %d imported, %d already there, %d failed -> %s",
        summary["imported"],
        summary["skipped_existing"],
        len(summary["failed"]),
        out,
    )
    return summary


def _check_import_args(
    *, task_id: str | None, image_size: int, fps: int | None, codec: str
) -> None:
    """Reject a bad argument of :func:`import_videos` before any file is touched."""
    if codec not in CODECS:
        raise UserError(f"codec={codec!r} is unknown; presets: {', '.join(CODECS)}.")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise UserError(f"image_size must be a positive int, got {image_size!r}.")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, int) or fps < 1):
        raise UserError(f"fps must be a positive int or None, got {fps!r}.")
    if task_id is not None and (not isinstance(task_id, str) or not task_id.strip()):
        raise UserError(f"task_id must be a non-empty string or None, got {task_id!r}.")


def _import_jobs(
    src: Path, videos: list[Path], task_id: str | None
) -> list[tuple[Path, Path, str, str]]:
    """One ``(path, relative path, task id, episode id)`` per video, in ``videos``' order.

    Raises:
        ValueError: a video lies directly in ``src`` and no ``task_id`` was given.
    """
    jobs = []
    for path in videos:
        rel = path.relative_to(src)
        task = task_id
        if task is None:
            if len(rel.parts) < 2:
                raise UserError(
                    f"{path}: video lies directly in {src}, so it has no task folder; pass "
                    "task_id=... or move the videos into subfolders named after their task."
                )
            task = rel.parts[0]
        jobs.append((path, rel, task, episode_id_for(rel)))
    return jobs


def _import_all(
    out: Path,
    jobs: list[tuple[Path, Path, str, str]],
    summary: dict[str, Any],
    *,
    image_size: int,
    fps: int,
    codec: str,
) -> None:
    """Decode and write each of ``jobs`` not yet complete in ``out``, counting into ``summary``.

    A video that cannot be decoded is listed under ``summary["failed"]`` and skipped.
    """
    versions = _versions()
    for index, (path, rel, task, episode_id) in enumerate(jobs):
        if is_complete(out, episode_id):
            summary["skipped_existing"] += 1
            continue
        try:
            frames, source_fps = decode_resized(path, image_size)
        except ValueError as exc:
            summary["failed"].append(f"{path}: {exc}")
            log.warning("%s: skipped, %s", path, exc)
            continue
        if source_fps is not None and round(source_fps) != fps:
            log.warning(
                "%s: recorded at %.3g fps, stored frame for frame in a %d fps dataset.",
                path,
                source_fps,
                fps,
            )
        meta = EpisodeMeta(
            episode_id=episode_id,
            task_id=task,
            num_frames=len(frames),
            image_size=image_size,
            fps=fps,
            has_actions=False,
            source=f"import:{rel.as_posix()}",
            codec=codec,
            video_sha256="",  # filled in by write_episode
            versions=dict(versions),
        )
        write_episode(out, meta, frames)
        summary["imported"] += 1
        summary["frames"] += len(frames)
        summary["bytes"] += (episode_dir(out, episode_id) / VIDEO_FILE).stat().st_size
        if (index + 1) % 25 == 0:
            log.info("import: %d/%d videos done", index + 1, len(jobs))


def find_videos(
    src: str | os.PathLike[str],
    extensions: Iterable[str] = VIDEO_EXTENSIONS,
    *,
    exclude: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Video files under ``src``, sorted by relative path; hidden names and ``exclude`` skipped.

    Raises:
        ValueError: ``src`` is missing or not a folder, or holds no video files.
    """
    src = Path(src)
    if not src.exists():
        raise UserError(f"{src}: source folder does not exist.")
    if not src.is_dir():
        raise UserError(f"{src}: source is not a folder.")
    if isinstance(extensions, str):
        extensions = (extensions,)
    wanted = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    # The output may sit inside the source; its own video.mp4 files are not input.
    skip = Path(exclude).resolve() if exclude is not None else None
    found = []
    for folder, dirs, files in os.walk(src):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (here / d).resolve() != skip)
        found += [
            here / n for n in files if not n.startswith(".") and Path(n).suffix.lower() in wanted
        ]
    if not found:
        raise UserError(
            f"{src}: no video files found (looked for {', '.join(sorted(wanted))}, in "
            "subfolders too)."
        )
    return sorted(found, key=lambda p: p.relative_to(src).as_posix())


def episode_id_for(rel: str | os.PathLike[str]) -> str:
    """Deterministic, filesystem-safe episode id for a video at ``rel`` (relative to src).

    ``"import__<slug>__<8 hex>"``: the slug keeps ids readable, the hash of the full relative
    path keeps them distinct where slugs collide (``a b.mp4`` / ``a-b.mp4`` / ``a-b.avi``).
    """
    posix = Path(rel).as_posix()
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", str(Path(posix).with_suffix(""))).strip("-_")
    digest = hashlib.sha256(posix.encode()).hexdigest()[:8]
    return f"import__{slug[:60] or 'video'}__{digest}"


def decode_resized(path: str | os.PathLike[str], size: int) -> tuple[np.ndarray, float | None]:
    """Decode a video into (T, size, size, 3) uint8 frames, resizing as it goes.

    Returns:
        The frames and the video's frame rate (None when the container does not say).

    Raises:
        ValueError: the file cannot be decoded (missing, truncated, not a video) or has no
            frames; the message is one line and does not repeat the path.
    """
    import imageio.v2 as imageio

    chunks, pending = [], []
    try:
        with imageio.get_reader(path, format="FFMPEG") as reader:
            info = reader.get_meta_data()
            source_fps, duration = _valid_fps(info.get("fps")), info.get("duration")
            for frame in reader:
                pending.append(frame)
                if len(pending) == _DECODE_CHUNK:
                    chunks.append(resize_frames(np.stack(pending), size))
                    pending = []
    except Exception as exc:  # imageio raises OSError, RuntimeError, IndexError... by case
        raise UserError(f"cannot decode video ({type(exc).__name__}: {_first_line(exc)})") from None
    if pending:
        chunks.append(resize_frames(np.stack(pending), size))
    if not chunks:
        raise UserError("video has no frames")
    count = sum(len(c) for c in chunks)
    if source_fps is not None and isinstance(duration, (int, float)) and math.isfinite(duration):
        # ffmpeg decodes a cut-off file whose index sits at the front ("faststart" mp4s, most
        # web videos) without an error, just with fewer frames. The container's duration gives
        # it away; the margin leaves room for variable-frame-rate clips whose fps is an average.
        expected = duration * source_fps
        if count < 0.8 * expected - 1:
            raise UserError(
                f"truncated video: decoded {count} frames, the container says {duration:.3g} s "
                f"at {source_fps:.3g} fps (about {expected:.0f} frames)"
            )
    return np.concatenate(chunks).astype(np.uint8, copy=False), source_fps  # (T, S, S, 3)


@functools.cache
def _versions() -> dict[str, str | None]:
    # provenance() also asks git for the revision: once per process is enough.
    return provenance()["packages"]


def _dataset_fps(out: Path) -> int | None:
    """The frame rate of an existing dataset at ``out`` (resumed imports keep it)."""
    if not (out / DATASET_FILE).exists():
        return None
    return int(read_dataset_info(out)["fps"])


def _first_fps(videos: list[Path]) -> int:
    """The rounded frame rate of the first video that reports one."""
    import imageio.v2 as imageio

    for path in videos:
        try:
            with imageio.get_reader(path, format="FFMPEG") as reader:
                rate = _valid_fps(reader.get_meta_data().get("fps"))
        except Exception:  # unreadable: it is reported as failed by the import loop
            continue
        if rate is not None and round(rate) >= 1:
            return round(rate)
    raise UserError(
        f"none of the {len(videos)} video(s) reports a frame rate (all unreadable?); pass fps=."
    )


def _valid_fps(value: Any) -> float | None:
    if isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
        return float(value)
    return None


def _first_line(exc: Exception) -> str:
    # imageio appends ffmpeg's whole stderr (banner, build flags) to its message.
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""
