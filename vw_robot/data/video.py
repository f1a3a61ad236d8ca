"""mp4 encoding and decoding for episode videos (imageio + its bundled ffmpeg).

Codec presets, measured on a 121-frame 64x64 Meta-World pick-place expert clip
(``python benchmarks/bench_codecs.py``; figures in docs/datasets.md):

============  ==========================  =========  ===========  =================
preset        ffmpeg                      bytes      PSNR (dB)    max abs error
============  ==========================  =========  ===========  =================
lossless      libx264rgb, crf 0, rgb24    46,022     exact        0
high          libx264, crf 12, yuv444p    26,549     43.5         62
standard      libx264, q8, yuv420p        24,563     33.2         180
============  ==========================  =========  ===========  =================

At these image sizes chroma subsampling (yuv420p) wipes out small coloured objects (the error
of 180 is a goal marker), and exactness costs less than 2x the bytes of the best lossy preset,
so datasets default to ``lossless``: training sees the very pixels the env rendered at
evaluation. ``standard`` plays in any browser; use it for videos meant for people.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from vw_robot.errors import UserError

CODECS: dict[str, dict[str, Any]] = {
    "lossless": {
        "codec": "libx264rgb",
        "pixelformat": "rgb24",
        "quality": None,
        "ffmpeg_params": ["-crf", "0", "-preset", "veryfast"],
    },
    "high": {
        "codec": "libx264",
        "pixelformat": "yuv444p",
        "quality": None,
        "ffmpeg_params": ["-crf", "12"],
    },
    "standard": {"codec": "libx264", "pixelformat": "yuv420p", "quality": 8},
}


def write_video(
    path: str | os.PathLike[str], frames: np.ndarray, fps: int, codec: str = "lossless"
) -> None:
    """Encode (T, H, W, 3) uint8 frames to an mp4, atomically (temporary file, then rename).

    Raises:
        ValueError: unknown codec preset, or frames that are not (T, H, W, 3) uint8.
    """
    import imageio.v2 as imageio

    if codec not in CODECS:
        raise UserError(f"codec={codec!r} is unknown; presets: {', '.join(CODECS)}.")
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise UserError(
            f"frames must be a non-empty (T, H, W, 3) uint8 array, got {frames.shape} "
            f"{frames.dtype}."
        )
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        # macro_block_size=1 keeps sizes that are not multiples of 16 exact.
        with imageio.get_writer(tmp, fps=fps, macro_block_size=1, **CODECS[codec]) as writer:
            for frame in frames:
                writer.append_data(frame)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_video(path: str | os.PathLike[str], max_frames: int | None = None) -> np.ndarray:
    """Decode an mp4 (or any format ffmpeg reads) to (T, H, W, 3) uint8 RGB frames.

    Raises:
        ValueError: the file cannot be decoded (missing, truncated, not a video); the message
            names the file.
    """
    try:
        import imageio_ffmpeg  # noqa: F401  (imageio's ffmpeg plugin needs its binary)
    except ImportError:
        return _read_video_opencv(path, max_frames)
    import imageio.v2 as imageio

    frames = []
    try:
        with imageio.get_reader(path, format="FFMPEG") as reader:
            for frame in reader:
                frames.append(frame)
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except Exception as exc:  # imageio raises OSError, RuntimeError, IndexError... by case
        # ffmpeg's message runs to kilobytes; its first line says what went wrong.
        first = (str(exc).strip().splitlines() or [""])[0]
        raise UserError(f"{path}: cannot decode video ({type(exc).__name__}: {first})") from None
    if not frames:
        raise UserError(f"{path}: video has no frames.")
    return np.stack(frames).astype(np.uint8, copy=False)  # (T, H, W, 3)


def _read_video_opencv(path: str | os.PathLike[str], max_frames: int | None) -> np.ndarray:
    """Fallback decoder for machines with OpenCV but without imageio-ffmpeg (e.g. a GPU image
    that cannot fetch the 68 MB ffmpeg wheel)."""
    try:
        import cv2
    except ImportError:
        raise UserError(
            f"{path}: cannot decode video: neither imageio-ffmpeg nor OpenCV is installed."
        ) from None
    if not Path(path).is_file():
        raise UserError(f"{path}: cannot decode video (file is missing).")
    capture = cv2.VideoCapture(str(path))
    frames = []
    while max_frames is None or len(frames) < max_frames:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame[:, :, ::-1])  # BGR -> RGB
    capture.release()
    if not frames:
        raise UserError(f"{path}: cannot decode video (OpenCV read no frame).")
    return np.ascontiguousarray(np.stack(frames))  # (T, H, W, 3)


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize (T, H, W, 3) uint8 frames to (T, size, size, 3): centre-crop to a square, then
    area-average (downscale) or bilinear (upscale) with torch, which is already a dependency."""
    import torch
    import torch.nn.functional as F

    t, h, w, _ = frames.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = frames[:, top : top + side, left : left + side]
    if side == size:
        return np.ascontiguousarray(square)
    x = torch.from_numpy(np.ascontiguousarray(square)).permute(0, 3, 1, 2).float()  # (T,3,S,S)
    mode = "area" if side > size else "bilinear"
    kwargs = {} if mode == "area" else {"align_corners": False}
    y = F.interpolate(x, size=(size, size), mode=mode, **kwargs)  # (T, 3, size, size)
    return y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
