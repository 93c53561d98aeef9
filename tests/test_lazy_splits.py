"""Lazy transforms of the splits of a dict: each split keeps its own chain when stored and when
loaded, whether the dict is stored whole or as one asset per split."""

from dagster import asset
from datasets import Dataset, DatasetDict, IterableDatasetDict

from ds_assets import lazy_transform_asset, map_asset, split_assets
from ds_assets.storage import LocalStore
from tests.test_assets import run
from tests.transforms_for_tests import shout, shout_backwards

TRAIN = Dataset.from_dict({"text": ["a", "bb", "ccc"], "x": [1, 2, 3]})
TEST = Dataset.from_dict({"text": ["dd", "e"], "x": [4, 5]})


def pair():
    @asset(name="pair")
    def _pair() -> DatasetDict:
        return DatasetDict(train=TRAIN, test=TEST)

    return _pair


def store(env) -> LocalStore:
    return LocalStore(str(env[2]))


def rows(dataset) -> list[dict]:
    if isinstance(dataset, Dataset):
        return [dataset[i] for i in range(len(dataset))]
    return list(dataset)


def test_map_of_one_split_of_a_lazy_dict_with_columns_keeps_each_chain(env):
    lazy = lazy_transform_asset("loud", "pair", shout, columns=["text"], output_all_columns=True)
    mapped = map_asset("mapped", "loud", lambda row: {"n": len(row["loud"])}, splits=["train"])
    run(env, pair(), lazy, mapped)
    for kind in (DatasetDict, IterableDatasetDict):
        loaded = store(env).load(("mapped",), kind.__name__)
        train, test = rows(loaded["train"]), rows(loaded["test"])
        assert [(r["loud"], r["n"], r["x"]) for r in train] == [("A", 1, 1), ("BB", 2, 2),
                                                               ("CCC", 3, 3)]  # fmt: skip
        assert [(r["loud"], r["x"]) for r in test] == [("DD", 4), ("E", 5)]
        assert "n" not in test[0]


def test_split_assets_of_a_lazy_dataset_load_as_a_dict_with_the_chain(env):
    @asset(name="raw")
    def raw() -> Dataset:
        return TRAIN

    lazy = lazy_transform_asset("loud", "raw", shout)
    cut = split_assets("cut", "loud", {"train": 2, "test": 1}, seed=0)
    run(env, raw, lazy, cut)
    for kind in (DatasetDict, IterableDatasetDict):
        loaded = store(env).load(("cut",), kind.__name__)
        assert isinstance(loaded, kind)
        loud = sorted(r["loud"] for split in loaded.values() for r in rows(split))
        assert loud == ["A", "BB", "CCC"], kind


def test_split_assets_with_their_own_chains_load_as_a_dict_each_with_its_own(env):
    cut = split_assets("cut", "pair", ["train", "test"])
    train = lazy_transform_asset("train", ["cut", "train"], shout, key_prefix="loud")
    test = lazy_transform_asset("test", ["cut", "test"], shout_backwards, key_prefix="loud")
    run(env, pair(), cut, train, test)
    for kind in (DatasetDict, IterableDatasetDict):
        loaded = store(env).load(("loud",), kind.__name__)
        assert [r["loud"] for r in rows(loaded["train"])] == ["A", "BB", "CCC"], kind
        assert [r["loud"] for r in rows(loaded["test"])] == ["DD", "E"], kind


def test_a_store_loads_each_split_asset_of_a_dict_with_its_own_chain(store):
    """Both backends: split datasets stored one by one, each with its chain, as one dict."""
    store.save(("raw",), TRAIN)
    for split, transform in (("train", "shout"), ("test", "shout_backwards")):
        chain = {"transform": f"tests.transforms_for_tests:{transform}"}
        store.save_linked(("cut", split), ("raw",), transform=chain)
    store.update_split_index(("cut",), ["train", "test"])
    for kind in (DatasetDict, IterableDatasetDict):
        loaded = store.load(("cut",), kind.__name__)
        assert [r["loud"] for r in rows(loaded["train"])] == ["A", "BB", "CCC"], kind
        assert [r["loud"] for r in rows(loaded["test"])] == ["A", "BB", "CCC"[::-1]], kind


def test_an_index_bundle_refuses_parts_with_different_chains(store, tmp_path):
    import pytest

    store.save(("raw",), TRAIN)
    for part, transform in (("p",), "shout"), (("q",), "shout_backwards"):
        chain = {"transform": f"tests.transforms_for_tests:{transform}"}
        store.save_linked(("docs", *part), ("raw",), transform=chain)
    built = tmp_path / "built"
    built.mkdir()
    (built / "index.bin").write_bytes(b"...")
    with pytest.raises(ValueError, match=r"docs/q carries the lazy transforms .*shout_backwards"):
        store.save_bundle(("index",), str(built), [("docs", "p"), ("docs", "q")], {"engine": "x"})
    assert not store.exists(("index",))
