"""WebDataset shards (plain or compressed tar files, on local disk or S3) as `datasets` objects.

    >>> import os, tempfile, webdataset
    >>> shard = os.path.join(tempfile.mkdtemp(), "shard-000.tar")
    >>> with webdataset.TarWriter(shard) as sink:
    ...     _ = sink.write({"__key__": "sample001", "txt": "a cat", "cls": 3})
    >>> [(s["__key__"], s["txt"], s["cls"]) for s in parse_stream(shard, decode=True)]
    [('sample001', 'a cat', 3)]

What does the work: Python's `tarfile` in streaming mode (`"r|*"`: plain, gzip, bz2 or xz) reads
each shard front to back from a local file or an S3 `GetObject` body; nothing is extracted and no
member is ever written to disk. `datasets` features (Image, Audio, Video, Mesh, Json, ClassLabel,
Value) describe the columns, `datasets.table.cast_array_to_feature` casts declared nested ones,
and `ds_assets.formats.output.to_dataset` makes the `Dataset` / `IterableDataset`.

Ours, because no library does it safely: the member loop (path safety; truncated and corrupt
shards, which `tarfile`'s streaming mode reports as a normal end when it meets a missing or
damaged header) and the Arrow columns, built batch by batch.

Conventions shared with `webdataset` 1.0.2 (`tariterators.group_by_keys`) and `datasets`'
packaged `webdataset` builder:

- A member's key is its name up to the first dot of its basename, directories included
  (`train/0001.seg.png`: key `train/0001`, field `seg.png`); consecutive members with the same
  key make one sample; a field twice in one sample is an error; samples never span shards.
- Names without an extension and webdataset's metadata names (`__*__`) are skipped.
- Field names are lowercased (as `webdataset` does; `datasets` keeps their case).
- With `decode=True`, the field's last extension picks the feature from `datasets`' own lists
  (jpg, png, ... to Image; wav, flac, ... to Audio; mp4, ... to Video; glb, ply, stl to Mesh;
  txt/text/transcript to string; cls/cls2/index/inx/id to int64). Media are stored as their
  Arrow storage `{"bytes", "path": "<key>.<field>"}`, never decoded here (images are checked to
  open with Pillow, which reads their header; audio, video and meshes are not checked).

Where we differ, and why:

- `__key__` and `__url__` come first.
- `json`/`jsn` become the `Json` feature (the JSON text, checked to parse, read back as parsed
  values), not a struct inferred from the first samples: filling an inferred struct, pyarrow
  silently drops keys it did not see and truncates floats to ints. The check refuses what would
  not read back as parsed: NaN, infinities, integers beyond 64 bits and lone surrogates
  (floats may come back one unit in the last place off: see `ds_assets.formats.json_text`).
- Only decoders that cannot run code: no pickle, no torch; npy, msgpack and compressed members
  (`x.json.gz`) stay bytes.
- Features come from the first `INFERENCE_SAMPLES` samples (all fields seen, missing ones null);
  a later field none of them had is an error, as is a value that does not fit its feature.
- Unsafe members (absolute paths, `..`, links, devices, FIFOs, names that are not UTF-8) are
  skipped with an `UnsafeMemberWarning`; members over `max_member_bytes` are an error.
- A truncated or corrupt shard raises `CorruptShardError` naming the shard, the member and the
  last good key, also when the cut falls between two members (both libraries end silently there).
- Samples whose key reappears later in a shard (not adjacent) are two samples, as in both
  libraries: finding them would need memory for every key of a shard.
"""

from __future__ import annotations

import io
import json
import logging
import lzma
import os
import re
import tarfile
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
from braceexpand import braceexpand
from datasets import (
    Audio,
    ClassLabel,
    Dataset,
    Features,
    Image,
    IterableDataset,
    Json,
    Mesh,
    Value,
    Video,
)
from datasets.packaged_modules.webdataset.webdataset import (
    AUDIO_EXTENSIONS,
    IMAGE_EXTENSIONS,
    MESH_EXTENSIONS,
    VIDEO_EXTENSIONS,
)
from datasets.table import cast_array_to_feature

