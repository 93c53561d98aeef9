"""The store on S3 (any S3-protocol server), through a boto3 client.

S3 has no atomic rename, so each save writes a fresh version prefix and commits last:

    s3://<bucket>/<prefix>/<key parts...>/ds_assets.json            the manifest (the commit)
    s3://<bucket>/<prefix>/<key parts...>/v-<version>/data-….arrow  the save_to_disk layout
                                                   /state.json, dataset_info.json, ...

A reader reads the manifest, then only that version's objects, so it never sees a mix of two
versions, and a failed or killed save is invisible (its objects are deleted on failure, or
orphaned under a version prefix no manifest names). The previous version is kept for readers
that read the old manifest just before the commit; older ones are deleted. Each save also
deletes the orphans of its key once they are a day old (`ORPHAN_AGE_SECONDS`: no save takes
that long, so none is still being written), unless a linked save pins them.
Datasets written by `datasets.save_to_disk("s3://…")` (no manifest) load too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import posixpath
import shutil
import tempfile
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from botocore.exceptions import ClientError
from datasets import DatasetInfo

from ds_assets.storage.atomic import atomic_directory
from ds_assets.storage.base import DatasetStore, NotStoredError, Stored
from ds_assets.storage.layout import (
    BUNDLE_FILES,
    DATASET,
    DATASET_DICT,
    DICT_FILE,
    DICT_KINDS,
    INFO_FILE,
    MANIFEST_FILE,
    STATE_FILE,
    Manifest,
    bundle_part_folder,
    new_version,
    parse_json,
    split_index,
)
from ds_assets.storage.reader import (
    LayoutError,
    default_cache_dir,
    open_dataset,
    prune_stale_versions,
    stream_arrow_files,
)
from ds_assets.storage.s3_errors import S3AccessError, S3BucketNotFoundError, s3_errors
from ds_assets.storage.save import SaveResult, write_layout

__all__ = ["S3AccessError", "S3BucketNotFoundError", "S3Store"]

ORPHAN_AGE_SECONDS = 24 * 3600  # version prefixes no manifest names are deleted past this age
_VERSION_MARK = "v-"
_PINS = ".pins"
_VERSION_TIME = "%Y%m%dT%H%M%S%f"  # how `new_version` begins


class S3Store(DatasetStore):
    """Datasets under `s3://bucket/prefix/`, loaded through a local cache keyed by version.

    >>> import boto3
    >>> store = S3Store(boto3.client("s3"), "my-bucket", "datasets")  # doctest: +SKIP
    >>> store.save(("raw", "numbers"), Dataset.from_dict({"n": [1]}))  # doctest: +SKIP
    """

    def __init__(self, client: Any, bucket: str, prefix: str = "", cache_dir: str | None = None):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.cache_dir = os.path.abspath(os.path.expanduser(cache_dir or default_cache_dir()))

    # -- naming -------------------------------------------------------------------------------
    def object_key(self, key: Sequence[str], *rest: str) -> str:
        parts = [self.prefix, *self.check_key(key), *rest]
        return posixpath.join(*[p for p in parts if p])

    def uri(self, key: Sequence[str]) -> str:
        return f"s3://{self.bucket}/{self.object_key(key)}"

    # -- low level ----------------------------------------------------------------------------
    def _errors(self, what: str, object_key: str):
        """Turn S3's refusals and misses into errors that name the object and the fix."""
        return s3_errors(what, self.bucket, object_key, missing=NotStoredError)

    def _call(self, what: str, object_key: str, function, **kwargs):
        with self._errors(what, object_key):
            return function(Bucket=self.bucket, **kwargs)

    def _get_json(self, object_key: str) -> Any | None:
        try:
            response = self._call("a read", object_key, self.client.get_object, Key=object_key)
        except NotStoredError:
            return None
        return parse_json(response["Body"].read(), f"s3://{self.bucket}/{object_key}")

    def _put_json(self, object_key: str, document: Any) -> None:
        body = json.dumps(document, indent=2).encode()
        self._call("a write", object_key, self.client.put_object, Key=object_key, Body=body)

    def _upload(self, path: str, object_key: str) -> None:
        with self._errors("the upload", object_key):
            self.client.upload_file(path, self.bucket, object_key)

    def _list(self, prefix: str, delimiter: str | None = None):
        kwargs = {"Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        paginator = self.client.get_paginator("list_objects_v2")
        with self._errors("a listing", prefix):
            yield from paginator.paginate(Bucket=self.bucket, **kwargs)

    def _delete_prefix(self, prefix: str) -> None:
        keys = [
            {"Key": item["Key"]} for page in self._list(prefix) for item in page.get("Contents", [])
        ]
        for start in range(0, len(keys), 1000):
            self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": keys[start : start + 1000], "Quiet": True}
            )

    # -- saving -------------------------------------------------------------------------------
    def _save(self, key: tuple[str, ...], value: Stored, max_shard_size: int | str) -> SaveResult:
        self._call("access to the bucket", self.object_key(key), self.client.head_bucket)
        previous = self.manifest(key)
        version = new_version()
        version_prefix = self.object_key(key, _VERSION_MARK + version)
        spool = tempfile.mkdtemp(
            prefix="spool-", dir=_ensure(os.path.join(self.cache_dir, "spool"))
        )
        target = _S3Target(self, version_prefix, spool)
        try:
            result = write_layout(value, target, version, max_shard_size=max_shard_size)
            result.manifest.previous = previous.version if previous else None
            self._put_json(posixpath.join(version_prefix, MANIFEST_FILE), result.manifest.to_json())
            self._put_json(self.object_key(key, MANIFEST_FILE), result.manifest.to_json())
        except BaseException:
            with contextlib.suppress(Exception):
                self._delete_prefix(version_prefix + "/")
            raise
        finally:
            shutil.rmtree(spool, ignore_errors=True)
        self._retire_before(key, previous, version)
        return result

    def _retire_before(self, key: tuple[str, ...], previous: Manifest | None, version: str) -> None:
        """Keep the version just replaced (a reader may have read its manifest a moment ago);
        retire the one before it. Only committed versions are retired, never a prefix that a
        concurrent writer may still be filling."""
        if previous is not None and previous.previous not in (None, version):
            self._retire(self.object_key(key), previous.previous)
        keep = {version, previous.version if previous else None}
        with contextlib.suppress(Exception):  # the save itself is done and committed
            self._sweep_orphans(self.object_key(key), keep)

    def _sweep_orphans(self, root: str, keep: set[str | None]) -> None:
        """Delete the version prefixes of saves killed before their commit, once they are
        `ORPHAN_AGE_SECONDS` old (by the time in their version id); `_retire` leaves pinned
        ones and releases the pins an orphan holds."""
        cutoff = datetime.now(timezone.utc) - timedelta(seconds=ORPHAN_AGE_SECONDS)
        for page in self._list(root + "/", delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(root) + 1 :].rstrip("/")
                version = name[len(_VERSION_MARK) :]
                if not name.startswith(_VERSION_MARK) or version in keep:
                    continue
                try:
                    made = datetime.strptime(version[:21], _VERSION_TIME)
                except ValueError:
                    continue  # not a version id of ours: leave it alone
                if made.replace(tzinfo=timezone.utc) < cutoff:
                    self._retire(root, version)

    def _retire(self, root: str, version: str) -> None:
        """Delete version `version` of the key at `root`, unless a linked save still reuses it
        (then the release of its last pin deletes it)."""
        if self._any(f"{root}/{_PINS}/{_VERSION_MARK}{version}/"):
            return
        prefix = f"{root}/{_VERSION_MARK}{version}"
        document = self._get_json(f"{prefix}/{MANIFEST_FILE}") or {}
        self._delete_prefix(prefix + "/")
        source = document.get("source") or {}
        for link in [source, *source.get("parts", [])]:
            if "pin" in link:
                self._release(link)

    def _release(self, source: dict) -> None:
        """Drop a linked version's pin; its owner's version goes too once nothing needs it."""
        pin = source["pin"]
        self._call("a delete", pin, self.client.delete_object, Key=pin)
        root, version = source["owner"], source["owner_version"]
        current = self._get_json(f"{root}/{MANIFEST_FILE}") or {}
        if version not in (current.get("version"), current.get("previous")):
            self._retire(root, version)

    def _any(self, prefix: str) -> bool:
        response = self._call(
            "a listing", prefix, self.client.list_objects_v2, Prefix=prefix, MaxKeys=1
        )
        return response.get("KeyCount", 0) > 0

    # -- linking ------------------------------------------------------------------------------
    def _save_linked(
        self,
        key: tuple[str, ...],
        upstream: tuple[str, ...],
        split: str | None,
        repeat: int,
        linked: Manifest,
    ) -> None:
        """Write a version holding only JSON documents; its shards stay where `upstream`'s are.

        The version whose shards are reused gets a pin object
        (`<owner>/.pins/v-<version>/<hash>.json`) that keeps later saves of the owner from
        deleting it; retiring the linked version removes the pin.
        """
        self._call("access to the bucket", self.object_key(key), self.client.head_bucket)
        previous = self.manifest(key)
        version_prefix = self.object_key(key, _VERSION_MARK + linked.version)
        linked.previous = previous.version if previous else None
        try:
            linked.source = {
                **(linked.source or {}),
                **self._link_documents(upstream, split, repeat, version_prefix, linked),
            }
            self._commit(key, version_prefix, linked)
        except BaseException:
            self._discard(version_prefix, linked.source)
            raise
        self._retire_before(key, previous, linked.version)

    def _link_documents(
        self,
        upstream: tuple[str, ...],
        split: str | None,
        repeat: int,
        target: str,
        linked: Manifest,
    ) -> dict[str, str]:
        """Pin the version `upstream` stores (its data owner's, through chains of links) and
        copy its JSON documents under `target`; the `source` fields naming the reused data."""
        located = self._require(upstream)
        if split is not None:
            located = located.split(split)
        if located.owner is None:
            owner_dataset = self.object_key(upstream, *([split] if split else []))
            located = dataclasses.replace(
                located, owner=(self.object_key(upstream), located.version, owner_dataset)
            )
        owner, owner_version, owner_dataset = located.owner
        digest = hashlib.sha256(f"s3://{self.bucket}/{target}".encode()).hexdigest()
        pin = f"{owner}/{_PINS}/{_VERSION_MARK}{owner_version}/{digest[:32]}.json"
        self._put_json(pin, {"pinned_by": f"s3://{self.bucket}/{target}"})
        try:
            if not self._any(located.data + "/"):
                raise NotStoredError(
                    f"s3://{self.bucket}/{located.data}: the version to reuse was deleted by a "
                    f"newer save of {self.uri(upstream)} while linking; materialize again"
                )
            self._copy_documents(located.prefix, target, linked, repeat)
        except BaseException:
            with contextlib.suppress(Exception):
                self.client.delete_object(Bucket=self.bucket, Key=pin)
            raise
        return {"data": located.data, "owner": owner, "owner_version": owner_version,
                "owner_dataset": owner_dataset, "pin": pin}  # fmt: skip

    def _commit(self, key: tuple[str, ...], version_prefix: str, manifest: Manifest) -> None:
        self._put_json(posixpath.join(version_prefix, MANIFEST_FILE), manifest.to_json())
        self._put_json(self.object_key(key, MANIFEST_FILE), manifest.to_json())

    def _discard(self, version_prefix: str, source: dict | None) -> None:
        """Undo a failed save: its version prefix and the pin it may hold."""
        with contextlib.suppress(Exception):
            self._delete_prefix(version_prefix + "/")
            if source and "pin" in source:
                self.client.delete_object(Bucket=self.bucket, Key=source["pin"])

    def _copy_documents(self, source: str, target: str, linked: Manifest, repeat: int) -> None:
        """Copy the layout's JSON documents, each shard listed `repeat` times in `state.json`."""
        folders = [""]
        if linked.kind in DICT_KINDS:
            folders = list(linked.splits)
            self._put_json(f"{target}/{DICT_FILE}", {"splits": folders})
        for folder in folders:
            for name in (STATE_FILE, INFO_FILE):
                path = posixpath.join(source, folder, name)
                document = self._get_json(path)
                if document is None:
                    raise NotStoredError(f"s3://{self.bucket}/{path}: not found")
                if name == STATE_FILE:
                    document["_data_files"] = document["_data_files"] * repeat
                self._put_json(posixpath.join(target, folder, name), document)

    # -- bundles ------------------------------------------------------------------------------
    def _save_bundle(self, key, files, parts, manifest) -> None:
        """Upload the index files under `v-<version>/index/` and link each dataset version
        under `v-<version>/dataset[/<number>]/` (pinned, JSON documents only), then commit."""
        self._call("access to the bucket", self.object_key(key), self.client.head_bucket)
        previous = self.manifest(key)
        version_prefix = self.object_key(key, _VERSION_MARK + manifest.version)
        manifest.previous = previous.version if previous else None
        links = self.bundle_links(manifest)
        try:
            for folder, _, names in os.walk(files):
                for name in names:
                    relative = os.path.relpath(os.path.join(folder, name), files)
                    object_key = "/".join([version_prefix, BUNDLE_FILES, *relative.split(os.sep)])
                    self._upload(os.path.join(folder, name), object_key)
            plain = dataclasses.replace(manifest, kind=DATASET, splits={})
            for number, (part, link) in enumerate(zip(parts, links, strict=True)):
                target = f"{version_prefix}/{bundle_part_folder(number, len(parts))}"
                link.update(self._link_documents(part, None, 1, target, plain))
            self._check_linked_versions(parts, manifest)
            self._commit(key, version_prefix, manifest)
        except BaseException:
            for link in links:
                self._discard(version_prefix, link)
            raise
        self._retire_before(key, previous, manifest.version)

    def _open_bundle(self, key, manifest):
        version_prefix = self.object_key(key, _VERSION_MARK + manifest.version)
        local = os.path.join(self._cache_folder(self.object_key(key)), manifest.version)
        files = os.path.join(local, BUNDLE_FILES)
        if not os.path.isdir(files):
            self._download_tree(f"{version_prefix}/{BUNDLE_FILES}/", files)
            prune_stale_versions(os.path.dirname(local), keep=manifest.version)
        links = self.bundle_links(manifest)
        parts = []
        for number, link in enumerate(links):
            relative = bundle_part_folder(number, len(links))
            located = _Located(
                DATASET, manifest.version, f"{version_prefix}/{relative}", link["data"],
                (link["owner"], link["owner_version"], link["owner_dataset"]),
            )  # fmt: skip
            folder = os.path.join(local, *relative.split("/"))
            if not os.path.isfile(os.path.join(folder, STATE_FILE)):
                self._download(located, folder)
            parts.append(open_dataset(folder, os.path.join(self.cache_dir, "views")))
        return files, parts

    def _download_tree(self, prefix: str, folder: str) -> None:
        """Download every object under `prefix` into `folder`, atomically."""
        with atomic_directory(folder) as temp:
            for page in self._list(prefix):
                for item in page.get("Contents", []):
                    parts = item["Key"][len(prefix) :].split("/")
                    if any(part in ("", ".", "..") for part in parts):
                        raise ValueError(f"s3://{self.bucket}/{item['Key']}: bad file name")
                    path = os.path.join(temp, *parts)
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    with self._errors("a download", item["Key"]):
                        self.client.download_file(self.bucket, item["Key"], path)

    # -- reading ------------------------------------------------------------------------------
    def manifest(self, key: Sequence[str]) -> Manifest | None:
        object_key = self.object_key(key, MANIFEST_FILE)
        document = self._get_json(object_key)
        return (
            None
            if document is None
            else Manifest.from_json(document, f"s3://{self.bucket}/{object_key}")
        )

    def _resolve(self, key: tuple[str, ...]) -> _Located | None:
        """Where the stored version of `key` lives, or None if nothing is there."""
        manifest = self.manifest(key)
        if manifest is not None:
            prefix = self.object_key(key, _VERSION_MARK + manifest.version)
            source = manifest.source or {}
            if "data" not in source:
                return _Located(manifest.kind, manifest.version, prefix, prefix)
            owner = (source["owner"], source["owner_version"], source["owner_dataset"])
            return _Located(manifest.kind, manifest.version, prefix, source["data"], owner)
        root = self.object_key(key)
        for name, kind in ((STATE_FILE, DATASET), (DICT_FILE, DATASET_DICT)):
            with contextlib.suppress(NotStoredError):
                head = self._call(
                    "a read", f"{root}/{name}", self.client.head_object, Key=f"{root}/{name}"
                )
                return _Located(kind, "e-" + head["ETag"].strip('"'), root, root)
        return None

    def stored_kind(self, key: Sequence[str]) -> str | None:
        resolved = self._resolve(self.check_key(key))
        return resolved.kind if resolved else None

    def _split_names(self, key):
        document = self._get_json(f"{self._require(key).prefix}/{DICT_FILE}") or {}
        return list(document.get("splits", []))

    def _require(self, key):
        resolved = self._resolve(key)
        if resolved is None:
            raise NotStoredError(f"{self.uri(key)}: nothing stored here")
        return resolved

    def _locate_split(self, key: tuple[str, ...]) -> _Located:
        """Where a dataset lives, also when it is a split inside a stored dict."""
        resolved = self._resolve(key)
        if resolved is not None:
            return resolved
        parent = self._resolve(key[:-1]) if len(key) > 1 else None
        if parent is None or parent.kind not in DICT_KINDS:
            raise NotStoredError(f"{self.uri(key)}: nothing stored here")
        return parent.split(key[-1])

    def _cache_folder(self, dataset_object_key: str) -> str:
        return os.path.join(self.cache_dir, "s3", self.bucket, *dataset_object_key.split("/"))

    def _open(self, key, streaming, attempts: int = 5):
        """The stored version of `key`. An object missing from the version the manifest names
        is a newer save that retired it while we read (read the newer one), or, if the manifest
        still names it, a damaged version: `LayoutError`, never `NotStoredError`, which would
        read as "nothing stored here" (a partition not materialized, skipped)."""
        for _ in range(attempts):
            located = self._locate_split(key)
            try:
                return self._open_version(key, located, streaming)
            except NotStoredError as error:
                if self._locate_split(key).version != located.version:
                    continue
                raise LayoutError(
                    f"{self.uri(key)}: stored version {located.version} is damaged ({error})"
                ) from error
        raise LayoutError(f"{self.uri(key)}: changed during each of {attempts} attempts to read")

    def _open_version(self, key, located: _Located, streaming: bool):
        if streaming:
            return self._stream(located)
        local = self._cache_folder(self.object_key(key))
        folder = os.path.join(local, located.version)
        if not os.path.isfile(os.path.join(folder, STATE_FILE)):
            self._download(located, folder)
            prune_stale_versions(local, keep=located.version)
        return open_dataset(folder, os.path.join(self.cache_dir, "views"))

    def _download(self, located: _Located, folder: str) -> None:
        """Fetch one version into `folder`: its JSON documents, and each shard once (hard-linked
        from the cached data owner's copy when a linked version's owner is already cached)."""
        state = self._get_json(f"{located.prefix}/{STATE_FILE}")
        if state is None:
            raise NotStoredError(f"s3://{self.bucket}/{located.prefix}/{STATE_FILE}: not found")
        shards = list(dict.fromkeys(entry["filename"] for entry in state["_data_files"]))
        owner_copy = self._owner_cache(located)
        with atomic_directory(folder) as temp:
            for name in [*shards, STATE_FILE, INFO_FILE]:
                if os.path.basename(name) != name or name.startswith("."):
                    raise ValueError(
                        f"s3://{self.bucket}/{located.prefix}/{STATE_FILE}: bad file {name!r}"
                    )
                prefix = located.data if name in shards else located.prefix
                cached = os.path.join(owner_copy, name) if owner_copy else None
                if cached and name in shards and os.path.isfile(cached):
                    with contextlib.suppress(OSError):
                        os.link(cached, os.path.join(temp, name))
                        continue
                with self._errors("a download", f"{prefix}/{name}"):
                    self.client.download_file(
                        self.bucket, f"{prefix}/{name}", os.path.join(temp, name)
                    )

    def _owner_cache(self, located: _Located) -> str | None:
        """The cache folder of the version whose shards a linked version reuses, if any."""
        if located.owner is None:
            return None
        _, owner_version, owner_dataset = located.owner
        return os.path.join(self._cache_folder(owner_dataset), owner_version)

    def _stream(self, located: _Located):
        prefix = located.prefix
        state = self._get_json(f"{prefix}/{STATE_FILE}")
        info = self._get_json(f"{prefix}/{INFO_FILE}")
        if state is None or info is None:
            raise NotStoredError(f"s3://{self.bucket}/{prefix}: no {STATE_FILE}/{INFO_FILE}")
        sources = [f"{located.data}/{entry['filename']}" for entry in state["_data_files"]]
        return stream_arrow_files(
            sources,
            _S3Opener(self.client, self.bucket),
            DatasetInfo.from_dict(info),
            state.get("_split"),
        )

    def update_split_index(
        self, key: Sequence[str], splits: Sequence[str] | None = None
    ) -> tuple[list[str], list[str]]:
        """List the split datasets stored below `key` in `<key>/dataset_dict.json`."""
        base = self.object_key(key) + "/"
        stored = sorted(
            common["Prefix"][len(base) :].rstrip("/")
            for page in self._list(base, delimiter="/")
            for common in page.get("CommonPrefixes", [])
            if not common["Prefix"][len(base) :].startswith(_VERSION_MARK)
        )
        stored = [s for s in stored if self.manifest((*self.check_key(key), s)) is not None]
        listed, left_out = split_index(stored, splits)
        self._put_json(base + DICT_FILE, {"splits": listed})
        return listed, left_out


