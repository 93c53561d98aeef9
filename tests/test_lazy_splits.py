"""Lazy transforms of the splits of a dict: each split keeps its own chain when stored and when
loaded, whether the dict is stored whole or as one asset per split."""

from dagster import asset, materialize
from datasets import Dataset, DatasetDict, IterableDatasetDict

from ds_assets import lazy_transform_asset, map_asset
from ds_assets.storage import LocalStore
from tests.transforms_for_tests import shout

TRAIN = Dataset.from_dict({"text": ["a", "bb", "ccc"], "x": [1, 2, 3]})
TEST = Dataset.from_dict({"text": ["dd", "e"], "x": [4, 5]})


def pair():
    @asset(name="pair")
    def _pair() -> DatasetDict:
        return DatasetDict(train=TRAIN, test=TEST)

    return _pair


def run(env, *assets):
    instance, io_manager, _ = env
    result = materialize(list(assets), resources={"io_manager": io_manager}, instance=instance)
    assert result.success
    return result


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