from ds_assets.formats import json_text
from ds_assets.formats.output import to_dataset
from ds_assets.storage.s3_errors import s3_errors

__all__ = [
    "CorruptShardError",
    "UnsafeMemberWarning",
    "WebDatasetError",
    "parse",
    "parse_stream",
]

logger = logging.getLogger(__name__)

KEY, URL = "__key__", "__url__"
INFERENCE_SAMPLES = 100
MAX_MEMBER_BYTES = 1 << 30
MAX_FIELDS = 1000
BATCH_ROWS = 1000
BATCH_BYTES = 16 << 20

# the same pattern as webdataset.tariterators.base_plus_ext (and datasets' copy of it)
_KEY_AND_FIELD = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")
# webdataset's skip_meta: members such as `__index__` or `__meta__/...`
_METADATA = re.compile(r"__[^/]*__($|/)")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_PARTS = re.compile(r"[/\\]")
_DRIVE = re.compile(r"[A-Za-z]:[/\\]")  # C:\x or C:/x; c:001.txt is a plain POSIX name

_TEXT_EXTENSIONS = {"txt", "text", "transcript"}
_INT_EXTENSIONS = {"cls", "cls2", "index", "inx", "id"}
_JSON_EXTENSIONS = {"json", "jsn"}
_MEDIA_STORAGE = pa.struct({"bytes": pa.binary(), "path": pa.string()})
# later lists win where they overlap (mpeg is an image and a video extension), as in datasets
_MEDIA_FEATURES = {
    **{extension: Image for extension in IMAGE_EXTENSIONS},
    **{extension: Audio for extension in AUDIO_EXTENSIONS},
    **{extension: Video for extension in VIDEO_EXTENSIONS},
    **{extension: Mesh for extension in MESH_EXTENSIONS},
}
_DATA_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError)
# what tarfile's parsing raises, beyond its own errors, on headers it cannot read (a gzip
# header cut short, a malformed sparse map, ...): a corrupt shard too
_PARSE_ERRORS = (ValueError, TypeError, IndexError, KeyError)
_VALUE_ERRORS = (
    pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError, RecursionError
)  # fmt: skip
# reads that find nothing in a row before tarfile is told the data is missing: its streaming
# mode skips a member by reading up to its declared size, and never stops at the end
_EMPTY_READS = 64

FeaturesLike = Features | Mapping[str, Any]
PathsOrUrls = str | os.PathLike | Iterable[str | os.PathLike]


class WebDatasetError(ValueError):
    """A shard does not hold what was expected; the message names the shard, sample and field."""


class CorruptShardError(WebDatasetError):
    """A shard is truncated or damaged; the message names the member and the last good key."""


class UnsafeMemberWarning(UserWarning):
    """A member that could escape a folder if extracted (or is no file) was skipped."""


def parse_stream(
    paths_or_urls: PathsOrUrls,
    *,
    decode: bool = False,
    s3_client: Any = None,
    features: FeaturesLike | None = None,
    max_member_bytes: int = MAX_MEMBER_BYTES,
) -> IterableDataset:
    """The samples of WebDataset shards as an `IterableDataset` that reads them anew on each pass.

    `paths_or_urls`: one shard or several, each a local path or `s3://bucket/key` (read with
    `s3_client`, default `boto3.client("s3")`); strings may use braces (`shard-{000..009}.tar`).
    Every sample has `__key__`, `__url__` and one column per field; without `features` the fields
    are those of the first `INFERENCE_SAMPLES` samples, as bytes, or with `decode=True` as the
    feature of their extension. With `features`, each declared field is converted to its
    feature (bytes, text, numbers, ClassLabel ids or names, JSON for nested features, media
    storage) and other members are skipped unread.

    >>> import os, tempfile, webdataset
    >>> shard = os.path.join(tempfile.mkdtemp(), "shard-000.tar")
    >>> with webdataset.TarWriter(shard) as sink:
    ...     _ = sink.write({"__key__": "a", "txt": "cat", "json": {"w": 2}})
    ...     _ = sink.write({"__key__": "b", "txt": "dog"})
    >>> stream = parse_stream(shard, decode=True)
    >>> stream.features["txt"], stream.features["json"]
    (Value('string'), Json(decode=True))
    >>> [(s["__key__"], s["txt"], s["json"]) for s in stream]
    [('a', 'cat', {'w': 2}), ('b', 'dog', None)]
    """
    kwargs = _reader_kwargs(paths_or_urls, decode, s3_client, features, max_member_bytes)
    return to_dataset(
        _tables, kwargs, kwargs["features"], streaming=True, shard_by="urls",
        description=_describe(kwargs["urls"]),
    )  # fmt: skip


