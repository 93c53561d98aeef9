"""The interface both stores share, and the parts of it that do not depend on the backend."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

import datasets
from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict

from ds_assets.ops.lazy import apply_transforms
from ds_assets.storage.layout import (
    DATASET,
    DICT_KINDS,
    ITERABLE_DATASET,
    ITERABLE_DATASET_DICT,
    Manifest,
    check_path_part,
)
from ds_assets.storage.save import SaveResult

Stored = Dataset | DatasetDict | IterableDataset | IterableDatasetDict


@contextlib.contextmanager
def quiet_progress() -> Iterator[None]:
    """Silence `datasets`' progress bars inside our own calls only, then restore the setting.

    Logs stay readable: the IO managers report progress through Dagster's log instead.
    """
    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


class NotStoredError(FileNotFoundError):
    """Nothing is stored at a key (the message names the path or URI)."""


class DatasetStore(ABC):
    """Saves and loads `datasets` objects under keys (tuples of safe path parts).

    >>> import tempfile
    >>> from ds_assets.storage import LocalStore
    >>> store = LocalStore(tempfile.mkdtemp())
    >>> store.save(("numbers",), Dataset.from_dict({"n": [1, 2]})).manifest.num_rows
    2
    >>> store.load(("numbers",))["n"][:]
    [1, 2]
    """

    def save(
        self, key: Sequence[str], value: Stored, *, max_shard_size: int | str = "500MB"
    ) -> SaveResult:
        """Store `value` at `key` atomically and return what was written."""
        with quiet_progress():
            return self._save(self.check_key(key), value, max_shard_size)

    @abstractmethod
    def _save(self, key: tuple[str, ...], value: Stored, max_shard_size: int | str) -> SaveResult:
        """Backend part of `save`."""

    @abstractmethod
    def stored_kind(self, key: Sequence[str]) -> str | None:
        """The kind stored at `key` (`Dataset`, `DatasetDict`, ...), or None."""

    @abstractmethod
    def manifest(self, key: Sequence[str]) -> Manifest | None:
        """Our manifest at `key`, or None (nothing stored, or written by `datasets` itself)."""

    @abstractmethod
    def uri(self, key: Sequence[str]) -> str:
        """Where `key` lives: a local path or an `s3://` URI."""

    @abstractmethod
    def update_split_index(self, key: Sequence[str]) -> list[str]:
        """Rewrite `<key>/dataset_dict.json` to list the split datasets stored below `key`."""

    @abstractmethod
    def _open(self, key: tuple[str, ...], streaming: bool) -> Dataset | IterableDataset:
        """Open the single dataset at `key`."""

    @abstractmethod
    def _split_names(self, key: tuple[str, ...]) -> list[str]:
        """Split names of the dataset dict at `key`."""

    def load(self, key: Sequence[str], kind: str | None = None) -> Stored:
        """Load `key` as `kind` (default: the kind that was stored).

        `Dataset` is memory-mapped, `IterableDataset` streams; a dict kind loads every split.
        """
        with quiet_progress():
            return self._load(self.check_key(key), kind)

    def _load(self, key: tuple[str, ...], kind: str | None) -> Stored:
        manifest = self.manifest(key)
        stored = manifest.kind if manifest else self.stored_kind(key)
        if stored is None:
            raise NotStoredError(f"{self.uri(key)}: nothing stored here")
        kind = kind or stored
        if (kind in DICT_KINDS) != (stored in DICT_KINDS):
            raise TypeError(f"{self.uri(key)} holds a {stored}, which cannot be loaded as a {kind}")
        if kind in (DATASET, ITERABLE_DATASET):
            value = self._open(key, streaming=kind == ITERABLE_DATASET)
        else:
            streaming = kind == ITERABLE_DATASET_DICT
            splits = {s: self._open(key + (s,), streaming) for s in self._split_names(key)}
            value = IterableDatasetDict(splits) if streaming else DatasetDict(splits)
        return apply_transforms(value, manifest.transforms) if manifest else value

    def exists(self, key: Sequence[str]) -> bool:
        return self.stored_kind(self.check_key(key)) is not None

    @staticmethod
    def check_key(key: Sequence[str]) -> tuple[str, ...]:
        if isinstance(key, str) or not key:
            raise ValueError(f"a store key is a non-empty sequence of path parts, got {key!r}")
        return tuple(check_path_part(part) for part in key)
