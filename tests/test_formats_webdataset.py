"""ds_assets.formats.webdataset against the `webdataset` library, `datasets`' webdataset builder,
real tar/gzip shards (whole, cut, damaged, hostile) and a real S3 server."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import wave
from pathlib import Path

import pyarrow as pa
import pytest
import webdataset as wds
from datasets import (
    Audio,
    ClassLabel,
    Dataset,
    Features,
    Image,
    IterableDataset,
    Json,
    Value,
    load_dataset,
)
from PIL import Image as PILImage

from ds_assets.formats import webdataset as reader
from ds_assets.formats.webdataset import (
    CorruptShardError,
    UnsafeMemberWarning,
    WebDatasetError,
    parse,
    parse_stream,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------------------------
# shards made for the tests


def png_bytes(color: str = "red", size: tuple[int, int] = (6, 4)) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def jpg_bytes(color: str = "blue") -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (8, 8), color).save(buffer, "JPEG")
    return buffer.getvalue()


def wav_bytes(frames: int = 160) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(16000)
        sound.writeframes(b"\x00\x01" * frames)
    return buffer.getvalue()


def write_samples(path, samples) -> str:
    """A shard written by the webdataset library's own TarWriter."""
    with wds.TarWriter(str(path)) as sink:
        for sample in samples:
            sink.write(sample)
    return str(path)


def write_members(path, members, mode: str = "w") -> str:
    """A tar of (name, bytes) pairs or ready TarInfo objects (links, devices...)."""
    with tarfile.open(str(path), mode) as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
                continue
            name, data = member
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def captioned(count: int, start: int = 0, prefix: str = "sample") -> list[dict]:
    return [
        {
            "__key__": f"{prefix}{number:03d}",
            "jpg": jpg_bytes(),
            "txt": f"caption {number}",
            "cls": number % 3,
            "json": {"id": number, "tags": ["a", "b"][: number % 3]},
        }
        for number in range(start, start + count)
    ]


def library_samples(urls) -> list[dict]:
    """What webdataset 1.0.2 itself yields, without its extra `__local_path__`."""
    samples = wds.WebDataset(urls, shardshuffle=False)
    return [{k: v for k, v in s.items() if k != "__local_path__"} for s in samples]


def without_nulls(row: dict) -> dict:
    return {name: value for name, value in row.items() if value is not None}


# ---------------------------------------------------------------------------------------------
# grouping and features


def test_samples_as_bytes_equal_the_webdataset_librarys(tmp_path):
    urls = [
        write_samples(tmp_path / "shard-0.tar", captioned(7)),
        write_samples(tmp_path / "shard-1.tar", captioned(5, start=7)),
    ]
    stream = parse_stream(urls)
    expected = library_samples(urls)
    assert [without_nulls(row) for row in stream] == expected
    assert list(stream.features) == ["__key__", "__url__", "cls", "jpg", "json", "txt"]
    assert all(feature == Value("binary") for feature in list(stream.features.values())[2:])
    materialized = parse(urls)
    assert isinstance(materialized, Dataset) and isinstance(stream, IterableDataset)
    assert materialized.features == stream.features
    assert [without_nulls(row) for row in materialized] == expected


def test_keys_follow_the_first_dot_of_the_basename_as_in_both_libraries(tmp_path):
    members = [
        ("train.v1/0001.seg.png", b"mask"),  # dots in directories do not end the key
        ("train.v1/0001.JPG", b"photo"),  # extensions are lowercased
        ("train.v1/0002.txt", b"two"),
        ("README", b"no extension: skipped"),
        ("__index__", b"webdataset metadata: skipped"),
        ("./0003.txt", b"three"),
    ]
    url = write_members(tmp_path / "names.tar", members)
    rows = [without_nulls(row) for row in parse(url)]
    assert rows == library_samples([url])
    assert rows == [
        {"__key__": "train.v1/0001", "__url__": url, "seg.png": b"mask", "jpg": b"photo"},
        {"__key__": "train.v1/0002", "__url__": url, "txt": b"two"},
        {"__key__": "./0003", "__url__": url, "txt": b"three"},
    ]