def parse(
    paths_or_urls: PathsOrUrls,
    *,
    decode: bool = False,
    s3_client: Any = None,
    features: FeaturesLike | None = None,
    max_member_bytes: int = MAX_MEMBER_BYTES,
) -> Dataset:
    """The samples of WebDataset shards as a `Dataset`, written once to an Arrow file in the
    cache and memory-mapped. Same arguments and columns as `parse_stream`.

    >>> import os, tempfile, webdataset
    >>> shard = os.path.join(tempfile.mkdtemp(), "shard-000.tar")
    >>> with webdataset.TarWriter(shard) as sink:
    ...     _ = sink.write({"__key__": "a", "jpg": b"not decoded here", "cls": 1})
    >>> dataset = parse(shard)
    >>> dataset.features["jpg"], dataset[0]["jpg"], dataset[0]["cls"]
    (Value('binary'), b'not decoded here', b'1')
    """
    kwargs = _reader_kwargs(paths_or_urls, decode, s3_client, features, max_member_bytes)
    return to_dataset(_tables, kwargs, kwargs["features"], description=_describe(kwargs["urls"]))


def _reader_kwargs(
    paths_or_urls: PathsOrUrls,
    decode: bool,
    s3_client: Any,
    features: FeaturesLike | None,
    max_member_bytes: int,
) -> dict[str, Any]:
    """The arguments of `_tables`; reads the first samples when features must be inferred."""
    urls = _shard_urls(paths_or_urls)
    client = _s3_client_for(urls, s3_client)
    if features is None:
        resolved = _infer_features(urls, decode, client, max_member_bytes)
    else:
        resolved = _with_key_and_url(Features(features))
    return {
        "urls": urls,
        "features": resolved,
        "skip_undeclared": features is not None,
        "s3_client": client,
        "max_member_bytes": max_member_bytes,
    }


# ---------------------------------------------------------------------------------------------
# shards and their members


def _shard_urls(paths_or_urls: PathsOrUrls) -> list[str]:
    if isinstance(paths_or_urls, (str, os.PathLike)):
        paths_or_urls = [paths_or_urls]
    urls = []
    for item in paths_or_urls:
        # braces are webdataset's shard notation; a Path object is taken literally
        urls.extend(braceexpand(item) if isinstance(item, str) else [os.fspath(item)])
    if not urls:
        raise ValueError("parse/parse_stream: expected at least one shard path or s3:// URL")
    for url in urls:
        if url.startswith("s3://"):
            _split_s3_url(url)
        elif _SCHEME.match(url):
            raise ValueError(f"{url}: expected a local path or an s3://bucket/key URL")
    return urls


def _split_s3_url(url: str) -> tuple[str, str]:
    bucket, _, key = url[len("s3://") :].partition("/")
    if not bucket or not key or key.endswith("/"):
        raise ValueError(f"{url}: expected s3://bucket/key naming one shard")
    return bucket, key


def _s3_client_for(urls: list[str], s3_client: Any) -> Any:
    if s3_client is None and any(url.startswith("s3://") for url in urls):
        import boto3

        return boto3.client("s3")
    return s3_client


def _describe(urls: list[str]) -> str:
    more = f" and {len(urls) - 1} more" if len(urls) > 1 else ""
    return f"WebDataset shards: {urls[0]}{more}"


class _S3Body(io.RawIOBase):
    """A botocore `StreamingBody` as a raw stream, so that `io.BufferedReader` can buffer it."""

    def __init__(self, body: Any) -> None:
        self.body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


