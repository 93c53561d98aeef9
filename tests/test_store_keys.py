"""Keys and split names that probing found could overwrite, lose or fail to store data: each is
refused with an error naming it before anything is written, or stored safely."""

from __future__ import annotations

import errno
import json
import os
import pathlib
import pickle

import pytest
from datasets import Dataset, DatasetDict

from ds_assets.storage import LocalStore, atomic
from resources.partitions import partition_path


def small(column: str = "x", values=(1, 2, 3)) -> Dataset:
    return Dataset.from_dict({column: list(values)})


@pytest.mark.parametrize("split", ["../victim", "", "a/b", "ds_assets.json", "with space"])
def test_split_names_that_are_no_safe_folder_are_refused_before_writing(store, split):
    store.save(("victim",), small("secret"))
    with pytest.raises(ValueError, match=r"split name .* (cannot be a folder name|layout file)"):
        store.save(("attacker",), DatasetDict({"train": small(), split: small("pwned")}))
    assert store.load(("victim",))["secret"] == [1, 2, 3]
    assert not store.exists(("attacker",))


def test_a_key_inside_a_stored_dataset_is_refused(tmp_path):
    store = LocalStore(str(tmp_path))
    store.save(("news",), small())
    with pytest.raises(ValueError, match=r"news is a stored dataset, and its next save would"):
        store.save(("news", "train"), small())
    store.save(("news",), small(values=(4, 5)))
    assert store.load(("news",))["x"] == [4, 5]


def test_a_save_over_a_folder_of_split_assets_is_refused(tmp_path):
    store = LocalStore(str(tmp_path))
    store.save(("corpus", "train"), small())
    store.save(("corpus", "test"), small(values=(9,)))
    store.update_split_index(("corpus",))
    with pytest.raises(ValueError, match=r"holds the stored keys \['test', 'train'\]"):
        store.save(("corpus",), small())
    assert store.load(("corpus", "test"))["x"] == [9]


@pytest.mark.parametrize("part", ["state.json", "ds_assets.json", "dataset_dict.json"])
def test_key_parts_named_like_layout_files_are_refused(store, part):
    store.save(("p",), small())
    with pytest.raises(ValueError, match=rf"'{part}' is the name of a layout file"):
        store.save(("q", part), small())
    assert store.load(("p",))["x"] == [1, 2, 3]


def test_a_first_save_racing_another_first_save_exchanges_with_it(tmp_path, monkeypatch):
    final, mine = tmp_path / "key", tmp_path / ".key.tmp-mine"
    mine.mkdir()
    (mine / "mine").write_text("new")
    final.mkdir()
    (final / "theirs").write_text("landed first")  # between our check and our rename
    monkeypatch.setattr(atomic.os.path, "lexists", lambda path: False)
    old = atomic.exchange(str(mine), str(final))
    assert os.listdir(final) == ["mine"] and os.listdir(old) == ["theirs"]


def test_a_failed_swap_leaves_no_temporary_folder(tmp_path, monkeypatch):
    def refuse(new, final):
        raise OSError(errno.EACCES, "refused", final)

    monkeypatch.setattr(atomic, "exchange", refuse)
    with pytest.raises(OSError, match="refused"), atomic.atomic_directory(str(tmp_path / "key")):
        (tmp_path / "key.txt").write_text("written before the swap")
    assert os.listdir(tmp_path) == ["key.txt"]


def test_partition_keys_with_a_tilde_are_stored(tmp_path):
    store = LocalStore(str(tmp_path))
    key = ("files", *partition_path("report~1.xml"))
    store.save(key, small())
    assert key[-1] == "report%7E1.xml" and store.load(key)["x"] == [1, 2, 3]


def test_a_key_part_too_long_for_the_file_system_names_the_limit(tmp_path):
    store = LocalStore(str(tmp_path))
    with pytest.raises(ValueError, match=r"of 240 bytes is too long for a local store"):
        store.save(("a" * 240,), small())
    store.save(("a" * 230,), small())
    assert store.load(("a" * 230,))["x"] == [1, 2, 3]


def test_a_loaded_dataset_pickled_to_a_worker_keeps_its_version(tmp_path):
    store = LocalStore(str(tmp_path / "store"), cache_dir=str(tmp_path / "cache"))
    store.save(("k",), Dataset.from_dict({"tag": [1] * 4}))
    first = store.load(("k",))
    store.save(("k",), Dataset.from_dict({"tag": [2] * 4}))  # the same shard file names
    assert set(pickle.loads(pickle.dumps(first))["tag"]) == {1}
    assert set(first.map(lambda row: row, num_proc=2)["tag"]) == {1}
    assert set(store.load(("k",))["tag"]) == {2}


def test_an_s3_version_missing_a_shard_is_damaged_not_absent(seaweedfs, s3_bucket, tmp_path):
    from ds_assets.storage.reader import LayoutError
    from ds_assets.storage.s3 import S3Store

    client = seaweedfs.client()
    store = S3Store(client, s3_bucket, "base", cache_dir=str(tmp_path / "cache"))
    store.save(("day",), small(), max_shard_size="1KB")
    stream = store.load(("day",), kind="IterableDataset")
    shards = [
        item["Key"]
        for item in client.list_objects_v2(Bucket=s3_bucket, Prefix="base/day/")["Contents"]
        if item["Key"].endswith(".arrow")
    ]
    client.delete_object(Bucket=s3_bucket, Key=shards[0])
    with pytest.raises(LayoutError, match=r"base/day: stored version .* is damaged"):
        store.load(("day",))
    for opened in (stream, store.load(("day",), kind="IterableDataset")):
        with pytest.raises(LayoutError, match=r"data-00000.*: cannot read this shard of the str"):
            list(opened)


@pytest.mark.parametrize("name", ["ds_assets.json", "state.json"])
def test_a_damaged_json_document_is_named(store, name, tmp_path):
    from ds_assets.storage.reader import LayoutError

    store.save(("k",), small())
    if isinstance(store, LocalStore):
        (pathlib.Path(store.path(("k",))) / name).write_text("{not json")
    else:
        prefix = store.object_key(("k",))
        manifest = store.manifest(("k",))
        folder = prefix if name == "ds_assets.json" else f"{prefix}/v-{manifest.version}"
        store.client.put_object(Bucket=store.bucket, Key=f"{folder}/{name}", Body=b"{not json")
    with pytest.raises(LayoutError, match=rf"{name}: not a JSON document .* damaged"):
        store.load(("k",))


@pytest.mark.parametrize("store", ["local", "s3"], indirect=True)
def test_a_manifest_of_a_newer_format_is_refused_not_misread(store):
    from ds_assets.storage.layout import MANIFEST_FILE, MANIFEST_FORMAT

    saved = store.save(("docs",), Dataset.from_dict({"text": ["a"]}))
    assert saved.manifest.format == MANIFEST_FORMAT
    newer = json.dumps({**saved.manifest.to_json(), "format": MANIFEST_FORMAT + 1, "shiny": 1})
    if isinstance(store, LocalStore):
        (pathlib.Path(store.path(("docs",))) / MANIFEST_FILE).write_text(newer)
    else:
        manifest_key = store.object_key(("docs",), MANIFEST_FILE)
        store.client.put_object(Bucket=store.bucket, Key=manifest_key, Body=newer.encode())
    with pytest.raises(ValueError, match=f"format {MANIFEST_FORMAT + 1} was written by a newer"):
        store.load(("docs",))