def test_decoded_values_and_features_equal_the_datasets_builders(tmp_path):
    samples = [
        {
            "__key__": f"s{number}",
            "jpg": jpg_bytes(),
            "png": png_bytes(),
            "txt": f"text {number}",
            "cls": number,
            "json": {"label": number, "name": f"n{number}"},
            "bin": b"raw bytes stay bytes",
        }
        for number in range(6)
    ]
    url = write_samples(tmp_path / "shard.tar", samples)
    ours = parse(url, decode=True)
    theirs = load_dataset(
        "webdataset", data_files={"train": [url]}, split="train", cache_dir=str(tmp_path / "hf")
    )
    for name in ("jpg", "png"):
        assert ours.features[name] == theirs.features[name] == Image()
    for name in ("txt", "cls"):
        assert ours.features[name] == theirs.features[name]
    assert ours.features["json"] == Json()  # lossless; datasets infers a struct from 5 samples
    assert ours.features["bin"] == Value("binary") == theirs.features["bin"]
    media = ["jpg", "png"]
    ours_rows = ours.cast(Features({**ours.features, **{m: Image(decode=False) for m in media}}))
    theirs_rows = theirs.cast(
        Features({**theirs.features, **{m: Image(decode=False) for m in media}})
    )
    for mine, expected in zip(ours_rows, theirs_rows, strict=True):
        assert mine["txt"] == expected["txt"] and mine["cls"] == expected["cls"]
        assert mine["json"] == expected["json"]
        for name in media:
            assert mine[name] == expected[name]  # same bytes, same "<key>.<field>" path
    assert ours[2]["jpg"].size == (8, 8) and ours[2]["png"].size == (6, 4)  # Pillow decodes


def test_audio_is_stored_as_arrow_storage_and_its_bytes_round_trip(tmp_path):
    # datasets' own builder cannot write these samples: Audio.encode_example needs torchcodec
    sound = wav_bytes(400)
    url = write_samples(
        tmp_path / "audio.tar", [{"__key__": "clip", "flac": b"fLaC", "wav": sound}]
    )
    for dataset in (parse(url, decode=True), parse_stream(url, decode=True)):
        assert dataset.features["wav"] == Audio() and dataset.features["flac"] == Audio()
    column = parse(url, decode=True).with_format("arrow")[:]["wav"]
    assert column.type == pa.struct({"bytes": pa.binary(), "path": pa.string()})
    assert column.to_pylist() == [{"bytes": sound, "path": "clip.wav"}]
    undecoded = parse_stream(url, decode=True).decode(False)
    assert next(iter(undecoded))["wav"] == {"bytes": sound, "path": "clip.wav"}
    with wave.open(io.BytesIO(column[0]["bytes"].as_py())) as read_back:
        assert read_back.getnframes() == 400


def test_a_field_missing_from_some_samples_is_null(tmp_path):
    samples = captioned(4)
    del samples[1]["txt"], samples[2]["jpg"]
    url = write_samples(tmp_path / "gaps.tar", samples)
    dataset = parse(url, decode=True)
    assert dataset["txt"] == ["caption 0", None, "caption 2", "caption 3"]
    assert [image is None for image in dataset["jpg"]] == [False, False, True, False]
    assert dataset.features["txt"] == Value("string")


def test_a_field_none_of_the_first_samples_had_is_an_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "INFERENCE_SAMPLES", 3)
    samples = [{"__key__": f"s{n}", "txt": "x"} for n in range(5)]
    samples[4]["cls"] = 1
    url = write_samples(tmp_path / "late.tar", samples)
    with pytest.raises(WebDatasetError) as raised:
        parse(url)
    message = str(raised.value)
    assert url in message and "'s4'" in message and "'cls'" in message and "features=" in message
    # declared features read it
    assert parse(url, features={"txt": Value("string"), "cls": Value("int64")})["cls"][4] == 1


def test_declared_features_convert_each_field_and_skip_the_others(tmp_path):
    samples = [
        {"__key__": "a", "txt": "x", "cls": "dog", "json": {"w": 1}, "jpg": jpg_bytes()},
        {"__key__": "b", "txt": "y", "cls": "0", "json": {"w": 2}, "jpg": jpg_bytes()},
    ]
    url = write_samples(tmp_path / "declared.tar", samples)
    features = {
        "txt": Value("string"),
        "cls": ClassLabel(names=["cat", "dog"]),
        "json": {"w": Value("int32")},
        "absent": Value("binary"),
    }
    dataset = parse(url, features=features)
    assert list(dataset.features) == ["__key__", "__url__", "txt", "cls", "json", "absent"]
    assert dataset.features["cls"] == ClassLabel(names=["cat", "dog"])
    assert dataset.to_dict() == {
        "__key__": ["a", "b"],
        "__url__": [url, url],
        "txt": ["x", "y"],
        "cls": [1, 0],
        "json": [{"w": 1}, {"w": 2}],
        "absent": [None, None],
    }
    assert list(parse_stream(url, features=features)) == list(dataset)


