"""Listing the files of a source location (a local folder or an S3 prefix), oldest name first.

Sensors pick up new files by name: `list_files(location, pattern, after=name)` returns only the
names that sort after `after`, so on S3 a listing starts there (`StartAfter`) and costs time in
proportion to the new files. A local folder is read with one `os.scandir` per directory level
and only names after `after` are `stat`-ed.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ds_assets.storage.s3_errors import s3_errors

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileEntry:
    """One file: its name relative to the location (with `/`), size and modification stamp."""

    name: str
    size: int
    stamp: str


def s3_client_of(resource: Any) -> Any:
    """A boto3 client from what a Dagster context holds under an S3 resource key: dagster-aws's
    `S3Resource` puts the client itself there; other resources offer `get_client()`."""
    return resource.get_client() if hasattr(resource, "get_client") else resource


_S3_SCHEMES = ("s3", "s3a", "s3n")  # s3a/s3n: Hadoop's names for the same objects


def normalize_location(location: str) -> str:
    """`location` as the listings take it: a local folder as given, an S3 URL with the scheme
    written `s3://` (also accepted: `S3://`, and Hadoop's `s3a://` and `s3n://`). Any other
    URL is refused rather than taken for a local folder that never appears.

    >>> normalize_location("S3A://ml/raw"), normalize_location("incoming/xml")
    ('s3://ml/raw', 'incoming/xml')
    """
    scheme, separator, rest = location.partition("://")
    if not separator:
        return location
    if scheme.lower() in _S3_SCHEMES:
        return "s3://" + rest
    raise ValueError(
        f"{location!r}: expected a local folder or an s3://bucket/prefix URL, not a {scheme}:// URL"
    )


def is_s3(location: str) -> bool:
    return normalize_location(location).startswith("s3://")


def split_s3(location: str) -> tuple[str, str]:
    """(bucket, prefix ending in `/` or empty) of an `s3://bucket/prefix` location.

    >>> split_s3("s3://ml/raw/xml")
    ('ml', 'raw/xml/')
    """
    bucket, _, prefix = normalize_location(location)[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"{location!r}: expected s3://bucket/prefix")
    prefix = prefix.strip("/")
    return bucket, prefix + "/" if prefix else ""


def check_name(location: str, name: str) -> str:
    """`name` if it stays inside `location` (no absolute path, no `..`, no empty part)."""
    if not _inside(name):
        raise ValueError(f"{location}: file name {name!r} leaves the source location")
    return name


def pattern_matcher(pattern: str) -> Callable[[str], bool]:
    """A test of relative file names against `pattern` (fnmatch, case-sensitive): `*` matches
    within and across folders, and a `**/` at the start or after a `/` also matches no folder
    at all, as in a shell's globstar (`**/*.xml` takes `a.xml` as well as `2026/01/a.xml`).

    >>> matches = pattern_matcher("**/*.xml")
    >>> matches("a.xml"), matches("2026/01/a.xml"), matches("a.txt")
    (True, True, False)
    """
    variants = sorted(_without_globstars(pattern))
    return lambda name: any(fnmatch.fnmatchcase(name, variant) for variant in variants)


def _without_globstars(pattern: str, start: int = 0) -> set[str]:
    """`pattern` with each `**/` from `start` on kept or dropped, in every combination."""
    index = pattern.find("**/", start)
    while index > 0 and pattern[index - 1] != "/":
        index = pattern.find("**/", index + 1)
    if index < 0:
        return {pattern}
    dropped = pattern[:index] + pattern[index + 3 :]
    return _without_globstars(pattern, index + 3) | _without_globstars(dropped, index)


def list_files(
    location: str,
    pattern: str = "*",
    *,
    after: str | None = None,
    limit: int | None = None,
    s3_client: Any = None,
) -> Iterator[FileEntry]:
    """The files under `location` whose relative name matches `pattern` (see
    `pattern_matcher`), in name order, only those sorting after `after`, at most `limit`.
    Hidden files and folders (names starting with `.`) are left out, on disk and on S3.

    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("a.xml", "b.xml", "c.txt"):
    ...     _ = (folder / name).write_text("<r/>")
    >>> [entry.name for entry in list_files(str(folder), "*.xml", after="a.xml")]
    ['b.xml']
    """
    location = normalize_location(location)
    if is_s3(location):
        entries = _list_s3(location, after, s3_client)
    else:
        entries = _list_local(os.path.abspath(location), "", after)
    matches = pattern_matcher(pattern)
    count = 0
    for entry in entries:
        if limit is not None and count >= limit:
            return
        if matches(entry.name):
            count += 1
            yield entry


def files_named(location: str, name: str, s3_client: Any = None) -> list[FileEntry]:
    """The files under `location` whose relative name starts with `name` in its folder: the
    file itself and its siblings such as `<name>.done`, in one S3 listing or one local
    folder scan (how a sensor looks again at a few files it set aside, without listing
    everything after them).

    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for each in ("a.xml", "a.xml.done", "ab.xml"):
    ...     _ = (folder / each).write_text("<r/>")
    >>> [entry.name for entry in files_named(str(folder), "a.xml")]
    ['a.xml', 'a.xml.done']
    """
    location = normalize_location(location)
    if is_s3(location):
        return list(_list_s3(location, None, s3_client, name_prefix=name))
    root = os.path.abspath(location)
    folder, _, start = name.rpartition("/")
    try:
        scan = os.scandir(os.path.join(root, *folder.split("/")) if folder else root)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    with scan:
        for entry in scan:
            if entry.name.startswith(start) and entry.is_file(follow_symlinks=False):
                stat = entry.stat(follow_symlinks=False)
                relative = f"{folder}/{entry.name}" if folder else entry.name
                found.append(FileEntry(relative, stat.st_size, str(stat.st_mtime_ns)))
    return sorted(found, key=lambda entry: entry.name)


def _list_local(root: str, relative: str, after: str | None) -> Iterator[FileEntry]:
    directory = os.path.join(root, relative) if relative else root
    with os.scandir(directory) as scan:
        names = sorted(
            (entry.name + "/" if entry.is_dir(follow_symlinks=False) else entry.name, entry)
            for entry in scan
            if not entry.name.startswith(".")
        )
    for name, entry in names:
        full = relative + name
        if name.endswith("/"):
            # a directory can hold names after `after` if it is a prefix of `after` or sorts later
            if after is None or full > after or after.startswith(full):
                yield from _list_local(root, full, after)
        elif (after is None or full > after) and entry.is_file(follow_symlinks=False):
            stat = entry.stat(follow_symlinks=False)
            yield FileEntry(full, stat.st_size, str(stat.st_mtime_ns))


def _list_s3(
    location: str, after: str | None, client: Any, name_prefix: str = ""
) -> Iterator[FileEntry]:
    bucket, prefix = split_s3(location)
    kwargs = {"Bucket": bucket, "Prefix": prefix + name_prefix}
    if after:
        kwargs["StartAfter"] = prefix + after
    with s3_errors("a listing", bucket, prefix):
        for page in client.get_paginator("list_objects_v2").paginate(**kwargs):
            for item in page.get("Contents", []):
                name = item["Key"][len(prefix) :]
                if not name or name.endswith("/") or _hidden(name):
                    continue  # a folder marker, or a hidden file as a local listing skips it
                if not _inside(name):
                    _log.warning(
                        "s3://%s/%s: skipped, its key has an empty, '.' or '..' part below %s, "
                        "so it cannot be named safely as a file of this source",
                        bucket, item["Key"], location,
                    )  # fmt: skip
                    continue
                yield FileEntry(name, item["Size"], item.get("ETag", "").strip('"'))


def _hidden(name: str) -> bool:
    return any(part.startswith(".") for part in name.split("/") if part not in ("", ".", ".."))


def _inside(name: str) -> bool:
    return not name.startswith("/") and all(part not in ("", ".", "..") for part in name.split("/"))


@contextlib.contextmanager
def local_copy(location: str, name: str, s3_client: Any = None) -> Iterator[str]:
    """A local path of file `name` under `location`: the file itself, or for S3 a temporary
    download deleted on exit.

    >>> import pathlib, tempfile
    >>> folder = tempfile.mkdtemp(); _ = (pathlib.Path(folder) / "a.xml").write_text("<r/>")
    >>> with local_copy(folder, "a.xml") as path:
    ...     open(path).read()
    '<r/>'
    """
    check_name(location, name)
    if not is_s3(location):
        path = os.path.join(os.path.abspath(location), *name.split("/"))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such file in source location {location}")
        yield path
        return
    bucket, prefix = split_s3(location)
    folder = tempfile.mkdtemp(prefix="ds-assets-source-")
    try:
        path = os.path.join(folder, os.path.basename(name))
        with s3_errors("a download", bucket, prefix + name):
            s3_client.download_file(bucket, prefix + name, path)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def url_of(location: str, name: str) -> str:
    """The path or `s3://` URL of file `name` under `location`.

    >>> url_of("s3://ml/shards", "a/000.tar")
    's3://ml/shards/a/000.tar'
    """
    check_name(location, name)
    if is_s3(location):
        bucket, prefix = split_s3(location)
        return f"s3://{bucket}/{prefix}{name}"
    return os.path.join(os.path.abspath(location), *name.split("/"))
