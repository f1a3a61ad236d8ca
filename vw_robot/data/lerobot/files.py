"""The files an export appends episodes to, numbered as LeRobot numbers them
(``chunk-XXX/file-YYY``): data parquet files, one row group per episode, and mp4 videos,
episodes one after another."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vw_robot.data.lerobot.schema import DATA_PATH, VIDEO_PATH
from vw_robot.data.video import CODECS


class RollingFiles:
    """LeRobot's chunk-XXX/file-YYY numbering: a new file once the current one would grow past
    ``limit`` bytes; ``chunks_size`` files per chunk folder."""

    def __init__(self, out: Path, template: str, chunks_size: int, limit: float) -> None:
        self._out, self._template, self._chunks_size, self._limit = (
            out,
            template,
            chunks_size,
            limit,
        )
        self.chunk_index, self.file_index, self.count = 0, -1, 0
        self._bytes = 0.0

    @property
    def path(self) -> Path:
        return self._out / self._template.format(
            chunk_index=self.chunk_index, file_index=self.file_index
        )

    def roll(self, size: float) -> bool:
        """Account for ``size`` more bytes; True when they start a new file (``path`` moved)."""
        if self.count and self._bytes + size <= self._limit:
            self._bytes += size
            return False
        if self.count:
            self.file_index += 1
            if self.file_index == self._chunks_size:
                self.chunk_index, self.file_index = self.chunk_index + 1, 0
        else:
            self.file_index = 0
        self.count += 1
        self._bytes = size
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return True


class DataFiles:
    """Episodes' rows appended to data/chunk-XXX/file-YYY.parquet, one row group each."""

    def __init__(self, out: Path, schema: pa.Schema, chunks_size: int, limit: float) -> None:
        self.files = RollingFiles(out, DATA_PATH, chunks_size, limit)
        self._schema = schema
        self._writer: pq.ParquetWriter | None = None

    def append(self, arrays: dict[str, np.ndarray]) -> tuple[int, int]:
        """Write one episode; returns its (chunk_index, file_index)."""
        columns = {f.name: _arrow_column(arrays[f.name], f.type) for f in self._schema}
        table = pa.table(columns, schema=self._schema)
        if self.files.roll(table.nbytes):
            self.close()
            self._writer = pq.ParquetWriter(self.files.path, self._schema, compression="snappy")
        self._writer.write_table(table)  # one row group per episode, as LeRobot writes
        return self.files.chunk_index, self.files.file_index

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class VideoFiles:
    """Episodes' frames appended to videos/<key>/chunk-XXX/file-YYY.mp4 at a constant rate."""

    def __init__(
        self, out: Path, key: str, chunks_size: int, limit: float, fps: int, codec: str
    ) -> None:
        template = VIDEO_PATH.replace("{video_key}", key)
        self.files = RollingFiles(out, template, chunks_size, limit)
        self._fps, self._codec = fps, codec
        self._writer: Any = None
        self._frames = 0

    def append(self, frames: np.ndarray, size: float) -> tuple[tuple[int, int], float]:
        """Encode one episode; returns its (chunk_index, file_index) and from_timestamp."""
        if self.files.roll(size):
            self.close()
            # macro_block_size=1 keeps sizes that are not multiples of 16 exact (as write_video).
            self._writer = imageio.get_writer(
                self.files.path, fps=self._fps, macro_block_size=1, **CODECS[self._codec]
            )
            self._frames = 0
        for frame in frames:
            self._writer.append_data(frame)
        start = self._frames / self._fps
        self._frames += len(frames)
        return (self.files.chunk_index, self.files.file_index), start

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _arrow_column(array: np.ndarray, kind: pa.DataType) -> pa.Array:
    if pa.types.is_fixed_size_list(kind):
        return pa.FixedSizeListArray.from_arrays(pa.array(array.reshape(-1)), kind.list_size)
    return pa.array(array, type=kind)
