"""Turn a reader's generator of Arrow tables into a `Dataset` or an `IterableDataset`.

Every reader in `ds_assets.formats` yields Arrow tables (or record batches) that follow one
`Features`; this module is the one place that makes `datasets` objects of them, so all readers
behave alike: memory is bounded by one batch, map-style results are memory-mapped from an Arrow
file in the cache (`$DS_ASSETS_CACHE/formats/`), streams restart from the source on every pass.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pyarrow as pa
from datasets import Dataset, DatasetInfo, Features, IterableDataset
from datasets.iterable_dataset import ArrowExamplesIterable

from ds_assets.storage.layout import schema_metadata
from ds_assets.storage.reader import STALE_VERSION_SECONDS, default_cache_dir

TableGenerator = Callable[..., Iterator[pa.Table | pa.RecordBatch]]


def conform(batch: pa.Table | pa.RecordBatch, schema: pa.Schema) -> pa.Table:
    """`batch` as a table of exactly `schema` (same columns in order, types cast where needed).

    >>> conform(pa.table({"b": [1], "a": ["x"]}), pa.schema({"a": pa.string(), "b": pa.int64()}))
    pyarrow.Table
    a: string
    b: int64
    ----
    a: [["x"]]
    b: [[1]]
    """
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    if table.schema.remove_metadata() == schema.remove_metadata():
        return table.replace_schema_metadata(schema.metadata)
    missing = [name for name in schema.names if name not in table.column_names]
    for name in missing:
        table = table.append_column(name, pa.nulls(table.num_rows, schema.field(name).type))
    return table.select(schema.names).cast(schema)


def remove_stale_outputs(folder: str, max_age: float = STALE_VERSION_SECONDS) -> None:
    """Delete reader outputs older than `max_age` seconds: by then they have been stored
    or dropped (a process still holding one keeps reading it: Linux frees it on close)."""
    now = time.time()
    with os.scandir(folder) as entries:
        for entry in entries:
            if not entry.name.endswith(".arrow"):
                continue
            # another process may remove it meanwhile (its own failed read, or this same sweep)
            with contextlib.suppress(FileNotFoundError):
                if now - entry.stat().st_mtime > max_age:
                    os.remove(entry.path)


def to_dataset(
    generate: TableGenerator,
    kwargs: Mapping[str, Any],
    features: Features,
    *,
    streaming: bool = False,
    shard_by: str | None = None,
    description: str = "",
    cache_dir: str | None = None,
) -> Dataset | IterableDataset:
    """A `Dataset` (written once to an Arrow file, then memory-mapped) or an `IterableDataset`
    (calling `generate(**kwargs)` anew on every pass) of the tables `generate` yields.

    `shard_by` names the argument holding the list of inputs (files, shards): the stream then
    has one shard per input, so `datasets` spreads them over DataLoader workers and nodes
    (`split_dataset_by_node`), `.shard()` splits them, and `.shuffle()` shuffles their order;
    `generate` is called with a part of that list.

    >>> def numbers(stop):
    ...     yield pa.table({"n": list(range(stop))})
    >>> from datasets import Value
    >>> to_dataset(numbers, {"stop": 3}, Features({"n": Value("int64")}))["n"][:]
    [0, 1, 2]
    >>> [row["n"] for row in to_dataset(numbers, {"stop": 2}, Features({"n": Value("int64")}),
    ...                                   streaming=True)]
    [0, 1]
    """
    info = DatasetInfo(features=features, description=description)
    schema = features.arrow_schema
    if streaming:
        # datasets splits the list-valued arguments of an ArrowExamplesIterable into shards:
        # pass it the inputs only, and keep every other argument in the closure
        shards = {shard_by: list(kwargs[shard_by])} if shard_by else {}
        fixed = {name: value for name, value in kwargs.items() if name != shard_by}

        def tables(**shard: Any) -> Iterator[tuple[str, pa.Table]]:
            for number, batch in enumerate(generate(**fixed, **shard)):
                yield str(number), conform(batch, schema)

        return IterableDataset(ArrowExamplesIterable(tables, shards), info=info)
    folder = os.path.join(cache_dir or default_cache_dir(), "formats")
    os.makedirs(folder, exist_ok=True)
    remove_stale_outputs(folder)
    path = os.path.join(folder, f"{uuid.uuid4().hex}.arrow")
    schema = schema.with_metadata(schema_metadata(features))
    try:
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            for batch in generate(**kwargs):
                writer.write_table(conform(batch, schema))
    except BaseException:
        if os.path.exists(path):
            os.remove(path)
        raise
    return Dataset.from_file(path, info=info)
