"""Arrow record batches out of `datasets` objects, in final row order and bounded memory.

`datasets` writes a dataset that carries an indices mapping (after `shuffle`, `select`,
`filter`) by first materializing it with `flatten_indices`, which is slow (33 s for a shuffled
million rows, measured). A chunked `pyarrow.Table.take` is no answer either: it concatenates the
whole table on every call. Here positions are gathered window by window, each window grouped by
source record batch, so one window (about `GATHER_WINDOW_BYTES` of rows) is in memory at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
from datasets import Dataset, Features, IterableDataset
from datasets.features.features import require_storage_embed
from datasets.table import cast_array_to_feature, cast_table_to_features, embed_table_storage

DEFAULT_BATCH_ROWS = 10_000
BATCH_BYTES = 32 * 1024 * 1024
GATHER_WINDOW_BYTES = 64 * 1024 * 1024


def rows_per_batch(num_rows: int, num_bytes: int, target_bytes: int = BATCH_BYTES) -> int:
    """Rows in a batch of about `target_bytes`, at most `DEFAULT_BATCH_ROWS`, at least 1.

    >>> rows_per_batch(1_000_000, 100_000_000)
    10000
    """
    if num_rows <= 0 or num_bytes <= 0:
        return DEFAULT_BATCH_ROWS
    return max(1, min(DEFAULT_BATCH_ROWS, int(target_bytes * num_rows / num_bytes)))


def dataset_num_bytes(dataset: Dataset) -> int:
    """Bytes of the rows `dataset` shows (its indices mapping applied), estimated from its table."""
    table = dataset.data.table
    if table.num_rows == 0:
        return 0
    return int(table.nbytes * len(dataset) / table.num_rows)


def dataset_batches(dataset: Dataset, batch_rows: int | None = None) -> Iterator[pa.RecordBatch]:
    """Record batches of `dataset` in its visible order, without `flatten_indices`.

    >>> ds = Dataset.from_dict({"a": [1, 2, 3]}).select([2, 0])
    >>> [b.column(0).to_pylist() for b in dataset_batches(ds)]
    [[3, 1]]
    """
    table = dataset.data.table
    if batch_rows is None:
        batch_rows = rows_per_batch(table.num_rows, table.nbytes)
    indices = dataset._indices  # no public accessor; `datasets` keeps the mapping here
    if indices is None:
        yield from table.to_batches(max_chunksize=batch_rows)
        return
    positions = indices.column(0)
    gather = _Gatherer(table)
    window = max(batch_rows, int(GATHER_WINDOW_BYTES * table.num_rows / max(table.nbytes, 1)))
    for start in range(0, len(positions), window):
        chunk = positions.slice(start, window).to_numpy().astype(np.int64, copy=False)
        gathered = gather.take(chunk)
        yield from gathered.to_batches(max_chunksize=batch_rows)


class _Gatherer:
    """Takes arbitrary row positions out of a chunked table, touching only the batches hit."""

    def __init__(self, table: pa.Table):
        self._batches = table.to_batches()
        self._schema = table.schema
        self._offsets = np.cumsum([0] + [len(b) for b in self._batches])

    def take(self, positions: np.ndarray) -> pa.Table:
        if len(positions) == 0:
            return self._schema.empty_table()
        order = np.argsort(positions, kind="stable")
        ordered = positions[order]
        batch_ids = np.searchsorted(self._offsets, ordered, side="right") - 1
        starts = np.flatnonzero(np.r_[True, batch_ids[1:] != batch_ids[:-1]])
        ends = np.r_[starts[1:], len(ordered)]
        pieces = []
        for start, end in zip(starts, ends, strict=True):
            batch_id = batch_ids[start]
            local = ordered[start:end] - self._offsets[batch_id]
            pieces.append(self._batches[batch_id].take(pa.array(local)))
        gathered = pa.Table.from_batches(pieces, schema=self._schema).combine_chunks()
        if np.all(order[1:] > order[:-1]):
            return gathered
        return gathered.take(pa.array(np.argsort(order)))


def iterable_batches(
    dataset: IterableDataset, batch_rows: int = 1000
) -> tuple[Features | None, Iterator[pa.RecordBatch]]:
    """Features and Arrow batches of a stream.

    A stream with known features is read as Arrow end to end. `datasets` forgets a stream's
    features after `map` (and never knew a generator's); its own Arrow iteration then infers
    each batch alone and fails when an empty list types a column differently from the next
    batch. Such a stream is read as Python batches and encoded once with the features that
    `infer_features` settles on.
    """
    if dataset.features is not None:
        tables = dataset.with_format("arrow").iter(batch_size=batch_rows)
        return dataset.features, (batch for table in tables for batch in table.to_batches())
    python_batches = dataset.with_format(None).iter(batch_size=batch_rows)
    first = next(python_batches, None)
    if first is None:
        return None, iter(())
    inferred = Dataset.from_dict(first).features
    features = infer_features(first, _upstream_features(dataset), inferred)

    def encode() -> Iterator[pa.RecordBatch]:
        # Encode with the plain inferred features, then cast the Arrow storage: encoding
        # through Audio/Video features would need their codecs even for raw bytes.
        for number, batch in enumerate(_chain(first, python_batches)):
            try:
                table = pa.Table.from_pydict(
                    inferred.encode_batch(batch), schema=inferred.arrow_schema
                )
                yield from cast_table_to_features(table, features).to_batches()
            except (pa.ArrowException, TypeError, ValueError) as error:
                raise ValueError(
                    f"stream batch {number} does not fit the features inferred from its first "
                    f"rows {features}: {error}. Declare them with map(..., features=...)"
                ) from error

    return features, encode()


def infer_features(
    head: dict[str, list], upstream: Features, inferred: Features | None = None
) -> Features:
    """Features for a stream's first rows, as `Dataset.from_dict` infers them.

    Decoded images become `Image`; a column whose upstream feature (ClassLabel, Audio, ...)
    still encodes its values keeps that feature.

    >>> from datasets import ClassLabel
    >>> infer_features({"a": [1]}, Features({"a": ClassLabel(names=["x", "y"])}))
    {'a': ClassLabel(names=['x', 'y'])}
    """
    table = Dataset.from_dict(head, features=inferred).data.table
    inferred = inferred or Features.from_arrow_schema(table.schema)
    return Features(
        {
            name: upstream[name]
            if name in upstream
            and upstream[name] != feature
            and _casts(table[name], upstream[name])
            else feature
            for name, feature in inferred.items()
        }
    )


def head_features(dataset: IterableDataset, rows: int = 5) -> Features | None:
    """The stream's Features; when it forgot them (after `map`, a lazy transform's stream),
    inferred from its first `rows` as `infer_features` does, keeping the upstream feature of
    each column it still describes. None for an empty stream.

    This reads (and transforms) the first rows, as `datasets` does itself before it
    concatenates or interleaves streams of unknown features; a loaded stream is not given
    these features, since every row would then be cast to what a few rows suggested.

    >>> stream = Dataset.from_dict({"n": [1, 2]}).to_iterable_dataset()
    >>> head_features(stream.map(lambda row: {"m": row["n"] * 0.5}))
    {'n': Value('int64'), 'm': Value('float64')}
    """
    if dataset.features is not None:
        return dataset.features
    head = next(dataset.with_format(None).iter(batch_size=rows), None)
    if head is None:
        return None
    return infer_features(head, _upstream_features(dataset), Dataset.from_dict(head).features)


def _upstream_features(dataset: IterableDataset) -> Features:
    """The last features known along the stream's chain of example iterables."""
    iterable = dataset._ex_iterable  # datasets keeps the chain here, with no public accessor
    while iterable is not None:
        features = getattr(iterable, "features", None)
        if features is not None:
            return features
        iterable = getattr(iterable, "ex_iterable", None)
    return Features()


