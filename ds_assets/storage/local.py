"""The store on a local (or mounted) file system: `<root>/<key parts...>/`."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Sequence

from ds_assets.storage.atomic import atomic_directory
from ds_assets.storage.base import DatasetStore, Stored
from ds_assets.storage.layout import (
    BUNDLE_FILES,
    DICT_FILE,
    MANIFEST_FILE,
    STATE_FILE,
    Manifest,
    bundle_part_folder,
    check_path_part,
    detect_kind,
    new_version,
    read_json,
    split_index,
    write_json,
)
from ds_assets.storage.reader import (
    default_cache_dir,
    open_dataset,
    read_manifest,
    read_split_names,
    stream_local_dataset,
)
from ds_assets.storage.save import SaveResult, write_layout
from ds_assets.storage.writer import LocalShardSink

MAX_PART_BYTES = 230  # longest key part (bytes) of a local store: see LocalStore.path
_DATASET_FILES = (MANIFEST_FILE, STATE_FILE)  # a folder holding one is a stored dataset


class _FolderTarget:
    def __init__(self, folder: str):
        self.folder = folder

    def shard_sink(self, subdir: str) -> LocalShardSink:
        directory = os.path.join(self.folder, subdir) if subdir else self.folder
        os.makedirs(directory, exist_ok=True)
        return LocalShardSink(directory)

    def put_json(self, relative_path: str, document) -> None:
        write_json(os.path.join(self.folder, relative_path), document)


class LocalStore(DatasetStore):
    """Datasets under a local folder, in the exact layout of `datasets.save_to_disk`.

    A save writes a hidden sibling folder and swaps it in atomically; loads are memory maps
    opened through a view in `cache_dir`, so transforms never write into `root`.

    >>> import tempfile
    >>> from datasets import Dataset
    >>> root = tempfile.mkdtemp()
    >>> _ = LocalStore(root).save(("raw", "numbers"), Dataset.from_dict({"n": [1]}))
    >>> import datasets; datasets.load_from_disk(f"{root}/raw/numbers")["n"][:]
    [1]
    """

    def __init__(self, root: str, cache_dir: str | None = None):
        self.root = os.path.abspath(os.path.expanduser(root))
        self.view_root = os.path.join(cache_dir or default_cache_dir(), "views")

    def path(self, key: Sequence[str]) -> str:
        parts = self.check_key(key)
        for part in parts:
            # a save writes a hidden sibling `.<part>.tmp-<12 hex>` first: 19 bytes more than
            # the name, within the 255 bytes a file name has on Linux filesystems
            if len(part.encode()) > MAX_PART_BYTES:
                raise ValueError(
                    f"key part {part[:40]!r}... of {len(part.encode())} bytes is too long for a "
                    f"local store (at most {MAX_PART_BYTES} bytes, percent-encoding included)"
                )
        return os.path.join(self.root, *parts)

    def uri(self, key: Sequence[str]) -> str:
        return self.path(key)

    def _save(self, key: tuple[str, ...], value: Stored, max_shard_size: int | str) -> SaveResult:
        final = self._place(key)
        with atomic_directory(final) as temp:
            result = write_layout(
                value, _FolderTarget(temp), new_version(), max_shard_size=max_shard_size
            )
            write_json(os.path.join(temp, MANIFEST_FILE), result.manifest.to_json())
        return result

    def _save_linked(self, key, upstream, split, repeat, linked) -> None:
        """Hard-link the upstream version's shards (copies across file systems), so the
        upstream version stays pinned and `datasets.load_from_disk` opens the result."""
        source = os.path.join(self.path(upstream), *([check_path_part(split)] if split else []))
        with atomic_directory(self._place(key)) as temp:
            _link_tree(source, temp, repeat)
            write_json(os.path.join(temp, MANIFEST_FILE), linked.to_json())

    def _save_bundle(self, key, files, parts, manifest) -> None:
        with atomic_directory(self._place(key)) as temp:
            shutil.copytree(files, os.path.join(temp, BUNDLE_FILES))
            for number, part in enumerate(parts):
                target = os.path.join(temp, *bundle_part_folder(number, len(parts)).split("/"))
                os.makedirs(target)
                _link_tree(self.path(part), target)
            self._check_linked_versions(parts, manifest)
            write_json(os.path.join(temp, MANIFEST_FILE), manifest.to_json())

    def _open_bundle(self, key, manifest):
        path = self.path(key)
        count = len(self.bundle_links(manifest))
        parts = [
            open_dataset(
                os.path.join(path, *bundle_part_folder(n, count).split("/")), self.view_root
            )
            for n in range(count)
        ]
        return os.path.join(path, BUNDLE_FILES), parts

    def _place(self, key: Sequence[str]) -> str:
        """The folder a save of `key` replaces, once checked that the save loses no other key:
        a saved folder is swapped in whole, so a key inside a stored dataset would be deleted by
        that dataset's next save, and a save over a folder of stored keys (split assets) would
        delete them."""
        key = self.check_key(key)
        for depth in range(1, len(key)):
            ancestor = self.path(key[:depth])
            if any(os.path.isfile(os.path.join(ancestor, name)) for name in _DATASET_FILES):
                raise ValueError(
                    f"cannot save {self.path(key)}: {ancestor} is a stored dataset, and its next "
                    "save would delete what is inside it; store this key elsewhere"
                )
        final = self.path(key)
        if os.path.isdir(final) and not os.path.isfile(os.path.join(final, MANIFEST_FILE)):
            inside = sorted(
                entry.name
                for entry in os.scandir(final)
                if entry.is_dir() and os.path.isfile(os.path.join(entry.path, MANIFEST_FILE))
            )
            if inside:
                raise ValueError(
                    f"cannot save {final}: it holds the stored keys {inside} (split assets), "
                    "which a save there would delete; store this key elsewhere"
                )
        return final

    def stored_kind(self, key: Sequence[str]) -> str | None:
        path = self.path(key)
        return detect_kind(path) if os.path.isdir(path) else None

    def manifest(self, key: Sequence[str]) -> Manifest | None:
        path = self.path(key)
        return read_manifest(path) if os.path.isdir(path) else None

    def _open(self, key, streaming):
        path = self.path(key)
        return stream_local_dataset(path) if streaming else open_dataset(path, self.view_root)

    def _split_names(self, key):
        return read_split_names(self.path(key))

    def update_split_index(
        self, key: Sequence[str], splits: Sequence[str] | None = None
    ) -> tuple[list[str], list[str]]:
        """List the split folders below `key` in `dataset_dict.json` (under a file lock)."""
        folder = self.path(key)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f".{DICT_FILE}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            stored = sorted(
                entry.name
                for entry in os.scandir(folder)
                if entry.is_dir()
                and not entry.name.startswith(".")
                and os.path.isfile(os.path.join(entry.path, STATE_FILE))
            )
            listed, left_out = split_index(stored, splits)
            temp = os.path.join(folder, f".{DICT_FILE}.tmp")
            write_json(temp, {"splits": listed}, indent=None)
            os.replace(temp, os.path.join(folder, DICT_FILE))
        return listed, left_out


def _link_tree(source: str, target: str, repeat: int = 1) -> None:
    """Mirror `source` into `target`: shards linked, JSON documents copied, shards listed
    `repeat` times in every `state.json`."""
    for entry in os.scandir(source):
        if entry.name.startswith(".") or entry.name == MANIFEST_FILE:
            continue
        destination = os.path.join(target, entry.name)
        if entry.is_dir():
            os.mkdir(destination)
            _link_tree(entry.path, destination, repeat)
        elif entry.name.endswith(".arrow"):
            try:
                os.link(os.path.realpath(entry.path), destination)
            except OSError:
                # another file system: a copy, since a symbolic link would follow the
                # upstream's folder to its next version instead of pinning this one
                shutil.copyfile(os.path.realpath(entry.path), destination)
        elif entry.name == STATE_FILE and repeat > 1:
            state = read_json(entry.path)
            state["_data_files"] = state["_data_files"] * repeat
            write_json(destination, state, sort_keys=True)
        else:
            shutil.copyfile(entry.path, destination)
