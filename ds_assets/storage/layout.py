"""File names and JSON documents of the Arrow layout that `datasets.save_to_disk` writes.

One place knows the layout, so the local and the S3 store, the writer and the reader agree:

    <dataset dir>/data-00000-of-00002.arrow   Arrow IPC stream shards
                 /data-00001-of-00002.arrow
                 /dataset_info.json          `DatasetInfo` as JSON, sorted keys
                 /state.json                 shard list, fingerprint, format, split
                 /ds_assets.json             our manifest: kind, version, rows (datasets ignores it)
    <dict dir>/dataset_dict.json             {"splits": [...]}, one dataset dir per split
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from datasets import DatasetInfo, Features
from datasets.utils.py_utils import asdict, convert_file_size_to_int

STATE_FILE = "state.json"
INFO_FILE = "dataset_info.json"
DICT_FILE = "dataset_dict.json"
MANIFEST_FILE = "ds_assets.json"
MANIFEST_FORMAT = 2  # 2: `split_transforms`; a reader refuses a format newer than its own
LAYOUT_FILES = (STATE_FILE, INFO_FILE, DICT_FILE, MANIFEST_FILE)
DEFAULT_MAX_SHARD_SIZE = "500MB"

# What was stored; an unannotated input loads the same kind back.
DATASET = "Dataset"
ITERABLE_DATASET = "IterableDataset"
DATASET_DICT = "DatasetDict"
ITERABLE_DATASET_DICT = "IterableDatasetDict"
# A search index stored beside a linked copy of the dataset version it indexes (a "bundle").
INDEX = "Index"
KINDS = (DATASET, ITERABLE_DATASET, DATASET_DICT, ITERABLE_DATASET_DICT, INDEX)
BUNDLE_FILES = "index"  # the index's own files
BUNDLE_DATASET = "dataset"  # the indexed dataset version, linked


def bundle_part_folder(number: int, count: int) -> str:
    """Where part `number` of `count` linked datasets of a bundle lives (relative).

    >>> bundle_part_folder(0, 1), bundle_part_folder(1, 3)
    ('dataset', 'dataset/00001')
    """
    return BUNDLE_DATASET if count == 1 else f"{BUNDLE_DATASET}/{number:05d}"


DICT_KINDS = (DATASET_DICT, ITERABLE_DATASET_DICT)

_SAFE_PART = re.compile(r"^[A-Za-z0-9_%][A-Za-z0-9_.=@+,%-]*$")


def shard_name(index: int, count: int) -> str:
    """Name of shard `index` of `count`, as `datasets` names it.

    >>> shard_name(0, 2)
    'data-00000-of-00002.arrow'
    """
    return f"data-{index:05d}-of-{count:05d}.arrow"


def parse_size(size: int | str) -> int:
    """Bytes in a size given as an int or a string such as ``"500MB"``.

    >>> parse_size("1KB")
    1000
    """
    value = convert_file_size_to_int(size)
    if value <= 0:
        raise ValueError(f"max_shard_size must be a positive size, got {size!r}")
    return value


def check_path_part(part: str) -> str:
    """Return `part` if it is a safe single path component, else raise.

    Safe parts never climb out of the store (no `/`, `..`), never hide (no leading dot, which
    the store keeps for its temporary siblings) and never name a drive.

    >>> check_path_part("train")
    'train'
    """
    if not isinstance(part, str) or not _SAFE_PART.match(part):
        raise ValueError(
            f"unsafe path component {part!r}: expected letters, digits and _.=@+,%- "
            "not starting with a dot"
        )
    return part


def split_index(stored: Sequence[str], splits: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(listed, left out) of the `stored` split folders for `dataset_dict.json`: those named in
    `splits`, in that order, or every one (sorted) when `splits` is None.

    >>> split_index(["test", "train", "validation"], ["train", "test"])
    (['train', 'test'], ['validation'])
    """
    if splits is None:
        return sorted(stored), []
    present = set(stored)
    return [s for s in splits if s in present], sorted(present - set(splits))


def check_split_name(name: str) -> str:
    """Return split name `name` if it can be a split's folder, else raise naming it.

    A split is stored in a folder of its name, as `datasets.save_to_disk` does: the name must
    be a safe path component (see `check_path_part`) and not one of the dict folder's own files.

    >>> check_split_name("train")
    'train'
    >>> check_split_name("../victim")
    Traceback (most recent call last):
    ...
    ValueError: split name '../victim' cannot be a folder name: expected letters, digits and \
_.=@+,%- not starting with a dot
    """
    if name in LAYOUT_FILES:
        raise ValueError(f"split name {name!r} is the name of a layout file")
    try:
        return check_path_part(name)
    except ValueError:
        raise ValueError(
            f"split name {name!r} cannot be a folder name: expected letters, digits and "
            "_.=@+,%- not starting with a dot"
        ) from None


