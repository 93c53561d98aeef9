"""The Arrow layout store against the real `datasets` library, on local disk and on S3."""

from __future__ import annotations

import os
import pathlib

import datasets
import pytest
from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict

from ds_assets.storage import DATASET, ITERABLE_DATASET, LocalStore, NotStoredError
from ds_assets.storage.base import StaleVersionError
from ds_assets.storage.layout import MANIFEST_FILE
from tests.datasets_factory import rich_dataset, table_dataset


def rows(dataset):
    return [dict(row) for row in dataset]


def test_roundtrip_keeps_rows_and_features(store):
    original = rich_dataset()
    result = store.save(("rich",), original)
    loaded = store.load(("rich",))
    assert isinstance(loaded, Dataset)
    assert loaded.features == original.features
    assert rows(loaded) == rows(original)
    assert loaded[3]["image"].size == (4, 3)  # decodes as a PIL image
    assert result.manifest.num_rows == len(original)


def test_local_output_opens_with_load_from_disk(tmp_path):
    store = LocalStore(str(tmp_path))
    original = rich_dataset()
    store.save(("a", "b"), original, max_shard_size=500)
    folder = tmp_path / "a" / "b"
    names = sorted(os.listdir(folder))
    shards = [n for n in names if n.startswith("data-")]
    assert len(shards) > 1
    assert shards[0] == f"data-00000-of-{len(shards):05d}.arrow"
    assert {"state.json", "dataset_info.json", MANIFEST_FILE} <= set(names)
    reference = datasets.load_from_disk(str(folder))
    assert reference.features == original.features
    assert rows(reference) == rows(original)


def test_shards_are_cut_at_max_shard_size(store):
    original = table_dataset(5_000)
    manifest = store.save(("t",), original, max_shard_size="10KB").manifest
    assert manifest.num_shards == manifest.num_bytes // 10_000 + 1
    assert store.load(("t",))["id"][:] == list(range(5_000))


def test_datasets_save_to_disk_output_loads(tmp_path):
    original = rich_dataset()
    original.save_to_disk(str(tmp_path / "single"), num_shards=3)
    DatasetDict(train=original, test=original.select([1, 2])).save_to_disk(str(tmp_path / "dd"))
    store = LocalStore(str(tmp_path))
    single = store.load(("single",))
    assert single.features == original.features and rows(single) == rows(original)
    both = store.load(("dd",))
    assert isinstance(both, DatasetDict) and list(both) == ["train", "test"]
    assert rows(both["test"]) == rows(original.select([1, 2]))


def test_datasets_output_on_s3_loads(seaweedfs, s3_bucket, tmp_path):
    from ds_assets.storage.s3 import S3Store

    original = rich_dataset()
    original.save_to_disk(str(tmp_path / "single"), num_shards=2)
    DatasetDict(train=original, test=original.select([0])).save_to_disk(str(tmp_path / "dd"))
    client = seaweedfs.client()
    for folder, _, files in os.walk(tmp_path):
        for name in files:
            local = os.path.join(folder, name)
            client.upload_file(local, s3_bucket, "raw/" + os.path.relpath(local, tmp_path))
    store = S3Store(client, s3_bucket, "raw")
    assert rows(store.load(("single",))) == rows(original)
    loaded = store.load(("dd",))
    assert list(loaded) == ["train", "test"] and rows(loaded["test"]) == rows(original.select([0]))


@pytest.mark.parametrize(
    "transform",
    [
        lambda d: d.shuffle(seed=3),
        lambda d: d.select([7, 2, 2, 9]),
        lambda d: d.filter(lambda r: r["id"] % 3 == 0),
    ],
    ids=["shuffle", "select", "filter"],
)
def test_indices_mapping_is_written_in_final_order(store, transform):
    original = transform(rich_dataset(20))
    store.save(("mapped",), original, max_shard_size=3_000)
    loaded = store.load(("mapped",))
    assert loaded._indices is None
    assert rows(loaded) == rows(original)


def test_empty_dataset_saves_and_loads(store, tmp_path):
    empty = rich_dataset().select([])
    store.save(("empty",), empty)
    loaded = store.load(("empty",))
    assert len(loaded) == 0 and loaded.features == empty.features
    if isinstance(store, LocalStore):
        assert len(datasets.load_from_disk(store.path(("empty",)))) == 0


def test_dataset_dict_roundtrip(store):
    original = DatasetDict(train=rich_dataset(10), test=rich_dataset(3))
    manifest = store.save(("dd",), original).manifest
    assert manifest.splits == {"train": 10, "test": 3}
    loaded = store.load(("dd",))
    assert isinstance(loaded, DatasetDict) and list(loaded) == ["train", "test"]
    assert rows(loaded["test"]) == rows(original["test"])
    assert loaded["train"].split == "train"
    streamed = store.load(("dd",), "IterableDatasetDict")
    assert isinstance(streamed, IterableDatasetDict)
    assert [r["id"] for r in streamed["train"]] == list(range(10))


