"""Turn any supported value into the `save_to_disk` layout, through a backend-neutral target.

A `LayoutTarget` is where files go: a local temporary folder, or a fresh S3 version prefix.
This module decides *what* is written (shards, `state.json`, `dataset_info.json`,
`dataset_dict.json`, our manifest); the targets decide *how* bytes reach their place.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
from datasets import (
    Dataset,
    DatasetDict,
    DatasetInfo,
    Features,
    IterableDataset,
    IterableDatasetDict,
)

from ds_assets.ops.lazy import stored_chain
from ds_assets.storage.batches import conform, dataset_batches, dataset_num_bytes, iterable_batches
from ds_assets.storage.layout import (
    DATASET,
    DATASET_DICT,
    DICT_FILE,
    INFO_FILE,
    ITERABLE_DATASET,
    ITERABLE_DATASET_DICT,
    STATE_FILE,
    Manifest,
    check_split_name,
    info_document,
    parse_size,
    schema_metadata,
    state_document,
)
from ds_assets.storage.writer import ShardSink, plan_shard_rows, write_shards

PREVIEW_ROWS = 5
SUPPORTED_TYPES = "datasets.Dataset, DatasetDict, IterableDataset, IterableDatasetDict"


class LayoutTarget(Protocol):
    def shard_sink(self, subdir: str) -> ShardSink:
        """A sink for the shards of the dataset in `subdir` ('' for the root)."""

    def put_json(self, relative_path: str, document: Any) -> None:
        """Store a JSON document at `relative_path` inside the version being written."""


@dataclass
class SaveResult:
    """What one save wrote: enough for the IO manager's metadata and for the manifest."""

    manifest: Manifest
    features: Features
    preview: pa.Table
    split_features: dict[str, Features] = field(default_factory=dict)


def supported(value: object) -> bool:
    return isinstance(value, (Dataset, DatasetDict, IterableDataset, IterableDatasetDict))


def write_layout(
    value: Dataset | DatasetDict | IterableDataset | IterableDatasetDict,
    target: LayoutTarget,
    version: str,
    *,
    max_shard_size: int | str = "500MB",
) -> SaveResult:
    """Write `value` into `target` as version `version` and return what was written.

    The manifest is returned, not stored: committing it is the caller's last step.
    """
    limit = parse_size(max_shard_size)
    if isinstance(value, (DatasetDict, IterableDatasetDict)):
        if not value:
            raise ValueError("cannot save an empty DatasetDict: it has no split")
        for split in value:  # before anything is written: a split name becomes a folder
            check_split_name(split)
        kind = DATASET_DICT if isinstance(value, DatasetDict) else ITERABLE_DATASET_DICT
        results = {
            split: _write_one(dataset, target, split, version, limit, split_name=split)
            for split, dataset in value.items()
        }
        target.put_json(DICT_FILE, {"splits": list(value)})
        first = next(iter(results.values()))
        manifest = Manifest(
            kind=kind,
            version=version,
            num_rows=sum(r.num_rows for r in results.values()),
            num_bytes=sum(r.num_bytes for r in results.values()),
            num_shards=sum(r.num_shards for r in results.values()),
            splits={split: r.num_rows for split, r in results.items()},
            **_dict_chains({split: r.transforms for split, r in results.items()}),
        )
        return SaveResult(
            manifest,
            first.features,
            first.preview,
            {split: r.features for split, r in results.items()},
        )
    if isinstance(value, (Dataset, IterableDataset)):
        result = _write_one(value, target, "", version, limit)
        kind = DATASET if isinstance(value, Dataset) else ITERABLE_DATASET
        manifest = Manifest(
            kind,
            version,
            result.num_rows,
            result.num_bytes,
            result.num_shards,
            transforms=result.transforms,
        )
        return SaveResult(manifest, result.features, result.preview)
    raise TypeError(f"got {type(value).__name__}, expected one of {SUPPORTED_TYPES}")


def _dict_chains(chains: Mapping[str, list[dict]]) -> dict[str, Any]:
    """The manifest fields storing the lazy chains of a dict's splits: one `transforms` when
    every split carries the same chain, else each split's own (`split_transforms`)."""
    first = next(iter(chains.values()))
    if all(chain == first for chain in chains.values()):
        return {"transforms": first}
    return {"transforms": [], "split_transforms": {s: c for s, c in chains.items() if c}}


@dataclass
class _One:
    num_rows: int
    num_bytes: int
    num_shards: int
    features: Features
    preview: pa.Table
    transforms: list[dict]


def _write_one(dataset, target, subdir, version, limit, split_name=None) -> _One:
    source = f"split {subdir!r}" if subdir else "dataset"
    planned, transforms = None, []
    if isinstance(dataset, Dataset):
        # a lazily transformed dataset (or one derived from it) is stored as its Arrow data
        # plus the chain, applied again on load; the chain's function goes nowhere near JSON
        transforms = stored_chain(dataset)
        if transforms:
            dataset = dataset.with_format(None)
        features, batches = conform(dataset_batches(dataset), dataset.features, source)
        planned = plan_shard_rows(len(dataset), dataset_num_bytes(dataset), limit)
        info = dataset.info.copy()
        # `save_to_disk` records the format from these same attributes (no public accessor)
        state_kwargs = {
            "format_type": dataset._format_type,
            "format_kwargs": dataset._format_kwargs,
            "format_columns": dataset._format_columns,
            "output_all_columns": dataset._output_all_columns,
        }
        fingerprint = dataset._fingerprint
    else:
        features, raw = iterable_batches(dataset)
        features, batches = conform(raw, features, source)
        info = dataset.info.copy() if dataset.info is not None else DatasetInfo()
        state_kwargs = {}
        fingerprint = version.replace("-", "")[-16:]
    info.features = features
    split = split_name if split_name is not None else dataset.split
    schema = features.arrow_schema.with_metadata(schema_metadata(features))
    preview = _Preview(schema)
    stats = write_shards(
        preview.watch(batches),
        schema,
        target.shard_sink(subdir),
        max_shard_size=limit,
        planned_rows=planned,
    )
    prefix = f"{subdir}/" if subdir else ""
    state = state_document(
        [s.name for s in stats],
        fingerprint,
        split=str(split) if split is not None else None,
        **state_kwargs,
    )
    target.put_json(prefix + STATE_FILE, _sorted(state))
    target.put_json(prefix + INFO_FILE, info_document(info))
    return _One(
        num_rows=sum(s.num_rows for s in stats),
        num_bytes=sum(s.num_bytes for s in stats),
        num_shards=len(stats),
        features=features,
        preview=preview.table(),
        transforms=transforms,
    )


def _sorted(document: Mapping[str, Any]) -> dict[str, Any]:
    return {key: document[key] for key in sorted(document)}


class _Preview:
    """Keeps the first rows that stream past, for the metadata preview."""

    def __init__(self, schema: pa.Schema, rows: int = PREVIEW_ROWS):
        self.schema = schema
        self.rows = rows
        self.batches: list[pa.RecordBatch] = []
        self.count = 0

    def watch(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            if self.count < self.rows:
                head = batch.slice(0, self.rows - self.count)
                self.batches.append(head)
                self.count += head.num_rows
            yield batch

    def table(self) -> pa.Table:
        return pa.Table.from_batches(self.batches, schema=self.schema)