@contextmanager
def _open_shard(url: str, s3_client: Any) -> Iterator[BinaryIO]:
    if not url.startswith("s3://"):
        with open(url, "rb") as file:
            yield file
        return
    bucket, key = _split_s3_url(url)
    with s3_errors("a read", bucket, key):  # errors that name the shard, not botocore's
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"]
    try:
        yield io.BufferedReader(_S3Body(body), 1 << 20)
    finally:
        body.close()


class _EndOfData:
    """A shard's stream that raises `EOFError` once reads keep finding nothing: a member whose
    header declares more bytes than the shard holds (10**13, say) would otherwise have tarfile
    read nothing, 10 KiB at a time, for hours."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.empty = raw, 0
        self.name = getattr(raw, "name", None)

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        if data or size == 0:
            self.empty = 0
        else:
            self.empty += 1
            if self.empty > _EMPTY_READS:
                raise EOFError("the shard ends inside a member (its declared size runs past it)")
        return data


class _CheckedTarInfo(tarfile.TarInfo):
    """Remembers why `tarfile` stopped: its streaming mode ends quietly at a missing, truncated or
    damaged header, and only a zero block is a real end of archive."""

    @classmethod
    def fromtarfile(cls, tar: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(tar)
        except tarfile.HeaderError as error:
            tar.header_error = error  # type: ignore[attr-defined]
            raise


def _tar_members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while (info := tar.next()) is not None:
        tar.members.clear()  # streaming mode keeps every member it has seen otherwise
        yield info
    error = getattr(tar, "header_error", None)
    if isinstance(error, tarfile.EmptyHeaderError):
        raise tarfile.ReadError("the shard ends without an end-of-archive marker")
    if isinstance(error, tarfile.EOFHeaderError) and tar.fileobj is not None:
        # the end of an archive is two zero blocks; one zero block followed by data is a
        # damaged header (GNU tar: "A lone zero block"), and ending there would lose the rest
        following = tar.fileobj.read(tarfile.BLOCKSIZE)
        if following.strip(b"\0"):
            raise tarfile.ReadError("a zero block amid members (a damaged member header)")
    if error is not None and not isinstance(error, tarfile.EOFHeaderError):
        raise tarfile.ReadError(f"damaged member header ({error})")


def _unsafe(info: tarfile.TarInfo) -> str | None:
    """Why a member must be skipped, or None if it is a regular file with a safe name."""
    if info.issym():
        return f"symbolic link to {info.linkname!r}"
    if info.islnk():
        return f"hard link to {info.linkname!r}"
    if info.ischr() or info.isblk():
        return "device"
    if info.isfifo():
        return "FIFO"
    if not info.isreg():
        return "not a regular file"
    name = info.name
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "absolute path"
    if ".." in _PARTS.split(name):
        return "'..' in its path"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "name is not valid UTF-8"
    return None


def _key_and_field(url: str, info: tarfile.TarInfo) -> tuple[str, str] | None:
    """(key, lowercased field) of a member, or None for members that are no part of a sample."""
    if info.isdir():
        return None
    reason = _unsafe(info)
    if reason is not None:
        warnings.warn(
            f"{url}: skipped member {info.name!r}: {reason}", UnsafeMemberWarning, stacklevel=2
        )
        return None
    if _METADATA.match(info.name):
        return None
    match = _KEY_AND_FIELD.match(info.name)
    if match is None or not match.group(2):
        logger.debug("%s: skipped member %r: no key.extension name", url, info.name)
        return None
    key, field = match.group(1), match.group(2).lower()
    if field in (KEY, URL):
        raise WebDatasetError(f"{url}: member {info.name!r}: field name {field!r} is reserved")
    return key, field


def _read_member(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    stream = tar.fileobj
    if info.sparse is None and stream is not None and stream.tell() == info.offset_data:
        # straight from the stream: a file object per member costs more than the read
        data = stream.read(info.size)
        if len(data) != info.size:
            raise tarfile.ReadError("unexpected end of data")
        return data
    member = tar.extractfile(info)
    assert member is not None  # a regular file
    return member.read()


@dataclass
class _Position:
    """Where reading a shard got to, for error messages."""

    member: str | None = None
    last_good: str | None = None


def _shard_samples(
    url: str,
    s3_client: Any,
    *,
    wanted: set[str] | None = None,
    read: bool = True,
    max_member_bytes: int = MAX_MEMBER_BYTES,
) -> Iterator[tuple[str, dict[str, bytes | None]]]:
    """(key, {field: bytes}) of each sample of one shard, in order; with `read=False` the
    fields map to None and no data is kept."""
    position = _Position()
    with _open_shard(url, s3_client) as raw:
        try:
            with tarfile.open(
                fileobj=_EndOfData(raw), mode="r|*", tarinfo=_CheckedTarInfo, encoding="utf-8"
            ) as tar:
                members = _Members(url, tar, wanted, read, max_member_bytes)
                yield from _grouped(url, members, position)
        except WebDatasetError:
            raise
        except _DATA_ERRORS + _PARSE_ERRORS as error:
            raise CorruptShardError(_corrupt_message(url, position, error)) from error
        except Exception as error:
            if hasattr(error, "add_note"):  # Python 3.11+
                error.add_note(f"while reading {url}: {_where(position)}")
            raise


@dataclass
class _Members:
    """The members of one open shard and how to read them."""

    url: str
    tar: tarfile.TarFile
    wanted: set[str] | None
    read: bool
    max_member_bytes: int

    def add(self, info: tarfile.TarInfo, key: str, field: str, fields: dict) -> None:
        """Put the member's data (or None) into its sample's `fields`, or skip it if unwanted."""
        if field in fields:
            raise WebDatasetError(
                f"{self.url}: sample {key!r} has field {field!r} twice (member {info.name!r})"
            )
        if self.wanted is not None and field not in self.wanted:
            return
        if info.size > self.max_member_bytes:
            raise WebDatasetError(
                f"{self.url}: member {info.name!r} has {info.size} bytes, more than "
                f"max_member_bytes={self.max_member_bytes}; pass a larger limit to read it"
            )
        fields[field] = _read_member(self.tar, info) if self.read else None


def _grouped(
    url: str, members: _Members, position: _Position
) -> Iterator[tuple[str, dict[str, bytes | None]]]:
    """Consecutive members with one key as one sample."""
    key: str | None = None
    fields: dict[str, bytes | None] = {}
    for info in _tar_members(members.tar):
        position.member = info.name
        located = _key_and_field(url, info)
        if located is None:
            continue
        if located[0] != key:
            if key is not None:
                position.last_good = key
                yield key, fields
            key, fields = located[0], {}
        members.add(info, key, located[1], fields)
    if key is not None:
        yield key, fields


def _where(position: _Position) -> str:
    member = f"in or after member {position.member!r}" if position.member else "at its start"
    good = position.last_good
    return f"{member}; " + (f"last good key: {good!r}" if good else "no complete sample before")


def _corrupt_message(url: str, position: _Position, error: Exception) -> str:
    return (
        f"{url}: truncated or corrupt shard ({type(error).__name__}: {error}) {_where(position)}; "
        "expected a tar archive (plain, gzip, bz2 or xz)"
    )


# ---------------------------------------------------------------------------------------------
# features


def _infer_features(
    urls: list[str], decode: bool, s3_client: Any, max_member_bytes: int
) -> Features:
    """The fields of the first `INFERENCE_SAMPLES` samples, in order of first appearance."""
    fields: dict[str, None] = {}
    seen = 0
    for url in urls:
        for _, sample in _shard_samples(
            url, s3_client, read=False, max_member_bytes=max_member_bytes
        ):
            fields.update(dict.fromkeys(sample))
            if len(fields) > MAX_FIELDS:
                raise WebDatasetError(
                    f"{url}: more than {MAX_FIELDS} different fields in the first samples; "
                    "pass features= to pick the ones to read"
                )
            seen += 1
            if seen >= INFERENCE_SAMPLES:
                break
        if seen >= INFERENCE_SAMPLES:
            break
    inferred = {field: _feature_of(field) if decode else Value("binary") for field in fields}
    return _with_key_and_url(Features(inferred))


def _feature_of(field: str) -> Any:
    extension = field.rsplit(".", 1)[-1]
    if extension in _TEXT_EXTENSIONS:
        return Value("string")
    if extension in _INT_EXTENSIONS:
        return Value("int64")
    if extension in _JSON_EXTENSIONS:
        return Json()
    if extension in _MEDIA_FEATURES:
        return _MEDIA_FEATURES[extension]()
    return Value("binary")


def _with_key_and_url(features: Features) -> Features:
    fields = {name: feature for name, feature in features.items() if name not in (KEY, URL)}
    return Features({KEY: Value("string"), URL: Value("string"), **fields})


def _is_media(feature: Any) -> bool:
    return getattr(feature, "pa_type", None) == _MEDIA_STORAGE


def _converter(feature: Any) -> Callable[[bytes], Any]:
    """bytes of a member -> the Python value its column holds."""
    if isinstance(feature, Image):
        return _image_bytes
    if _is_media(feature):
        return _same
    if isinstance(feature, Json):
        return _json_text
    if isinstance(feature, ClassLabel):
        return lambda data: _class_id(feature, data)
    if isinstance(feature, Value):
        if feature.dtype in ("binary", "large_binary"):
            return _same
        if feature.dtype in ("string", "large_string"):
            return _utf8
        if feature.dtype.startswith(("int", "uint")):
            return int
        if feature.dtype.startswith("float"):
            return float
    return json.loads


def _same(data: bytes) -> bytes:
    return data


def _image_bytes(data: bytes) -> bytes:
    """The bytes, if Pillow recognizes an image in them: `datasets` decodes an image only when
    it is read, where a bad one would fail naming no shard or sample. Opening reads the header
    alone (about 25 µs)."""
    import PIL.Image

    try:
        PIL.Image.open(io.BytesIO(data))
    except Exception as error:  # Pillow's plugins raise many types: bombs, unknown formats...
        raise ValueError(f"not an image Pillow can open: {type(error).__name__}: {error}") from None
    return data


def _utf8(data: bytes) -> str:
    return data.decode("utf-8")


def _json_text(data: bytes) -> str:
    return json_text.checked(data.decode("utf-8"))


def _class_id(feature: ClassLabel, data: bytes) -> int:
    """A label's name (first, as `datasets` reads it: names may be digits) or class id."""
    text = data.decode("utf-8").strip()
    if text in feature.names or not text.lstrip("-").isdigit():
        return feature.str2int(text)
    class_id = int(text)
    if not -1 <= class_id < feature.num_classes:
        raise ValueError(f"class id {class_id} is not in -1..{feature.num_classes - 1}")
    return class_id