@pytest.mark.parametrize(
    ("field", "data", "expected"),
    [
        ("cls", b"not a number", "an integer"),
        ("txt", b"\xff\xfe bad utf-8", "UTF-8 text"),
        ("json", b"{broken", "UTF-8 JSON"),
    ],
)
def test_a_value_that_cannot_be_decoded_names_shard_key_and_field(tmp_path, field, data, expected):
    url = write_members(tmp_path / "bad.tar", [("good.txt", b"ok"), (f"bad.{field}", data)])
    with pytest.raises(WebDatasetError) as raised:
        parse(url, decode=True)
    message = str(raised.value)
    assert url in message and "'bad'" in message and f"'{field}'" in message
    assert expected in message


def test_a_json_value_that_does_not_fit_a_declared_feature_names_the_sample(tmp_path):
    members = [("a.json", b'{"w": 1}'), ("b.json", b'{"w": 1.5}'), ("c.json", b'{"w": 2}')]
    url = write_members(tmp_path / "w.tar", members)
    with pytest.raises(WebDatasetError) as raised:
        parse(url, features={"json": {"w": Value("int32")}})
    message = str(raised.value)
    assert url in message and "'b'" in message and "'json'" in message and "1.5" in message
    # pyarrow alone would have truncated 1.5 to 1 without a word
    assert pa.array([{"w": 1.5}], pa.struct({"w": pa.int32()})).to_pylist() == [{"w": 1}]


def test_a_field_twice_in_one_sample_is_an_error(tmp_path):
    url = write_members(tmp_path / "dup.tar", [("a.jpg", b"1"), ("a.JPG", b"2")])
    with pytest.raises(WebDatasetError, match=r"sample 'a' has field 'jpg' twice"):
        parse(url)
    with pytest.raises(ValueError, match="duplicate"):  # the library refuses it too
        library_samples([url])


def test_reserved_field_names_are_an_error(tmp_path):
    url = write_members(tmp_path / "reserved.tar", [("a.__key__", b"x")])
    with pytest.raises(WebDatasetError, match=r"'__key__' is reserved"):
        parse(url)


def test_gzip_shards_brace_urls_and_an_empty_shard(tmp_path):
    plain = write_samples(tmp_path / "shard-0.tar", captioned(3))
    with open(plain, "rb") as source, gzip.open(tmp_path / "shard-1.tar", "wb") as target:
        target.write(source.read())  # gzip without a .gz name: detected from the bytes
    write_members(tmp_path / "shard-2.tar", [])
    pattern = str(tmp_path / "shard-{0..2}.tar")
    rows = list(parse_stream(pattern))
    assert [row["__key__"] for row in rows] == ["sample000", "sample001", "sample002"] * 2
    assert rows[3]["__url__"] == str(tmp_path / "shard-1.tar")
    empty = parse(str(tmp_path / "shard-2.tar"))
    assert len(empty) == 0 and list(empty.features) == ["__key__", "__url__"]


def test_a_stream_reads_the_shards_again_on_every_pass(tmp_path):
    url = write_samples(tmp_path / "s.tar", captioned(3))
    stream = parse_stream(url, decode=True)
    assert list(stream) == list(stream)
    assert len(list(stream)) == 3


# ---------------------------------------------------------------------------------------------
# damaged shards


def cut_shard(tmp_path, cut_at) -> tuple[str, dict]:
    """A real shard of 10 samples, and a copy cut where `cut_at(offsets)` says."""
    samples = [{"__key__": f"s{n:03d}", "bin": os.urandom(3000), "txt": "t"} for n in range(10)]
    whole = write_samples(tmp_path / "whole.tar", samples)
    with tarfile.open(whole) as tar:
        offsets = {m.name: (m.offset, m.offset_data, m.size) for m in tar.getmembers()}
    data = Path(whole).read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: cut_at(offsets)])
    return str(cut), offsets


def test_a_shard_cut_inside_a_member_names_the_shard_and_the_last_good_key(tmp_path):
    url, _ = cut_shard(tmp_path, lambda at: at["s005.bin"][1] + 1500)
    for read in (lambda: parse(url), lambda: list(parse_stream(url))):
        with pytest.raises(CorruptShardError) as raised:
            read()
        message = str(raised.value)
        assert url in message and "last good key: 's004'" in message and "'s005.bin'" in message


