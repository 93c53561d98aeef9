"""Streaming, sharded Arrow IPC writer: the data files of the `datasets.save_to_disk` layout.

pyarrow's `RecordBatchStreamWriter` does the writing; this module adds what it lacks: cutting
shards at `max_shard_size` (or at planned row counts), naming them as `datasets` does once the
count is known, and handing each finished shard to a sink (a local folder, or an S3 upload) so
that neither memory nor local disk grows with the dataset.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from ds_assets.storage.layout import shard_name


@dataclass(frozen=True)
class ShardStats:
    name: str
    num_rows: int
    num_bytes: int


class ShardSink(Protocol):
    """Where finished shards go. The writer writes each shard to `local_path(index)` first."""

    def local_path(self, index: int) -> str:
        """A local file to write shard `index` into."""

    def shard_closed(self, index: int, final_name: str | None) -> None:
        """Shard `index` is complete; `final_name` is known when the shard count was planned."""

    def finish(self, names: Sequence[str]) -> None:
        """All shards are written; `names[i]` is the final name of shard `i`."""


class LocalShardSink:
    """Shards written straight into `directory`, renamed to their final names at the end."""

    def __init__(self, directory: str):
        self.directory = directory

    def local_path(self, index: int) -> str:
        return os.path.join(self.directory, f".shard-{index:05d}.arrow")

    def shard_closed(self, index: int, final_name: str | None) -> None:
        pass

    def finish(self, names: Sequence[str]) -> None:
        for index, name in enumerate(names):
            os.replace(self.local_path(index), os.path.join(self.directory, name))


def plan_shard_rows(num_rows: int, num_bytes: int, max_shard_size: int) -> list[int]:
    """Row counts per shard for a dataset of known size, the way `datasets` plans them.

    >>> plan_shard_rows(10, 3_000, 1_000)
    [3, 3, 2, 2]
    """
    count = max(1, min(num_rows, num_bytes // max_shard_size + 1))
    base, extra = divmod(num_rows, count)
    return [base + (1 if index < extra else 0) for index in range(count)]


def write_shards(
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    sink: ShardSink,
    *,
    max_shard_size: int,
    planned_rows: Sequence[int] | None = None,
) -> list[ShardStats]:
    """Write `batches` as shards through `sink` and return per-shard statistics.

    With `planned_rows` the shards hold exactly those row counts (names are final from the
    start); otherwise a shard is closed once it holds `max_shard_size` bytes. A stream with no
    rows still gets one shard holding the schema, so that the result loads back.

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> table = pa.table({"a": [1, 2, 3]})
    >>> [s.name for s in write_shards(table.to_batches(), table.schema, LocalShardSink(folder),
    ...                                max_shard_size=1 << 20)]
    ['data-00000-of-00001.arrow']
    """
    writer = _ShardCutter(schema, sink, max_shard_size, planned_rows)
    try:
        for batch in batches:
            writer.write(batch)
        return writer.close()
    finally:
        writer.abort()


class _ShardCutter:
    def __init__(self, schema, sink, max_shard_size, planned_rows):
        self.schema = schema
        self.sink = sink
        self.max_shard_size = max_shard_size
        self.planned = list(planned_rows) if planned_rows is not None else None
        self.stats: list[ShardStats] = []
        self._file = None
        self._stream = None
        self._rows = 0
        self._bytes = 0

    def _final_name(self, index: int) -> str | None:
        return shard_name(index, len(self.planned)) if self.planned is not None else None

    def _open(self) -> None:
        index = len(self.stats)
        self._file = pa.OSFile(self.sink.local_path(index), "wb")
        self._stream = pa.ipc.new_stream(self._file, self.schema)
        self._rows = self._bytes = 0

    def _close_current(self) -> None:
        self._stream.close()
        self._file.close()
        index = len(self.stats)
        self._stream = self._file = None
        self.stats.append(ShardStats(self._final_name(index) or "", self._rows, self._bytes))
        self.sink.shard_closed(index, self._final_name(index))

    def _room(self) -> int | None:
        """Rows the current shard may still take under a plan (None: cut by bytes)."""
        if self.planned is None:
            return None
        index = len(self.stats)
        return self.planned[index] - self._rows if index < len(self.planned) else 0

    def write(self, batch: pa.RecordBatch) -> None:
        while batch.num_rows:
            if self._stream is None:
                self._open()
            room = self._room()
            if room is None:  # cut by bytes: take about what still fits, at least one row
                free = self.max_shard_size - self._bytes
                row_bytes = max(1, batch.nbytes // max(1, batch.num_rows))
                rows = max(1, free // row_bytes)
                piece = batch if rows >= batch.num_rows else batch.slice(0, rows)
            else:
                piece = batch if room >= batch.num_rows else batch.slice(0, room)
            if room == 0:
                raise ValueError("stream yielded more rows than planned for its shards")
            self._stream.write_batch(piece)
            self._rows += piece.num_rows
            self._bytes += piece.nbytes
            batch = batch.slice(piece.num_rows)
            full = self._room() == 0 if room is not None else self._bytes >= self.max_shard_size
            if full:
                self._close_current()

    def close(self) -> list[ShardStats]:
        if self._stream is not None:
            self._close_current()
        short = self.planned is not None and len(self.stats) != len(self.planned)
        if short and (sum(s.num_rows for s in self.stats) or any(self.planned)):
            raise ValueError(
                f"stream ended after {len(self.stats)} of {len(self.planned)} planned shards"
            )
        if not self.stats:  # an empty dataset: one shard with the schema and no batch
            self.planned = None
            self._open()
            self._close_current()
        count = len(self.stats)
        self.stats = [
            ShardStats(shard_name(i, count), s.num_rows, s.num_bytes)
            for i, s in enumerate(self.stats)
        ]
        self.sink.finish([s.name for s in self.stats])
        return self.stats

    def abort(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._file.close()
            self._stream = self._file = None
