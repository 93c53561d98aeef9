"""Open the `save_to_disk` layout: memory-mapped `Dataset`s, `DatasetDict`s and streams.

`datasets.load_from_disk` alone has a side effect we must avoid: the loaded dataset's cache
files are the stored shards, so a later `map`/`filter` writes `cache-*.arrow` files into the
stored asset's folder. We open each stored version through a *view*: a folder in our cache
holding symbolic links to the shards and copies of the JSON files, keyed by the version. The
data is still memory-mapped from the stored shards, `datasets` does all the parsing, and its
transform caches land in the view (and are reused while the version stays the same).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO

import pyarrow as pa
from datasets import Dataset, DatasetDict, DatasetInfo, IterableDataset, IterableDatasetDict
from datasets.iterable_dataset import ArrowExamplesIterable

from ds_assets.storage.atomic import atomic_directory
from ds_assets.storage.layout import (
    DICT_FILE,
    INFO_FILE,
    MANIFEST_FILE,
    STATE_FILE,
    LayoutError,
    Manifest,
    read_json,
)


def default_cache_dir() -> str:
    """Where views and S3 downloads go: `$DS_ASSETS_CACHE`, else `~/.cache/ds_assets`."""
    return os.environ.get("DS_ASSETS_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "ds_assets"
    )


def read_state(directory: str) -> dict:
    path = os.path.join(directory, STATE_FILE)
    if not os.path.isfile(path):
        raise LayoutError(f"{path}: missing; expected the state.json of a saved Dataset")
    state = read_json(path)
    if not isinstance(state, dict) or not isinstance(state.get("_data_files"), list):
        raise LayoutError(f"{path}: expected a JSON object with a '_data_files' list")
    return state


def read_split_names(directory: str) -> list[str]:
    path = os.path.join(directory, DICT_FILE)
    document = read_json(path)
    splits = document.get("splits") if isinstance(document, dict) else None
    if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
        raise LayoutError(f"{path}: expected {{'splits': [names...]}}, got {document!r}")
    return splits


def read_manifest(directory: str) -> Manifest | None:
    path = os.path.join(directory, MANIFEST_FILE)
    if not os.path.isfile(path):
        return None
    return Manifest.from_json(read_json(path), path)


def version_token(directory: str) -> str:
    """The stored version of a dataset folder: our manifest's, else a digest of its files."""
    manifest = read_manifest(directory)
    if manifest is not None:
        return manifest.version
    digest = hashlib.sha256()
    for name in sorted(os.listdir(directory)):
        stat = os.stat(os.path.join(directory, name))
        digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return "d-" + digest.hexdigest()[:24]


def open_dataset(directory: str, view_root: str | None = None, attempts: int = 50) -> Dataset:
    """Memory-map the `Dataset` saved in `directory`; transform caches go to `view_root`.

    A writer may swap in a new version while we open: the version is read before and after
    mapping the shards, and the open is retried when they differ, so the result is always
    one whole version.

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> Dataset.from_dict({"a": [1]}).save_to_disk(folder)
    >>> open_dataset(folder)[0]
    {'a': 1}
    """
    directory = os.path.abspath(directory)
    key = hashlib.sha256(directory.encode()).hexdigest()[:20]
    views = os.path.join(view_root or os.path.join(default_cache_dir(), "views"), key)
    for attempt in range(attempts):
        if attempt:
            time.sleep(min(0.05, 0.002 * attempt))
        version = version_token(directory)
        try:
            dataset = _open_through_view(directory, os.path.join(views, version))
        except (FileNotFoundError, LayoutError):
            if attempt + 1 == attempts or version_token(directory) == version:
                raise
            continue
        if version_token(directory) == version:
            prune_stale_versions(views, keep=version)
            return dataset
    raise LayoutError(f"{directory}: changed during each of {attempts} attempts to open it")