def _casts(column: pa.ChunkedArray, feature) -> bool:
    try:
        cast_array_to_feature(column, feature)
    except Exception:  # any failure means: this feature no longer describes the column
        return False
    return True


def conform(
    batches: Iterable[pa.RecordBatch], features: Features | None, source: str
) -> tuple[Features, Iterator[pa.RecordBatch]]:
    """Cast every batch to one schema (from `features`, else from the first batch).

    Local files referenced by Image/Audio columns are embedded as bytes, as `datasets` does
    when saving. A batch that does not fit raises a `ValueError` naming `source`, the batch
    and the columns at fault.
    """
    iterator = iter(batches)
    first = next(iterator, None)
    if features is None:
        if first is None:
            raise ValueError(f"{source}: empty stream with unknown features; pass features=")
        features = Features.from_arrow_schema(first.schema)
    schema = features.arrow_schema
    embed = require_storage_embed(features)

    def cast_all() -> Iterator[pa.RecordBatch]:
        if first is None:
            return
        for number, batch in enumerate(_chain(first, iterator)):
            yield _cast(batch, schema, features, embed, source, number)

    return features, cast_all()


def _chain(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield first
    yield from rest


def _cast(
    batch: pa.RecordBatch,
    schema: pa.Schema,
    features: Features,
    embed: bool,
    source: str,
    number: int,
) -> pa.RecordBatch:
    if batch.schema.names != schema.names:
        missing = [n for n in schema.names if n not in batch.schema.names]
        extra = [n for n in batch.schema.names if n not in schema.names]
        if missing or extra:
            raise ValueError(
                f"{source}: batch {number} has columns {batch.schema.names}, expected "
                f"{schema.names} (missing {missing}, unexpected {extra})"
            )
        batch = batch.select(schema.names)
    if embed:
        table = embed_table_storage(pa.Table.from_batches([batch]))
        batch = table.combine_chunks().to_batches()[0] if table.num_rows else batch
    if batch.schema.equals(schema, check_metadata=False):
        return pa.RecordBatch.from_arrays(batch.columns, schema=schema)
    try:
        return batch.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as error:
        differing = [
            f"{f.name}: got {batch.schema.field(f.name).type}, expected {f.type}"
            for f in schema
            if not batch.schema.field(f.name).type.equals(f.type)
        ]
        raise ValueError(
            f"{source}: batch {number} does not match the features "
            f"({'; '.join(differing)}): {error}"
        ) from error