def test_streaming_input_is_stored_and_loaded_as_stream(store):
    stream = (
        table_dataset(1_000)
        .to_iterable_dataset(num_shards=4)
        .map(lambda r: {"double": r["id"] * 2})
    )
    manifest = store.save(("s",), stream, max_shard_size="4KB").manifest
    assert manifest.kind == ITERABLE_DATASET and manifest.num_rows == 1_000
    assert manifest.num_shards > 1
    loaded = store.load(("s",))  # as stored: a stream
    assert isinstance(loaded, IterableDataset)
    assert [r["double"] for r in loaded] == [2 * i for i in range(1_000)]
    mapped = store.load(("s",), DATASET)
    assert mapped["double"][:5] == [0, 2, 4, 6, 8]


def test_unknown_features_of_a_generator_stream_are_inferred(store):
    def generate():
        for i in range(5):
            yield {"x": i, "y": [float(i)]}

    stream = IterableDataset.from_generator(generate)
    store.save(("g",), stream)
    assert store.load(("g",), DATASET)["y"][:] == [[float(i)] for i in range(5)]


def test_transforms_leave_the_stored_folder_untouched(tmp_path):
    store = LocalStore(str(tmp_path / "store"))
    store.save(("up",), table_dataset(50))
    folder = tmp_path / "store" / "up"
    before = sorted(os.listdir(folder))
    loaded = store.load(("up",))
    loaded.map(lambda r: {"n": len(r["text"])}).filter(lambda r: r["n"] > 2)
    assert sorted(os.listdir(folder)) == before
    assert not [n for n in os.listdir(folder) if n.startswith("cache-")]


def test_loading_a_missing_key_names_it(store):
    with pytest.raises(NotStoredError, match="nothing stored"):
        store.load(("missing",))


def test_wrong_kind_is_refused(store):
    store.save(("one",), table_dataset(3))
    with pytest.raises(TypeError, match="cannot be loaded as a DatasetDict"):
        store.load(("one",), "DatasetDict")


@pytest.mark.parametrize("bad", [("..",), ("a", "../b"), (".hidden",), ("a/b",), ()])
def test_unsafe_keys_are_refused(store, bad):
    with pytest.raises(ValueError):
        store.save(bad, table_dataset(1))


def test_mismatched_stream_names_batch_and_columns(store):
    def generate():
        yield {"x": 1}
        yield {"x": "not a number"}

    stream = IterableDataset.from_generator(
        generate, features=datasets.Features({"x": datasets.Value("int64")})
    )
    with pytest.raises(Exception, match="x"):
        store.save(("bad",), stream)
    assert not store.exists(("bad",))


def test_split_index_lists_materialized_splits(store):
    store.save(("mnist", "train"), table_dataset(4))
    store.save(("mnist", "test"), table_dataset(2))
    assert store.update_split_index(("mnist",)) == (["test", "train"], [])
    loaded = store.load(("mnist",))
    assert {name: len(split) for name, split in loaded.items()} == {"test": 2, "train": 4}
    if isinstance(store, LocalStore):
        reference = datasets.load_from_disk(str(store.path(("mnist",))))
        assert sorted(reference) == ["test", "train"]


def test_split_index_lists_only_the_named_splits_in_their_order(store):
    for name, rows in (("train", 4), ("test", 2), ("validation", 1)):
        store.save(("mnist", name), table_dataset(rows))
    named = ["train", "test", "unstored"]
    assert store.update_split_index(("mnist",), named) == (["train", "test"], ["validation"])
    assert list(store.load(("mnist",))) == ["train", "test"]
    assert store.exists(("mnist", "validation"))  # left out of the index, never deleted


def test_iterable_dataset_dict_roundtrip(store):
    streams = IterableDatasetDict(
        train=table_dataset(30).to_iterable_dataset(), test=table_dataset(4).to_iterable_dataset()
    )
    manifest = store.save(("sd",), streams).manifest
    assert manifest.kind == "IterableDatasetDict" and manifest.splits == {"train": 30, "test": 4}
    loaded = store.load(("sd",))
    assert isinstance(loaded, IterableDatasetDict)
    assert [r["id"] for r in loaded["test"]] == [0, 1, 2, 3]
    assert store.load(("sd",), "DatasetDict")["train"]["id"][:] == list(range(30))