def test_a_shard_cut_between_members_is_not_taken_for_a_whole_one(tmp_path):
    url, _ = cut_shard(tmp_path, lambda at: at["s006.bin"][0])
    assert [s["__key__"] for s in library_samples([url])][-1] == "s005"  # the library: no error
    with pytest.raises(CorruptShardError) as raised:
        parse(url)
    message = str(raised.value)
    assert url in message and "end-of-archive" in message and "last good key: 's004'" in message


def test_a_damaged_member_header_is_an_error(tmp_path):
    whole, offsets = cut_shard(tmp_path, lambda at: 10**9)
    data = bytearray(Path(whole).read_bytes())
    data[offsets["s003.bin"][0] + 148] ^= 0x07  # the header checksum
    damaged = tmp_path / "damaged.tar"
    damaged.write_bytes(bytes(data))
    with pytest.raises(CorruptShardError, match=r"damaged member header.*last good key: 's001'"):
        parse(str(damaged))


def test_a_truncated_gzip_shard_names_the_shard(tmp_path):
    whole, _ = cut_shard(tmp_path, lambda at: 10**9)
    packed = gzip.compress(Path(whole).read_bytes())
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(CorruptShardError, match=r"cut\.tar\.gz.*last good key: 's00\d'"):
        parse(str(cut))


@pytest.mark.parametrize("content", [b"", b"just some text, not a tar archive" * 40])
def test_a_file_that_is_no_tar_is_an_error_naming_it(tmp_path, content):
    path = tmp_path / "not-a.tar"
    path.write_bytes(content)
    with pytest.raises(CorruptShardError, match=r"not-a\.tar.*at its start.*expected a tar"):
        parse(str(path))


def test_a_missing_shard_or_a_foreign_url_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.tar"):
        parse(str(tmp_path / "nowhere.tar"))
    with pytest.raises(ValueError, match=r"https://example\.org/a\.tar: expected a local path"):
        parse_stream("https://example.org/a.tar")
    with pytest.raises(ValueError, match="at least one shard"):
        parse([])


def test_a_member_over_the_size_limit_is_an_error(tmp_path):
    url = write_members(tmp_path / "big.tar", [("a.txt", b"small"), ("b.bin", b"x" * 5000)])
    with pytest.raises(WebDatasetError, match=r"'b\.bin' has 5000 bytes.*max_member_bytes=4096"):
        parse(url, max_member_bytes=4096)
    assert len(parse(url, max_member_bytes=5000)) == 2


# ---------------------------------------------------------------------------------------------
# hostile shards


