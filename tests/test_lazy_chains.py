"""Lazy transform assets as inputs: streams equal datasets, stacked column choices hold, and
eager ops (map, filter, split...) over a lazily transformed dataset store their result with
the chain, as `datasets` keeps the transform in memory."""

import pytest
from dagster import asset, materialize
from datasets import Dataset, IterableDataset

from ds_assets import filter_asset, lazy_transform_asset, map_asset, split_assets
from ds_assets.ops.lazy import LazyTransformError, apply_transforms
from ds_assets.storage import LocalStore
from tests.transforms_for_tests import count_columns, only_loud, shout

RAW = Dataset.from_dict({"text": ["a", "bb", "ccc", "dd", "e"], "x": [1, 2, 3, 4, 5]})
SHOUT = "tests.transforms_for_tests:shout"


def source():
    @asset(name="raw")
    def _source():
        return RAW

    return _source


def run(env, *assets):
    instance, io_manager, _ = env
    result = materialize([source(), *assets], resources={"io_manager": io_manager},
                         instance=instance)  # fmt: skip
    assert result.success


def load(env, *key):
    return LocalStore(str(env[2])).load(key)


def in_memory(transform, **options) -> Dataset:
    dataset = Dataset.from_dict(RAW[:])
    dataset.set_transform(transform, **options)
    return dataset


@pytest.mark.parametrize(
    "options",
    [{}, {"columns": ["text"]}, {"columns": ["text"], "output_all_columns": True}],
    ids=["all", "columns", "output_all_columns"],
)
def test_a_stream_of_a_lazy_asset_gives_the_rows_a_dataset_gives(env, options):
    seen = {}

    @asset
    def as_dataset(lazy: Dataset) -> None:
        seen["dataset"] = [lazy[i] for i in range(len(lazy))]

    @asset
    def as_stream(lazy: IterableDataset) -> None:
        seen["stream"] = list(lazy)

    lazy = lazy_transform_asset("lazy", "raw", only_loud, **options)
    run(env, lazy, as_dataset, as_stream)
    expected = in_memory(only_loud, **options)
    assert seen["dataset"] == [expected[i] for i in range(len(expected))]
    assert seen["stream"] == seen["dataset"]


def test_stacked_lazy_assets_each_read_the_columns_they_name(env):
    first = lazy_transform_asset("first", "raw", shout)
    second = lazy_transform_asset("second", "first", count_columns, columns=["loud"])
    run(env, first, second)
    row = load(env, "second")[0]
    assert row == {"loud": "A", "seen": 1}  # count_columns saw only `loud`
    chain = [{"transform": SHOUT}, {"transform": "tests.transforms_for_tests:count_columns",
                                    "columns": ["loud"]}]  # fmt: skip
    stream = apply_transforms(RAW.to_iterable_dataset(), chain)
    assert next(iter(stream)) == {"loud": "A", "seen": 1}


def test_a_missing_column_of_a_stacked_transform_is_named(env):
    first = lazy_transform_asset("first", "raw", only_loud)
    second = lazy_transform_asset("second", "first", count_columns, columns=["text"])
    run(env, first, second)
    with pytest.raises(LazyTransformError, match=r"count_columns.*\['text'\] are not among"):
        load(env, "second")[0]


def test_map_filter_and_split_of_a_lazy_asset_store_with_its_transform(env):
    lazy = lazy_transform_asset("lazy", "raw", shout)
    mapped = map_asset("mapped", "lazy", lambda row: {"n": len(row["loud"])})
    kept = filter_asset("kept", "lazy", lambda row: row["loud"] != "E")
    parts = split_assets("parts", "lazy", {"train": 3, "test": 2}, seed=0)
    run(env, lazy, mapped, kept, parts)
    loud = in_memory(shout)
    expected = {
        "mapped": loud.map(lambda row: {"n": len(row["loud"])}),
        "kept": loud.filter(lambda row: row["loud"] != "E"),
        **loud.train_test_split(train_size=3, test_size=2, seed=0),
    }
    for name, key in [("mapped", ("mapped",)), ("kept", ("kept",)),
                      ("train", ("parts", "train")), ("test", ("parts", "test"))]:  # fmt: skip
        stored, wanted = load(env, *key), expected[name]
        assert stored[:] == wanted[:], name  # the transform runs on load, as in memory
        assert [t["transform"] for t in LocalStore(str(env[2])).manifest(key).transforms] == [SHOUT]
    assert load(env, "kept")[:]["loud"] == ["A", "BB", "CCC", "DD"]


def test_a_transform_set_by_the_asset_itself_is_refused_by_name(env):
    @asset
    def transformed() -> Dataset:
        return in_memory(shout)

    instance, io_manager, data = env
    result = materialize([transformed], resources={"io_manager": io_manager},
                         instance=instance, raise_on_error=False)  # fmt: skip
    assert not result.success
    error = result.failure_data_for_node("transformed").error
    assert "a function cannot be stored" in str(error) and "lazy_transform_asset" in str(error)
    assert not (data / "transformed").exists()