def _expected(feature: Any) -> str:
    if isinstance(feature, Json):
        return "UTF-8 JSON (finite numbers, integers within 64 bits)"
    if isinstance(feature, Image):
        return "an image"
    if isinstance(feature, ClassLabel):
        return f"a class id or one of the names {feature.names}"
    if isinstance(feature, Value) and feature.dtype.startswith(("int", "uint")):
        return "an integer"
    if isinstance(feature, Value) and feature.dtype.startswith("float"):
        return "a number"
    if isinstance(feature, Value) and feature.dtype in ("string", "large_string"):
        return "UTF-8 text"
    return f"JSON that fits {feature}"


# ---------------------------------------------------------------------------------------------
# Arrow batches


class _Batch:
    """Column lists of one batch; each value is converted as its sample is added, so an error
    names the sample."""

    def __init__(self, features: Features) -> None:
        self.features = features
        self.fields = [name for name in features if name not in (KEY, URL)]
        self.converters = {name: _converter(features[name]) for name in self.fields}
        self.clear()

    def clear(self) -> None:
        self.keys: list[str] = []
        self.urls: list[str] = []
        self.values: dict[str, list[Any]] = {name: [] for name in self.fields}
        self.nbytes = 0

    def add(self, url: str, key: str, sample: dict[str, bytes | None]) -> None:
        for name in sample:
            if name not in self.values:
                raise WebDatasetError(
                    f"{url}: sample {key!r} has field {name!r}, which none of the first "
                    f"{INFERENCE_SAMPLES} samples had (fields: {self.fields}); pass features= "
                    "declaring every field to read (undeclared ones are then skipped)"
                )
        for name in self.fields:
            data = sample.get(name)
            if data is None:
                self.values[name].append(None)
                continue
            self.nbytes += len(data)
            try:
                self.values[name].append(self.converters[name](data))
            except _VALUE_ERRORS as error:
                raise WebDatasetError(
                    f"{url}: sample {key!r}, field {name!r}: expected "
                    f"{_expected(self.features[name])}, got {_preview(data)} ({error})"
                ) from error
        self.keys.append(key)
        self.urls.append(url)

    def __len__(self) -> int:
        return len(self.keys)

    def table(self) -> pa.Table:
        columns = {KEY: pa.array(self.keys, pa.string()), URL: pa.array(self.urls, pa.string())}
        for name in self.fields:
            columns[name] = self._column(name)
        return pa.table(columns)

    def _column(self, name: str) -> pa.Array:
        values = self.values[name]
        try:
            return self._array(name, values, self.keys)
        except _VALUE_ERRORS as error:
            for row, value in enumerate(values):
                try:
                    self._array(name, [value], self.keys[row : row + 1])
                except _VALUE_ERRORS as row_error:
                    raise WebDatasetError(
                        f"{self.urls[row]}: sample {self.keys[row]!r}, field {name!r}: "
                        f"{_preview(value)} does not fit {self.features[name]} ({row_error})"
                    ) from row_error
            raise WebDatasetError(
                f"{self.urls[0]}: field {name!r} does not fit {self.features[name]} ({error})"
            ) from error

    def _array(self, name: str, values: list[Any], keys: list[str]) -> pa.Array:
        feature = self.features[name]
        if _is_media(feature):
            paths = [
                None if v is None else f"{k}.{name}" for v, k in zip(values, keys, strict=True)
            ]
            return pa.StructArray.from_arrays(
                [_binary_array(values), pa.array(paths, pa.string())],
                fields=list(_MEDIA_STORAGE),
                mask=pa.array([value is None for value in values]),
            )
        if isinstance(feature, Json):
            return pa.array(values, pa.json_())
        if isinstance(feature, ClassLabel):
            return pa.array(values, pa.int64()).cast(feature.pa_type)
        if isinstance(feature, Value) and feature.dtype == "binary":
            return _binary_array(values)
        if isinstance(feature, Value) and feature.dtype != "null":
            return pa.array(values, feature.pa_type)
        return cast_array_to_feature(pa.array(values), feature)


