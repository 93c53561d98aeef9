"""The store on S3 (any S3-protocol server), through a boto3 client.

S3 has no atomic rename, so each save writes a fresh version prefix and commits last:

    s3://<bucket>/<prefix>/<key parts...>/ds_assets.json            the manifest (the commit)
    s3://<bucket>/<prefix>/<key parts...>/v-<version>/data-….arrow  the save_to_disk layout
                                                   /state.json, dataset_info.json, ...

A reader reads the manifest, then only that version's objects, so it never sees a mix of two
versions, and a failed or killed save is invisible (its objects are deleted on failure, or
orphaned under a version prefix no manifest names). The previous version is kept for readers
that read the old manifest just before the commit; older ones are deleted.
Datasets written by `datasets.save_to_disk("s3://…")` (no manifest) load too.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

from botocore.exceptions import ClientError
from datasets import DatasetInfo

from ds_assets.storage.atomic import atomic_directory
from ds_assets.storage.base import DatasetStore, NotStoredError, Stored
from ds_assets.storage.layout import (
    DATASET,
    DATASET_DICT,
    DICT_FILE,
    INFO_FILE,
    MANIFEST_FILE,
    STATE_FILE,
    Manifest,
    new_version,
)
from ds_assets.storage.reader import (
    default_cache_dir,
    open_dataset,
    prune_stale_versions,
    stream_arrow_files,
)
from ds_assets.storage.save import SaveResult, write_layout

_VERSION_MARK = "v-"
_MISSING = ("NoSuchKey", "404", "NotFound")
_DENIED = ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "Forbidden")


class S3AccessError(PermissionError):
    """S3 refused a request: wrong credentials or no permission (names bucket and key)."""


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
    @contextlib.contextmanager
    def _errors(self, what: str, object_key: str) -> Iterator[None]:
        """Turn S3's refusals and misses into errors that name the object and the fix."""
        try:
            yield
        except Exception as error:
            # boto3's transfer manager raises its own error with the ClientError as context
            cause = error if isinstance(error, ClientError) else error.__context__
            if not isinstance(cause, ClientError):
                raise
            code = str(cause.response.get("Error", {}).get("Code", ""))
            where = f"s3://{self.bucket}/{object_key}"
            if code in _DENIED:
                raise S3AccessError(
                    f"{where}: S3 refused {what} ({code}); check the access key, secret and "
                    "the bucket policy"
                ) from error
            if code in _MISSING:
                raise NotStoredError(f"{where}: not found") from error
            raise

    def _call(self, what: str, object_key: str, function, **kwargs):
        with self._errors(what, object_key):
            return function(Bucket=self.bucket, **kwargs)

    def _get_json(self, object_key: str) -> Any | None:
        try:
            response = self._call("a read", object_key, self.client.get_object, Key=object_key)
        except NotStoredError:
            return None
        return json.loads(response["Body"].read())

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
        # Keep the version just replaced (a reader may have read its manifest a moment ago);
        # delete the one before it. Only committed versions are deleted, never a prefix that
        # a concurrent writer may still be filling.
        if previous is not None and previous.previous not in (None, version):
            self._delete_prefix(self.object_key(key, _VERSION_MARK + previous.previous) + "/")
        return result

    # -- reading ------------------------------------------------------------------------------
    def manifest(self, key: Sequence[str]) -> Manifest | None:
        object_key = self.object_key(key, MANIFEST_FILE)
        document = self._get_json(object_key)
        return (
            None
            if document is None
            else Manifest.from_json(document, f"s3://{self.bucket}/{object_key}")
        )

    def _resolve(self, key: tuple[str, ...]) -> tuple[str, str, str] | None:
        """(kind, version, prefix holding the layout) of `key`, or None if nothing is there."""
        manifest = self.manifest(key)
        if manifest is not None:
            return (
                manifest.kind,
                manifest.version,
                self.object_key(key, _VERSION_MARK + manifest.version),
            )
        root = self.object_key(key)
        for name, kind in ((STATE_FILE, DATASET), (DICT_FILE, DATASET_DICT)):
            with contextlib.suppress(NotStoredError):
                head = self._call(
                    "a read", f"{root}/{name}", self.client.head_object, Key=f"{root}/{name}"
                )
                return kind, "e-" + head["ETag"].strip('"'), root
        return None

    def stored_kind(self, key: Sequence[str]) -> str | None:
        resolved = self._resolve(self.check_key(key))
        return resolved[0] if resolved else None

    def _split_names(self, key):
        _, _, prefix = self._require(key)
        document = self._get_json(f"{prefix}/{DICT_FILE}") or {}
        return list(document.get("splits", []))

    def _require(self, key):
        resolved = self._resolve(key)
        if resolved is None:
            raise NotStoredError(f"{self.uri(key)}: nothing stored here")
        return resolved

    def _locate_split(self, key: tuple[str, ...]) -> tuple[str, str]:
        """(version, layout prefix) of a dataset, also when it is a split inside a stored dict."""
        resolved = self._resolve(key)
        if resolved is not None:
            return resolved[1], resolved[2]
        parent = self._resolve(key[:-1]) if len(key) > 1 else None
        if parent is None or parent[0] not in (DATASET_DICT, "IterableDatasetDict"):
            raise NotStoredError(f"{self.uri(key)}: nothing stored here")
        return parent[1], f"{parent[2]}/{key[-1]}"

    def _open(self, key, streaming):
        version, prefix = self._locate_split(key)
        if streaming:
            return self._stream(prefix)
        local = os.path.join(self.cache_dir, "s3", self.bucket, *self.object_key(key).split("/"))
        folder = os.path.join(local, version)
        if not os.path.isfile(os.path.join(folder, STATE_FILE)):
            self._download(prefix, folder)
            prune_stale_versions(local, keep=version)
        return open_dataset(folder, os.path.join(self.cache_dir, "views"))

    def _download(self, prefix: str, folder: str) -> None:
        state = self._get_json(f"{prefix}/{STATE_FILE}")
        if state is None:
            raise NotStoredError(f"s3://{self.bucket}/{prefix}/{STATE_FILE}: not found")
        names = [entry["filename"] for entry in state["_data_files"]] + [STATE_FILE, INFO_FILE]
        with atomic_directory(folder) as temp:
            for name in names:
                if os.path.basename(name) != name or name.startswith("."):
                    raise ValueError(f"s3://{self.bucket}/{prefix}/{STATE_FILE}: bad file {name!r}")
                with self._errors("a download", f"{prefix}/{name}"):
                    self.client.download_file(
                        self.bucket, f"{prefix}/{name}", os.path.join(temp, name)
                    )

    def _stream(self, prefix: str):
        state = self._get_json(f"{prefix}/{STATE_FILE}")
        info = self._get_json(f"{prefix}/{INFO_FILE}")
        if state is None or info is None:
            raise NotStoredError(f"s3://{self.bucket}/{prefix}: no {STATE_FILE}/{INFO_FILE}")
        sources = [f"{prefix}/{entry['filename']}" for entry in state["_data_files"]]
        return stream_arrow_files(
            sources,
            _S3Opener(self.client, self.bucket),
            DatasetInfo.from_dict(info),
            state.get("_split"),
        )

    def update_split_index(self, key: Sequence[str]) -> list[str]:
        """List the split datasets stored below `key` in `<key>/dataset_dict.json`."""
        base = self.object_key(key) + "/"
        splits = sorted(
            common["Prefix"][len(base) :].rstrip("/")
            for page in self._list(base, delimiter="/")
            for common in page.get("CommonPrefixes", [])
            if not common["Prefix"][len(base) :].startswith(_VERSION_MARK)
        )
        splits = [s for s in splits if self.manifest((*self.check_key(key), s)) is not None]
        self._put_json(base + DICT_FILE, {"splits": splits})
        return splits


class _S3Opener:
    """Opens an S3 object as a readable stream (no download ahead)."""

    def __init__(self, client, bucket):
        self.client = client
        self.bucket = bucket

    def __call__(self, object_key: str):
        body = self.client.get_object(Bucket=self.bucket, Key=object_key)["Body"]
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
