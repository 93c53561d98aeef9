"""The WebDataset reader on shards that fuzzing found mishandled: each is read as the module
docstring says, or fails with a `CorruptShardError`/`WebDatasetError` naming the shard (and
the sample and field), never a bare exception, a hang, or a silently shorter dataset."""

import gzip
import io
import tarfile
import zlib

import pytest
from datasets import ClassLabel, Features

from ds_assets.formats.webdataset import (
    CorruptShardError,
    UnsafeMemberWarning,
    WebDatasetError,
    parse,
    parse_stream,
)
from tests.test_formats_webdataset import jpg_bytes, png_bytes, write_members


def tar_bytes(members, pax=None) -> bytes:
    """A pax tar of (name, bytes), with extra pax headers per member name."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.pax_headers = (pax or {}).get(name, {})
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def shard(tmp_path, data: bytes, name: str = "shard.tar") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize(
    "data",
    [
        gzip.compress(tar_bytes([("a.txt", b"x")]))[:3],  # a gzip header cut short
        tar_bytes([("a.bin", b"x" * 10)], pax={"a.bin": {"GNU.sparse.map": "a,b"}}),
    ],
    ids=["gzip-header-cut", "malformed-sparse-map"],
)
def test_headers_tarfile_cannot_parse_are_a_corrupt_shard(tmp_path, data):
    url = shard(tmp_path, data)
    with pytest.raises(CorruptShardError, match=rf"^{url}: truncated or corrupt shard"):
        list(parse_stream(url))


@pytest.mark.timeout(60)
def test_a_skipped_member_declaring_more_bytes_than_the_shard_holds_fails_at_once(tmp_path):
    # the member is skipped (no key.extension name), so nothing reads it: tarfile would skip
    # its 10 TB by reading nothing, 10 KiB at a time, for hours
    data = tar_bytes([("a.txt", b"x"), ("README", b"y")], pax={"README": {"size": str(10**13)}})
    url = shard(tmp_path, data)
    with pytest.raises(CorruptShardError, match=r"ends inside a member.*'README'"):
        list(parse_stream(url))


def test_a_zero_block_amid_members_is_a_corrupt_shard_not_its_end(tmp_path):
    data = bytearray(tar_bytes([("k1.txt", b"1"), ("k2.txt", b"2"), ("k3.txt", b"3")]))
    header = data.index(b"k2.txt") // 512 * 512
    data[header : header + 512] = bytes(512)  # k2's header zeroed
    url = shard(tmp_path, bytes(data))
    with pytest.raises(CorruptShardError, match=r"a zero block amid members.*'k1.txt'"):
        parse(url)
    whole = shard(tmp_path, tar_bytes([("k1.txt", b"1"), ("k2.txt", b"2")]), "whole.tar")
    assert parse(whole)["__key__"] == ["k1", "k2"]


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "maximum recursion depth"),
        (b'["\\ud800"]', "surrogates not allowed"),
        (b"[1, NaN]", "NaN is not JSON"),
        (b'{"n": 18446744073709551616}', "does not fit 64 bits"),
        (b"[-9223372036854775809]", "does not fit 64 bits"),
        (b"[1e400]", "overflows a float64"),
    ],
)
def test_json_that_would_not_read_back_as_parsed_is_refused_naming_the_sample(
    tmp_path, document, problem
):
    url = write_members(tmp_path / "json.tar", [("good.json", b'{"n": 1}'), ("bad.json", document)])
    with pytest.raises(WebDatasetError, match=rf"sample 'bad', field 'json': .*{problem}"):
        parse(url, decode=True)


def test_json_at_the_limits_reads_back_as_parsed(tmp_path):
    document = b'{"big": 18446744073709551615, "small": -9223372036854775808, "x": 1.5e308}'
    url = write_members(tmp_path / "json.tar", [("a.json", document)])
    assert parse(url, decode=True)["json"] == [{"big": 2**64 - 1, "small": -(2**63), "x": 1.5e308}]


def test_bytes_that_are_no_image_are_refused_naming_the_sample(tmp_path):
    members = [("good.jpg", jpg_bytes()), ("bad.jpg", b"not an image"), ("bad.txt", b"x")]
    url = write_members(tmp_path / "images.tar", members)
    with pytest.raises(WebDatasetError, match=r"sample 'bad', field 'jpg': expected an image"):
        parse(url, decode=True)
    assert parse(url)["jpg"][1] == b"not an image"  # undecoded, bytes are bytes


def test_a_class_id_outside_the_declared_labels_is_refused(tmp_path):
    members = [("a.cls", b"1"), ("b.cls", b"dog"), ("c.cls", b"5")]
    url = write_members(tmp_path / "labels.tar", members)
    features = Features({"cls": ClassLabel(names=["cat", "dog"])})
    with pytest.raises(WebDatasetError, match=r"sample 'c', field 'cls': .*not in -1\.\.1"):
        parse(url, features=features)
    valid = write_members(tmp_path / "valid.tar", [("a.cls", b"1"), ("b.cls", b"cat")])
    assert parse(valid, features=features)["cls"] == [1, 0]


def test_a_posix_name_with_a_colon_is_a_sample_and_a_drive_path_is_skipped(tmp_path):
    members = [("c:001.txt", b"kept"), ("C:/windows/evil.txt", b"skipped")]
    url = write_members(tmp_path / "colons.tar", members)
    with pytest.warns(UnsafeMemberWarning, match=r"'C:/windows/evil.txt': absolute path"):
        rows = parse(url).to_dict()
    assert rows["__key__"] == ["c:001"] and rows["txt"] == [b"kept"]


def test_json_numbers_datasets_cannot_read_back_are_refused(tmp_path):
    members = [("a.json", b'{"x": 1.5}'), ("b.json", b'{"x": 100000000000000000000.0}')]
    url = write_members(tmp_path / "json.tar", members)
    with pytest.raises(WebDatasetError, match=r"sample 'b', field 'json': .*Value is too big"):
        parse(url, decode=True)


def test_image_headers_pillow_refuses_in_any_way_name_the_sample(tmp_path):
    png = bytearray(png_bytes())  # a real PNG, then its header made to claim 100000x100000
    png[16:24] = (100_000).to_bytes(4, "big") * 2
    png[29:33] = zlib.crc32(bytes(png[12:29])).to_bytes(4, "big")
    members = [("good.jpg", jpg_bytes()), ("bad.png", bytes(png))]
    url = write_members(tmp_path / "bomb.tar", members)
    with pytest.raises(WebDatasetError, match=r"sample 'bad', field 'png': .*DecompressionBomb"):
        parse(url, decode=True)


def test_class_names_that_are_digits_are_read_as_names(tmp_path):
    members = [("a.cls", b"1"), ("b.cls", b"3"), ("c.cls", b"4")]
    url = write_members(tmp_path / "digits.tar", members)
    features = Features({"cls": ClassLabel(names=["1", "2", "3"])})
    with pytest.raises(WebDatasetError, match=r"sample 'c', field 'cls': .*class id 4 is not in"):
        parse(url, features=features)
    valid = write_members(tmp_path / "valid.tar", members[:2])
    assert parse(valid, features=features)["cls"] == [0, 2]  # the names "1" and "3"