def new_version() -> str:
    """A fresh version id: UTC time to the microsecond, then random hex.

    >>> len(new_version())
    30
    """
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f") + "-" + uuid.uuid4().hex[:8]


def state_document(
    files: Sequence[str],
    fingerprint: str,
    *,
    split: str | None = None,
    format_type: str | None = None,
    format_kwargs: Mapping[str, Any] | None = None,
    format_columns: Sequence[str] | None = None,
    output_all_columns: bool = False,
) -> dict[str, Any]:
    """`state.json` as `Dataset.save_to_disk` writes it."""
    return {
        "_data_files": [{"filename": name} for name in files],
        "_fingerprint": fingerprint,
        "_format_columns": list(format_columns) if format_columns is not None else None,
        "_format_kwargs": dict(format_kwargs or {}),
        "_format_type": format_type,
        "_output_all_columns": output_all_columns,
        "_split": split,
    }


def info_document(info: DatasetInfo) -> dict[str, Any]:
    """`dataset_info.json` as `Dataset.save_to_disk` writes it (keys sorted)."""
    as_dict = asdict(info)
    return {key: as_dict[key] for key in sorted(as_dict)}


def schema_metadata(features: Features) -> dict[str, str]:
    """The `huggingface` schema metadata `datasets.ArrowWriter` puts in every shard."""
    return {"huggingface": json.dumps({"info": {"features": features.to_dict()}})}


def write_json(
    path: str, document: Any, *, indent: int | None = 2, sort_keys: bool = False
) -> None:
    """Write JSON to `path` (used inside a temporary directory, so no atomic rename needed)."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=indent, sort_keys=sort_keys)


class LayoutError(ValueError):
    """A folder does not hold the layout expected (names the file and what was expected)."""


def read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as handle:
        return parse_json(handle.read(), path)


def parse_json(text: str | bytes, where: str) -> Any:
    """The JSON document `text` read from `where`; `LayoutError` naming it if it is not JSON."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        message = f"{where}: not a JSON document ({error}); the stored file is damaged"
        raise LayoutError(message) from None


@dataclass
class Manifest:
    """What a store knows about one stored version (`ds_assets.json`).

    `splits` maps split name to row count for the dict kinds and is empty otherwise.
    """

    kind: str
    version: str
    num_rows: int
    num_bytes: int
    num_shards: int
    splits: dict[str, int] = field(default_factory=dict)
    previous: str | None = None
    # lazy transforms applied on load, in order (see ds_assets.ops.lazy); empty for plain data.
    # A dict whose splits carry different chains lists each in `split_transforms` (applied
    # before `transforms`, which every split gets, e.g. a lazy transform of the whole dict)
    transforms: list[dict] = field(default_factory=list)
    split_transforms: dict[str, list[dict]] = field(default_factory=dict)
    # for linked versions (lazy transform, repeat, split of a dict): the upstream they reuse
    source: dict | None = None
    # for bundles: what the index is (engine, column, dimension, ...), see ds_assets.index
    index: dict | None = None
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    format: int = MANIFEST_FORMAT

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def chain(self, split: str | None = None) -> list[dict]:
        """The lazy transforms to apply on load: of the dataset, or of one split of a dict.

        >>> Manifest("DatasetDict", "v", 3, 0, 2, transforms=[{"transform": "m:g"}],
        ...          split_transforms={"train": [{"transform": "m:f"}]}).chain("train")
        [{'transform': 'm:f'}, {'transform': 'm:g'}]
        """
        own = self.split_transforms.get(split, []) if split is not None else []
        return [*own, *self.transforms]

    @classmethod
    def from_json(cls, document: Mapping[str, Any], source: str) -> Manifest:
        try:
            known = {key: document[key] for key in cls.__dataclass_fields__ if key in document}
            manifest = cls(**known)
        except (KeyError, TypeError) as error:
            raise ValueError(f"{source}: not a ds-assets manifest ({error})") from error
        if manifest.kind not in KINDS:
            raise ValueError(f"{source}: unknown kind {manifest.kind!r}, expected one of {KINDS}")
        if not isinstance(manifest.format, int) or manifest.format > MANIFEST_FORMAT:
            # its fields may mean what this version would silently read wrong
            raise ValueError(
                f"{source}: manifest format {manifest.format!r} was written by a newer ds-assets "
                f"(this one reads formats up to {MANIFEST_FORMAT}); upgrade ds-assets to read it"
            )
        return manifest


def detect_kind(directory: str) -> str | None:
    """Kind of a dataset folder written by us or by `datasets`, or None if it holds none."""
    manifest_path = os.path.join(directory, MANIFEST_FILE)
    if os.path.isfile(manifest_path):
        return Manifest.from_json(read_json(manifest_path), manifest_path).kind
    if os.path.isfile(os.path.join(directory, DICT_FILE)):
        return DATASET_DICT
    if os.path.isfile(os.path.join(directory, STATE_FILE)):
        return DATASET
    return None