def _binary_array(values: list[bytes | None]) -> pa.Array:
    """A binary array over one joined buffer: `pa.array` grows its buffer by doubling, which
    holds up to three times the batch's bytes at once."""
    lengths = np.fromiter((0 if v is None else len(v) for v in values), np.int64, len(values))
    offsets = np.zeros(len(values) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] >= 2**31:
        return pa.array(values, pa.binary())  # pyarrow's own error: over 2 GiB in one array
    present = [value is not None for value in values]
    validity = None if all(present) else pa.array(present, pa.bool_()).buffers()[1]
    data = pa.py_buffer(b"".join(value for value in values if value is not None))
    buffers = [validity, pa.py_buffer(offsets.astype(np.int32)), data]
    return pa.Array.from_buffers(pa.binary(), len(values), buffers)


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _tables(
    urls: list[str],
    features: Features,
    skip_undeclared: bool,
    s3_client: Any,
    max_member_bytes: int,
) -> Iterator[pa.Table]:
    """Arrow tables of at most `BATCH_ROWS` samples or about `BATCH_BYTES` of member data."""
    batch = _Batch(features)
    wanted = set(batch.fields) if skip_undeclared else None
    for url in urls:
        for key, sample in _shard_samples(
            url, s3_client, wanted=wanted, max_member_bytes=max_member_bytes
        ):
            batch.add(url, key, sample)
            if len(batch) >= BATCH_ROWS or batch.nbytes >= BATCH_BYTES:
                table = batch.table()
                batch.clear()  # before the yield: the consumer may hold the table for a while
                yield table
    if len(batch):
        yield batch.table()