def test_linked_repeat_split_and_transform_reuse_the_upstream(store):
    pair = DatasetDict(train=table_dataset(3), test=table_dataset(2))
    store.save(("pair",), pair)
    repeated = store.save_linked(("twice",), ("pair",), repeat=2)
    train = store.save_linked(("ds", "train"), ("pair",), split="train")
    upper = {"transform": "tests.transforms_for_tests:shout_ids", "kwargs": {}}
    lazy = store.save_linked(("lazy",), ("ds", "train"), transform=upper, repeat=3)
    assert repeated.manifest.num_bytes == train.manifest.num_bytes == 0
    assert {s: len(d) for s, d in store.load(("twice",)).items()} == {"train": 6, "test": 4}
    assert rows(store.load(("ds", "train"))) == rows(pair["train"])
    assert lazy.manifest.num_rows == 9
    assert store.load(("lazy",))["id"][:] == [f"id {i}!" for i in [0, 1, 2] * 3]
    streamed = store.load(("twice",), "IterableDatasetDict")
    assert [row["id"] for row in streamed["test"]] == [0, 1, 0, 1]


def test_linked_version_survives_new_upstream_versions(store):
    store.save(("raw",), table_dataset(3))
    store.save_linked(("twice",), ("raw",), repeat=2)
    for rows_count in (5, 6, 7):  # the linked version is now three versions old upstream
        store.save(("raw",), table_dataset(rows_count))
    assert store.load(("twice",))["id"][:] == [0, 1, 2, 0, 1, 2]
    assert len(store.load(("raw",))) == 7


def test_linking_an_unstored_upstream_or_split_names_it(store):
    with pytest.raises(NotStoredError, match="missing: no ds-assets manifest"):
        store.save_linked(("x",), ("missing",))
    store.save(("pair",), DatasetDict(train=table_dataset(1)))
    with pytest.raises(KeyError, match=r"has splits \['train'\], not 'dev'"):
        store.save_linked(("x",), ("pair",), split="dev")


def test_bundle_keeps_index_files_with_the_indexed_dataset_version(store, tmp_path):
    store.save(("docs",), table_dataset(3))
    built = tmp_path / "built"
    (built / "sub").mkdir(parents=True)
    (built / "index.bin").write_bytes(b"\x00\x01")
    (built / "sub" / "meta.json").write_text("{}")
    manifest = store.save_bundle(("docs_index",), str(built), ("docs",), {"engine": "demo"})
    store.save(("docs",), table_dataset(5))  # the upstream moves on, twice
    store.save(("docs",), table_dataset(6))
    loaded, folder, dataset = store.load_bundle(("docs_index",))
    assert loaded.index == {"engine": "demo"} and loaded.num_rows == 3
    assert loaded.source["version"] == manifest.source["version"]
    assert pathlib.Path(folder, "index.bin").read_bytes() == b"\x00\x01"
    assert os.path.isfile(os.path.join(folder, "sub", "meta.json"))
    assert dataset["id"][:] == [0, 1, 2]  # the indexed version, not the newest
    with pytest.raises(TypeError, match="holds a search index"):
        store.load(("docs_index",))


def test_bundle_of_an_unstored_dataset_names_it(store, tmp_path):
    with pytest.raises(
        NotStoredError, match="missing: no Dataset or IterableDataset stored by ds-assets to index"
    ):
        store.save_bundle(("i",), str(tmp_path), ("missing",), {})


def test_bundle_refuses_a_part_stored_again_since_the_version_indexed(store, tmp_path):
    indexed = [store.save(("events", day), table_dataset(2)).manifest.version
               for day in ("d1", "d2")]  # fmt: skip
    store.save(("events", "d2"), table_dataset(4))  # while the index was being built
    parts = [("events", "d1"), ("events", "d2")]
    built = tmp_path / "built"
    built.mkdir()
    with pytest.raises(StaleVersionError, match=rf"events/d2 is at version .*, but version "
                       rf"{indexed[1]} was indexed"):  # fmt: skip
        store.save_bundle(("events_index",), str(built), parts, {}, versions=indexed)
    assert store.manifest(("events_index",)) is None  # nothing stored
    current = [store.manifest(part).version for part in parts]
    assert store.save_bundle(("events_index",), str(built), parts, {}, versions=current)


def test_bundle_of_several_partitions_concatenates_them_in_order(store, tmp_path):
    for day, rows_count in (("d1", 2), ("d2", 3)):
        store.save(("events", day), table_dataset(rows_count))
    built = tmp_path / "built"
    built.mkdir()
    parts = [("events", "d2"), ("events", "d1")]
    manifest = store.save_bundle(("events_index",), str(built), parts, {"engine": "x"})
    assert manifest.num_rows == 5 and len(manifest.source["parts"]) == 2
    store.save(("events", "d1"), table_dataset(7))
    store.save(("events", "d1"), table_dataset(8))
    _, _, dataset = store.load_bundle(("events_index",))
    assert dataset["id"][:] == [0, 1, 2, 0, 1]