def special_member(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def test_unsafe_members_are_skipped_with_a_warning_and_nothing_is_written(
    tmp_path, monkeypatch, isolated_cache
):
    workdir = tmp_path / "work" / "deep"
    workdir.mkdir(parents=True)
    monkeypatch.chdir(workdir)
    absolute = tmp_path / "abs" / "path.txt"
    members = [
        ("good.txt", b"kept"),
        ("../evil.txt", b"escape"),
        ("../../evil2.txt", b"escape"),
        (str(absolute), b"absolute"),
        ("sub/..\\..\\win.txt", b"backslashes"),
        special_member("link.txt", tarfile.SYMTYPE, "/etc/passwd"),
        special_member("hard.txt", tarfile.LNKTYPE, "good.txt"),
        special_member("fifo.txt", tarfile.FIFOTYPE),
        special_member("device.txt", tarfile.CHRTYPE),
        special_member("disk.txt", tarfile.BLKTYPE),
        ("later.txt", b"kept too"),
    ]
    url = write_members(tmp_path / "hostile.tar", members)

    def files_outside_the_cache():
        return sorted(str(p) for p in tmp_path.rglob("*") if not p.is_relative_to(isolated_cache))

    before = files_outside_the_cache()
    with pytest.warns(UnsafeMemberWarning) as caught:
        rows = parse(url).to_dict()
    assert rows["__key__"] == ["good", "later"] and rows["txt"] == [b"kept", b"kept too"]
    messages = "\n".join(str(warning.message) for warning in caught)
    for name, reason in [
        ("../evil.txt", "'..'"),
        ("../../evil2.txt", "'..'"),
        ("win.txt", "'..'"),
        (str(absolute).lstrip("/"), "absolute path"),
        ("link.txt", "symbolic link"),
        ("hard.txt", "hard link"),
        ("fifo.txt", "FIFO"),
        ("device.txt", "device"),
        ("disk.txt", "device"),
    ]:
        assert any(name in line and reason in line for line in messages.splitlines()), name
    assert all(url in line for line in messages.splitlines())
    assert files_outside_the_cache() == before
    assert not absolute.exists() and list(workdir.iterdir()) == []


def test_a_member_name_that_is_not_utf8_is_skipped_with_a_warning(tmp_path):
    url = str(tmp_path / "names.tar")
    with tarfile.open(url, "w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tar:
        for name, data in [("caf\xe9.txt", b"latin-1 name"), ("ok.txt", b"fine")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.warns(UnsafeMemberWarning, match="not valid UTF-8"):
        assert parse(url)["__key__"] == ["ok"]


# ---------------------------------------------------------------------------------------------
# S3


def test_shards_on_s3_are_streamed_like_local_ones(tmp_path, seaweedfs, s3_bucket):
    client = seaweedfs.client()
    local = [
        write_samples(tmp_path / "shard-0.tar", captioned(4)),
        write_samples(tmp_path / "shard-1.tar", captioned(3, start=4)),
    ]
    with open(local[1], "rb") as source:
        client.put_object(
            Bucket=s3_bucket, Key="wds/shard-1.tar.gz", Body=gzip.compress(source.read())
        )
    client.upload_file(local[0], s3_bucket, "wds/shard-0.tar")
    urls = [f"s3://{s3_bucket}/wds/shard-0.tar", f"s3://{s3_bucket}/wds/shard-1.tar.gz"]
    remote = parse_stream(urls, decode=True, s3_client=client)
    expected = parse(local, decode=True)
    assert remote.features == expected.features
    strip = ["__url__", "jpg"]
    assert [{k: v for k, v in r.items() if k not in strip} for r in remote] == [
        {k: v for k, v in r.items() if k not in strip} for r in expected
    ]
    assert next(iter(remote))["__url__"] == urls[0]
    assert parse(urls, s3_client=client)["jpg"] == parse(local)["jpg"]
    missing = f"s3://{s3_bucket}/wds/missing.tar"
    with pytest.raises(FileNotFoundError, match=missing):
        parse(missing, s3_client=client)


def test_a_truncated_shard_on_s3_names_the_url_and_the_last_good_key(
    tmp_path, seaweedfs, s3_bucket
):
    client = seaweedfs.client()
    url, _ = cut_shard(tmp_path, lambda at: at["s007.bin"][1] + 100)
    client.upload_file(url, s3_bucket, "cut.tar")
    with pytest.raises(CorruptShardError) as raised:
        list(parse_stream(f"s3://{s3_bucket}/cut.tar", s3_client=client))
    assert f"s3://{s3_bucket}/cut.tar" in str(raised.value)
    assert "last good key: 's006'" in str(raised.value)


# ---------------------------------------------------------------------------------------------
# memory

PROBE = """
import json, sys
from ds_assets.formats.webdataset import parse, parse_stream

def status(field):
    with open("/proc/self/status") as lines:
        return next(int(l.split()[1]) * 1024 for l in lines if l.startswith(field))

baseline = status("VmRSS:")
if sys.argv[2] == "parse":
    rows = len(parse(sys.argv[1]))
else:
    rows = sum(1 for _ in parse_stream(sys.argv[1]))
print(json.dumps({"rows": rows, "growth_mb": (status("VmHWM:") - baseline) / 2**20}))
"""


@pytest.mark.parametrize("how", ["parse", "parse_stream"])
def test_reading_a_600mb_shard_stays_in_bounded_memory(tmp_path, how):
    url = str(tmp_path / "big.tar")
    payload = b"\x01" * (2 << 20)
    with tarfile.open(url, "w") as tar:
        for number in range(300):
            for field, data in [("bin", payload), ("txt", b"caption")]:
                info = tarfile.TarInfo(f"s{number:04d}.{field}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    assert os.path.getsize(url) > 600 * 10**6
    out = subprocess.run(
        [sys.executable, "-c", PROBE, url, how],
        capture_output=True, text=True, cwd=ROOT, check=False,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["rows"] == 300
    assert report["growth_mb"] < 150, report  # about 70 MB measured (16 MB batches)


def test_a_stream_has_one_shard_per_tar_for_dataloader_workers_and_nodes(tmp_path):
    from datasets.distributed import split_dataset_by_node

    urls = [write_samples(tmp_path / f"s{n}.tar", captioned(2, start=2 * n)) for n in range(4)]
    stream = reader.parse_stream(urls)
    assert stream.n_shards == 4
    node = split_dataset_by_node(stream, rank=1, world_size=2)
    assert [row["__url__"] for row in node] == [urls[1], urls[1], urls[3], urls[3]]
    assert [row["__key__"] for row in stream.shard(num_shards=4, index=2)] == [
        "sample004", "sample005",
    ]  # fmt: skip