@dataclasses.dataclass(frozen=True)
class _Located:
    """Where one stored version lives: its JSON documents under `prefix`, its shards under
    `data`: the same prefix, or for a linked version the one it reuses, whose owner is named
    by `owner` = (owner's key, owner's version, object key of the dataset inside the owner)."""

    kind: str
    version: str
    prefix: str
    data: str
    owner: tuple[str, str, str] | None = None

    def split(self, name: str) -> _Located:
        owner = (*self.owner[:2], f"{self.owner[2]}/{name}") if self.owner else None
        return _Located(
            DATASET, self.version, f"{self.prefix}/{name}", f"{self.data}/{name}", owner
        )


class _S3Opener:
    """Opens an S3 object as a readable stream (no download ahead)."""

    def __init__(self, client, bucket):
        self.client = client
        self.bucket = bucket

    def __call__(self, object_key: str):
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=object_key)["Body"]
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            raise LayoutError(
                f"s3://{self.bucket}/{object_key}: cannot read this shard of the stream ({code}); "
                "the version was damaged or retired by newer saves since the stream was opened"
            ) from error
        return contextlib.closing(body)


class _S3Sink:
    """Uploads each finished shard and deletes its local file, keeping local disk to one shard.

    When the shard count is unknown until the end (a stream), shards go up under provisional
    names and are copied to their final names at the end, except the last, which waits
    locally until its name is known (so a one-shard stream needs no copy).
    """

    def __init__(self, store: S3Store, prefix: str, spool: str):
        self.store = store
        self.prefix = prefix
        self.spool = spool
        self.pending: int | None = None

    def local_path(self, index: int) -> str:
        return os.path.join(self.spool, f"shard-{index:05d}.arrow")

    def _provisional(self, index: int) -> str:
        return f"{self.prefix}/.partial-{index:05d}.arrow"

    def _send(self, index: int, object_key: str) -> None:
        self.store._upload(self.local_path(index), object_key)
        os.remove(self.local_path(index))

    def shard_closed(self, index: int, final_name: str | None) -> None:
        if final_name is not None:
            self._send(index, f"{self.prefix}/{final_name}")
            return
        if self.pending is not None:
            self._send(self.pending, self._provisional(self.pending))
        self.pending = index

    def finish(self, names: Sequence[str]) -> None:
        client, bucket = self.store.client, self.store.bucket
        for index, name in enumerate(names):
            if index == self.pending:
                self._send(index, f"{self.prefix}/{name}")
            elif self.pending is not None:
                source = {"Bucket": bucket, "Key": self._provisional(index)}
                with self.store._errors("a copy", f"{self.prefix}/{name}"):
                    client.copy(source, bucket, f"{self.prefix}/{name}")
                    client.delete_object(Bucket=bucket, Key=self._provisional(index))


class _S3Target:
    def __init__(self, store: S3Store, prefix: str, spool: str):
        self.store = store
        self.prefix = prefix
        self.spool = spool

    def shard_sink(self, subdir: str) -> _S3Sink:
        prefix = f"{self.prefix}/{subdir}" if subdir else self.prefix
        spool = _ensure(os.path.join(self.spool, subdir or "_root"))
        return _S3Sink(self.store, prefix, spool)

    def put_json(self, relative_path: str, document: Any) -> None:
        self.store._put_json(f"{self.prefix}/{relative_path}", document)


def _ensure(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path
