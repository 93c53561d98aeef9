"""The interface both stores share, and the parts of it that do not depend on the backend."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import datasets
import pyarrow as pa
from datasets import Dataset, DatasetDict, Features, IterableDataset, IterableDatasetDict

from ds_assets.ops.lazy import apply_transforms
from ds_assets.storage.layout import (
    DATASET,
    DATASET_DICT,
    DICT_KINDS,
    INDEX,
    ITERABLE_DATASET,
    ITERABLE_DATASET_DICT,
    LAYOUT_FILES,
    Manifest,
    check_path_part,
    new_version,
)
from ds_assets.storage.save import PREVIEW_ROWS, SaveResult

Opened = TypeVar("Opened")

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


class StaleVersionError(ValueError):
    """A stored version changed while something derived from it was being made."""


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
    def update_split_index(
        self, key: Sequence[str], splits: Sequence[str] | None = None
    ) -> tuple[list[str], list[str]]:
        """Rewrite `<key>/dataset_dict.json` to list the split datasets stored below `key`:
        those named in `splits` (the splits the dict is made of now), every one when None.
        Returns (listed, left out): a split stored before but no longer named stays on disk,
        unlisted, so `load_from_disk` gives the dict as defined now."""

    @abstractmethod
    def _open(self, key: tuple[str, ...], streaming: bool) -> Dataset | IterableDataset:
        """Open the single dataset at `key`."""

    @abstractmethod
    def _split_names(self, key: tuple[str, ...]) -> list[str]:
        """Split names of the dataset dict at `key`."""

    def save_linked(
        self,
        key: Sequence[str],
        upstream: Sequence[str],
        transform: dict | None = None,
        repeat: int = 1,
        split: str | None = None,
    ) -> SaveResult:
        """Store the stored `upstream` again at `key` without copying its data.

        `repeat` lists every shard that many times (what `Dataset.repeat` gives, stored once);
        `transform` joins the manifest's chain applied on load (see `ds_assets.ops.lazy`);
        `split` takes one split of a stored dict. The upstream version stays readable for as
        long as the result needs it, however often the upstream is saved again.

        >>> import tempfile
        >>> from ds_assets.storage import LocalStore
        >>> store = LocalStore(tempfile.mkdtemp())
        >>> _ = store.save(("raw",), Dataset.from_dict({"n": [1, 2]}))
        >>> store.save_linked(("twice",), ("raw",), repeat=2).manifest.num_rows
        4
        """
        key, upstream = self.check_key(key), self.check_key(upstream)
        manifest = self.manifest(upstream)
        if manifest is None:
            raise NotStoredError(
                f"{self.uri(upstream)}: no ds-assets manifest; materialize the upstream first"
            )
        if split is not None:
            if split not in manifest.splits:
                raise KeyError(
                    f"{self.uri(upstream)} has splits {list(manifest.splits)}, not {split!r}"
                )
            kind = DATASET if manifest.kind == DATASET_DICT else ITERABLE_DATASET
            rows = manifest.splits[split]
            manifest = dataclasses.replace(
                manifest,
                kind=kind,
                num_rows=rows,
                splits={},
                transforms=manifest.chain(split),
                split_transforms={},
            )
        linked = Manifest(
            kind=manifest.kind,
            version=new_version(),
            num_rows=manifest.num_rows * repeat,
            num_bytes=0,
            num_shards=manifest.num_shards,
            splits={name: rows * repeat for name, rows in manifest.splits.items()},
            transforms=[*manifest.transforms, *([transform] if transform else [])],
            split_transforms=manifest.split_transforms,
            source={"path": self.uri(upstream), "version": manifest.version, "split": split},
        )
        with quiet_progress():
            self._save_linked(key, upstream, split, repeat, linked)
            return SaveResult(linked, *self._preview(key))

    @abstractmethod
    def _save_linked(
        self,
        key: tuple[str, ...],
        upstream: tuple[str, ...],
        split: str | None,
        repeat: int,
        linked: Manifest,
    ) -> None:
        """Backend part of `save_linked`: write `linked` and the layout reusing the shards."""

    def save_bundle(
        self,
        key: Sequence[str],
        files: str,
        dataset: Sequence[str] | Sequence[Sequence[str]],
        index: dict,
        versions: Sequence[str] | None = None,
    ) -> Manifest:
        """Store the folder `files` (a search index) at `key`, atomically, together with a
        linked copy of the version of `dataset` it indexes (no data copied), so the rows a
        search returns can always be read back from the very version that was indexed.
        `dataset` may be several keys (the partitions of a dataset, indexed concatenated in
        that order); `load_bundle` concatenates them again. With `versions` (those that were
        indexed, one per key), a key stored again since raises `StaleVersionError` instead.

        >>> import os, tempfile
        >>> from ds_assets.storage import LocalStore
        >>> store, built = LocalStore(tempfile.mkdtemp()), tempfile.mkdtemp()
        >>> _ = store.save(("docs",), Dataset.from_dict({"text": ["a", "b"]}))
        >>> _ = open(os.path.join(built, "index.bin"), "wb").write(b"...")
        >>> store.save_bundle(("docs_index",), built, ("docs",), {"engine": "demo"}).num_rows
        2
        """
        key = self.check_key(key)
        single = bool(dataset) and isinstance(dataset[0], str)
        parts = [self.check_key(part) for part in ([dataset] if single else dataset)]
        if not parts:
            raise ValueError(f"{self.uri(key)}: an index bundle needs at least one dataset")
        upstreams = []
        for part in parts:
            upstream = self.manifest(part)
            if upstream is None or upstream.kind not in (DATASET, ITERABLE_DATASET):
                # a stored stream is the same Arrow files as a Dataset: it is indexed and linked
                # as one
                raise NotStoredError(
                    f"{self.uri(part)}: no Dataset or IterableDataset stored by ds-assets to "
                    "index; materialize it"
                )
            upstreams.append(upstream)
        self._check_same_chain(parts, upstreams)
        for part, upstream, indexed in zip(parts, upstreams, versions or [], strict=False):
            if upstream.version != indexed:
                raise StaleVersionError(
                    f"{self.uri(part)} is at version {upstream.version}, but version {indexed} "
                    "was indexed: it was stored again meanwhile; materialize the index again"
                )
        links = [
            {"path": self.uri(part), "version": upstream.version, "split": None}
            for part, upstream in zip(parts, upstreams, strict=True)
        ]
        size = sum(
            os.path.getsize(os.path.join(folder, name))
            for folder, _, names in os.walk(files)
            for name in names
        )
        manifest = Manifest(
            kind=INDEX,
            version=new_version(),
            num_rows=sum(upstream.num_rows for upstream in upstreams),
            num_bytes=size,
            num_shards=sum(upstream.num_shards for upstream in upstreams),
            transforms=list(upstreams[0].transforms),
            source=links[0] if single else {"parts": links},
            index=dict(index),
        )
        self._save_bundle(key, files, parts, manifest)
        return manifest

    def _check_same_chain(self, parts: list[tuple[str, ...]], upstreams: list[Manifest]) -> None:
        """The parts of a bundle are loaded concatenated with one lazy chain: they must all
        carry the same (`ValueError` naming the first part that differs)."""
        first = upstreams[0].chain()
        for part, upstream in zip(parts[1:], upstreams[1:], strict=True):
            if upstream.chain() != first:
                raise ValueError(
                    f"{self.uri(part)} carries the lazy transforms {upstream.chain()}, but "
                    f"{self.uri(parts[0])} carries {first}: the parts of one index are read "
                    "with one chain; give them the same"
                )

    @staticmethod
    def bundle_links(manifest: Manifest) -> list[dict]:
        """The dataset links of a bundle, in order (one, or one per partition)."""
        source = manifest.source or {}
        return list(source["parts"]) if "parts" in source else [source]

    @abstractmethod
    def _save_bundle(
        self, key: tuple[str, ...], files: str, parts: list[tuple[str, ...]], manifest: Manifest
    ) -> None:
        """Backend part of `save_bundle`: the files, and each part linked under `dataset/`
        (or `dataset/<number>/` when there are several)."""

    def load_bundle(self, key: Sequence[str]) -> tuple[Manifest, str, Dataset]:
        """(manifest, local folder of the index files, the indexed dataset version)."""
        key = self.check_key(key)
        manifest = self.manifest(key)
        if manifest is None or manifest.kind != INDEX:
            raise NotStoredError(f"{self.uri(key)}: no search index stored here")
        with quiet_progress():
            folder, parts = self._open_bundle(key, manifest)
            dataset = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
        return manifest, folder, apply_transforms(dataset, manifest.transforms)

    def open_bundle(
        self,
        key: Sequence[str],
        opener: Callable[[Manifest, str, Dataset], Opened],
        attempts: int = 20,
    ) -> Opened:
        """`opener(manifest, folder, dataset)` (see `load_bundle`) over one whole stored version.

        A local bundle is opened in its live folder, so a save may swap in a new version
        between reading the manifest and opening the index files: the version is read again
        once `opener` has opened them (an open file or memory map keeps its version's bytes),
        and the open is repeated when it changed, so the index never pairs with the rows of
        another version.

        >>> import os, tempfile
        >>> from ds_assets.storage import LocalStore
        >>> store, built = LocalStore(tempfile.mkdtemp()), tempfile.mkdtemp()
        >>> _ = store.save(("docs",), Dataset.from_dict({"text": ["a", "b"]}))
        >>> _ = store.save_bundle(("docs_index",), built, ("docs",), {"engine": "demo"})
        >>> store.open_bundle(("docs_index",), lambda manifest, folder, ds: len(ds))
        2
        """
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(0.05, 0.005 * attempt))
            manifest, folder, dataset = self.load_bundle(key)
            try:
                opened = opener(manifest, folder, dataset)
            except Exception:
                # files swapped under the opener (a row count that no longer matches) or a
                # server collection the next build deleted: open the newer version instead
                if self._same_version(key, manifest):
                    raise
                continue
            if self._same_version(key, manifest):
                return opened
        raise StaleVersionError(
            f"{self.uri(key)}: stored again during each of {attempts} attempts to open it"
        )

    def _check_linked_versions(self, parts: list[tuple[str, ...]], manifest: Manifest) -> None:
        """For `_save_bundle`, once the parts are linked and before the commit: they were linked
        from the upstream's current version, so a save of one since `save_bundle` read its
        version would have linked the newer rows under the older version's name."""
        for part, link in zip(parts, self.bundle_links(manifest), strict=True):
            current = self.manifest(part)
            if current is None or current.version != link["version"]:
                raise StaleVersionError(
                    f"{self.uri(part)} was stored again while the index was being saved "
                    f"(version {link['version']} was indexed); materialize the index again"
                )

    def _same_version(self, key: Sequence[str], manifest: Manifest) -> bool:
        current = self.manifest(key)
        return current is not None and current.version == manifest.version

    @abstractmethod
    def _open_bundle(self, key: tuple[str, ...], manifest: Manifest) -> tuple[str, list[Dataset]]:
        """Backend part of `load_bundle`."""

    def _preview(self, key: tuple[str, ...]) -> tuple[Features, pa.Table]:
        """Features and first rows of what is stored at `key` (for the metadata)."""
        kind = DATASET_DICT if self.stored_kind(key) in DICT_KINDS else DATASET
        loaded = self._load(key, kind)
        first = next(iter(loaded.values())) if isinstance(loaded, dict) else loaded
        head = first.with_format(None).select(range(min(PREVIEW_ROWS, len(first))))
        return first.features, head.with_format("arrow")[:]

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
        if stored == INDEX:
            raise TypeError(
                f"{self.uri(key)} holds a search index: open it with load_bundle (in Dagster, "
                "annotate the input as SearchIndex)"
            )
        kind = kind or stored
        if (kind in DICT_KINDS) != (stored in DICT_KINDS):
            raise TypeError(f"{self.uri(key)} holds a {stored}, which cannot be loaded as a {kind}")
        if kind in (DATASET, ITERABLE_DATASET):
            value = self._open(key, streaming=kind == ITERABLE_DATASET)
            return apply_transforms(value, manifest.transforms) if manifest else value
        streaming = kind == ITERABLE_DATASET_DICT
        splits = {
            split: apply_transforms(
                self._open(key + (split,), streaming), self._split_chain(key, split, manifest)
            )
            for split in self._split_names(key)
        }
        return IterableDatasetDict(splits) if streaming else DatasetDict(splits)

    def _split_chain(self, key: tuple[str, ...], split: str, manifest: Manifest | None) -> list:
        """The lazy chain of one split of the dict at `key`: from the dict's manifest when the
        dict was stored whole, else from the split's own (split assets, stored one by one)."""
        if manifest is not None:
            return manifest.chain(split)
        own = self.manifest(key + (split,))
        return own.chain() if own is not None else []

    def exists(self, key: Sequence[str]) -> bool:
        return self.stored_kind(self.check_key(key)) is not None

    @staticmethod
    def check_key(key: Sequence[str]) -> tuple[str, ...]:
        if isinstance(key, str) or not key:
            raise ValueError(f"a store key is a non-empty sequence of path parts, got {key!r}")
        for part in key:
            if part in LAYOUT_FILES:
                raise ValueError(f"store key {key!r}: {part!r} is the name of a layout file")
        return tuple(check_path_part(part) for part in key)