def _open_through_view(directory: str, view: str) -> Dataset:
    state = read_state(directory)
    if not os.path.isfile(os.path.join(view, STATE_FILE)):
        with atomic_directory(view) as temp:
            for name in dict.fromkeys(_shard_file_name(e, directory) for e in state["_data_files"]):
                _pin(os.path.join(directory, name), os.path.join(temp, name))
            for name in (STATE_FILE, INFO_FILE):
                shutil.copyfile(os.path.join(directory, name), os.path.join(temp, name))
    for entry in state["_data_files"]:
        shard = os.path.join(directory, _shard_file_name(entry, directory))
        if not os.path.isfile(shard):
            raise LayoutError(f"{shard}: listed in {STATE_FILE} but missing")
    return Dataset.load_from_disk(view, keep_in_memory=False)


def _pin(shard: str, link: str) -> None:
    """Link `shard` into a view. A hard link keeps this version's bytes under the view's path
    after a newer version replaces the folder: a dataset pickled to a worker process (`map`
    with `num_proc`, a DataLoader) reopens its files by path, and must find the version it was
    opened at. Across file systems (a cache elsewhere) only a symbolic link is possible, which
    follows the folder to its newest version: keep the cache on the store's file system."""
    try:
        os.link(shard, link)
    except OSError:
        os.symlink(shard, link)


def _shard_file_name(entry: object, directory: str) -> str:
    name = entry.get("filename") if isinstance(entry, dict) else None
    if not isinstance(name, str) or os.path.basename(name) != name or name.startswith("."):
        raise LayoutError(
            f"{os.path.join(directory, STATE_FILE)}: bad data file entry {entry!r}; "
            "expected {'filename': 'data-…arrow'} naming a file in the same folder"
        )
    return name


STALE_VERSION_SECONDS = 3600


def prune_stale_versions(folder: str, keep: str, min_age: float = STALE_VERSION_SECONDS) -> None:
    """Delete version folders in `folder` other than `keep` that were untouched for `min_age`.

    Not at once: another process may still be opening an older version, or writing `map`
    caches into its view.
    """
    now = time.time()
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if entry.name == keep or entry.name.startswith("."):
                continue
            with contextlib.suppress(OSError):
                if now - entry.stat().st_mtime > min_age:
                    shutil.rmtree(entry.path, ignore_errors=True)


def open_dataset_dict(directory: str, view_root: str | None = None) -> DatasetDict:
    """Memory-map every split of a `DatasetDict` folder (`dataset_dict.json` + one folder each)."""
    return DatasetDict(
        {
            split: open_dataset(os.path.join(directory, split), view_root)
            for split in read_split_names(directory)
        }
    )


def stream_arrow_files(
    sources: Sequence[str],
    opener: Callable[[str], BinaryIO],
    info: DatasetInfo,
    split: str | None = None,
) -> IterableDataset:
    """An `IterableDataset` over Arrow IPC stream files, read batch by batch, one shard per file.

    `opener` turns a source (a local path, an S3 key) into a readable binary file; nothing is
    downloaded ahead. Batches stay Arrow end to end (`with_format("arrow")` costs nothing).
    """
    iterable = ArrowExamplesIterable(_generate_tables, {"sources": list(sources), "opener": opener})
    return IterableDataset(iterable, info=info.copy(), split=split)


def _generate_tables(sources: list[str], opener: Callable[[str], BinaryIO]) -> Iterator:
    for source in sources:
        with opener(source) as handle:
            reader = pa.ipc.open_stream(handle)
            for number, batch in enumerate(reader):
                yield f"{source}:{number}", pa.Table.from_batches([batch])


def stream_local_dataset(directory: str) -> IterableDataset:
    """Stream the `Dataset` saved in `directory` without memory-mapping it whole."""
    state = read_state(directory)
    info = DatasetInfo.from_dict(read_json(os.path.join(directory, INFO_FILE)))
    files = [os.path.join(directory, _shard_file_name(e, directory)) for e in state["_data_files"]]
    return stream_arrow_files(files, _open_local, info, split=state.get("_split"))


def stream_local_dataset_dict(directory: str) -> IterableDatasetDict:
    return IterableDatasetDict(
        {
            split: stream_local_dataset(os.path.join(directory, split))
            for split in read_split_names(directory)
        }
    )


def _open_local(path: str) -> BinaryIO:
    return pa.OSFile(path, "rb")
