"""Lazily transformed upstreams combined downstream (concatenate, interleave, every partition
loaded at once): the result gives the transformed rows, or a clear error; never the raw rows."""

import pytest
from dagster import AssetExecutionContext, StaticPartitionsDefinition, asset, materialize
from datasets import Dataset, IterableDataset

from ds_assets import concatenate_asset, interleave_asset, lazy_transform_asset
from ds_assets.storage import LocalStore
from tests.transforms_for_tests import only_loud, shout, shout_backwards

FIRST = Dataset.from_dict({"text": ["a", "bb", "ccc"], "x": [1, 2, 3]})
SECOND = Dataset.from_dict({"text": ["dd", "e"], "x": [4, 5]})
LETTERS = StaticPartitionsDefinition(["p", "q"])


def source(name: str, dataset, streaming: bool):
    @asset(name=name)
    def _source():
        return dataset.to_iterable_dataset() if streaming else dataset

    return _source


def run(env, *assets, raise_on_error=True, **options):
    instance, io_manager, _ = env
    return materialize(list(assets), resources={"io_manager": io_manager}, instance=instance,
                       raise_on_error=raise_on_error, **options)  # fmt: skip


def loaded_rows(env, *key) -> list[dict]:
    value = LocalStore(str(env[2])).load(key)
    if isinstance(value, Dataset):
        return [value[i] for i in range(len(value))]
    return list(value)


def lazy_pair(streaming: bool, second_transform=shout):
    return [
        source("first", FIRST, streaming),
        source("second", SECOND, streaming),
        lazy_transform_asset("loud_first", "first", shout),
        lazy_transform_asset("loud_second", "second", second_transform),
    ]


@pytest.mark.parametrize("streaming", [False, True], ids=["dataset", "stream"])
def test_concatenate_of_lazy_upstreams_keeps_their_transform(env, streaming):
    both = concatenate_asset("both", ["loud_first", "loud_second"])
    assert run(env, *lazy_pair(streaming), both).success
    rows = loaded_rows(env, "both")
    assert [row["loud"] for row in rows] == ["A", "BB", "CCC", "DD", "E"]


@pytest.mark.parametrize("streaming", [False, True], ids=["dataset", "stream"])
def test_interleave_of_lazy_upstreams_keeps_their_transform(env, streaming):
    mixed = interleave_asset("mixed", ["loud_first", "loud_second"])
    assert run(env, *lazy_pair(streaming), mixed).success
    rows = loaded_rows(env, "mixed")
    assert [row["loud"] for row in rows] == ["A", "DD", "BB", "E"]


def test_concatenate_of_datasets_with_different_chains_names_the_inputs(env):
    both = concatenate_asset("both", ["loud_first", "loud_second"])
    result = run(env, *lazy_pair(False, only_loud), both, raise_on_error=False)
    assert not result.success
    error = str(result.failure_data_for_node("both").error)
    assert "loud_first" in error and "loud_second" in error and "lazy transforms" in error
    assert not (env[2] / "both").exists()


def test_concatenate_of_a_lazy_and_a_plain_dataset_names_the_inputs(env):
    both = concatenate_asset("both", ["loud_first", "second"])
    assets = lazy_pair(False)[:3]
    result = run(env, *assets, both, raise_on_error=False)
    assert not result.success
    error = str(result.failure_data_for_node("both").error)
    assert "loud_first" in error and "second" in error and "lazy transforms" in error


def test_concatenate_of_streams_with_different_chains_applies_each(env):
    both = concatenate_asset("both", ["loud_first", "loud_second"])
    assert run(env, *lazy_pair(True, shout_backwards), both).success
    rows = loaded_rows(env, "both")
    assert [row["loud"] for row in rows] == ["A", "BB", "CCC", "DD", "E"[::-1]]


def test_partitions_with_different_chains_loaded_at_once_name_them(env):
    texts, loud = partitioned_lazy(False)
    backwards = lazy_transform_asset("loud", "texts", shout_backwards, partitions_def=LETTERS)
    seen = {}
    assert run(env, texts, loud, partition_key="p").success
    assert run(env, texts, backwards, partition_key="q").success
    result = run(env, texts, loud, _annotated(Dataset, seen), selection=["whole"],
                 raise_on_error=False)  # fmt: skip
    assert not result.success and "rows" not in seen
    error = str(result.failure_data_for_node("whole").error.cause)
    assert "partitions of loud" in error and "partition 'q'" in error
    assert "shout_backwards" in error


def partitioned_lazy(streaming: bool):
    @asset(partitions_def=LETTERS)
    def texts(context: AssetExecutionContext):
        dataset = FIRST if context.partition_key == "p" else SECOND
        return dataset.to_iterable_dataset() if streaming else dataset

    return texts, lazy_transform_asset("loud", "texts", shout, partitions_def=LETTERS)


@pytest.mark.parametrize("kind", [Dataset, IterableDataset], ids=["dataset", "stream"])
@pytest.mark.parametrize("streaming", [False, True], ids=["stored_dataset", "stored_stream"])
def test_every_partition_of_a_lazy_asset_loaded_at_once_keeps_the_transform(env, kind, streaming):
    texts, loud = partitioned_lazy(streaming)
    seen = {}
    whole = _annotated(kind, seen)
    for key in ("p", "q"):
        assert run(env, texts, loud, partition_key=key).success
    assert run(env, texts, loud, whole, selection=[whole]).success
    assert [row["loud"] for row in seen["rows"]] == ["A", "BB", "CCC", "DD", "E"]


def _annotated(kind, seen):
    """An unpartitioned asset reading every partition of `loud` as `kind`."""
    if kind is Dataset:

        @asset(name="whole")
        def whole(loud: Dataset) -> None:
            seen["rows"] = [loud[i] for i in range(len(loud))]

    else:

        @asset(name="whole")
        def whole(loud: IterableDataset) -> None:
            seen["rows"] = list(loud)

    return whole


def test_two_loads_of_a_lazy_asset_concatenate_with_their_transform_in_datasets(env):
    """Loads compose equal transforms, so `datasets`' own concatenate keeps the format."""
    import datasets

    assert run(env, *lazy_pair(False)).success
    store = LocalStore(str(env[2]))
    first, second = store.load(("loud_first",)), store.load(("loud_second",))
    assert first.format == second.format
    both = datasets.concatenate_datasets([first, second])
    assert both[:]["loud"] == ["A", "BB", "CCC", "DD", "E"]


@pytest.mark.parametrize("op", ["concatenate", "interleave"])
def test_lazy_streams_whose_transforms_give_other_columns_are_named(env, op):
    factory = concatenate_asset if op == "concatenate" else interleave_asset
    both = factory("both", ["loud_first", "loud_second"])
    result = run(env, *lazy_pair(True, only_loud), both, raise_on_error=False)
    assert not result.success
    error = str(result.failure_data_for_node("both").error.cause)
    assert f"{op} both: input loud_second does not match the Features of input loud_first" in error
    assert "text: missing" in error and "x: missing" in error


def test_a_lazy_stream_keeps_its_upstream_features_in_the_check(env):
    """A ClassLabel the transform passes through is not reported as a difference."""
    from datasets import ClassLabel, Features, Value

    features = Features({"text": Value("string"), "x": ClassLabel(names=list("abcdef"))})
    assets = [
        source("first", FIRST.cast(features), True),
        source("second", SECOND.cast(features), True),
        lazy_transform_asset("loud_first", "first", shout),
        lazy_transform_asset("loud_second", "second", shout),
    ]
    both = concatenate_asset("both", ["loud_first", "loud_second"])
    assert run(env, *assets, both).success
    assert [row["loud"] for row in loaded_rows(env, "both")] == ["A", "BB", "CCC", "DD", "E"]


def test_columns_of_lazy_streams_concatenated_side_by_side_must_be_distinct(env):
    """A lazy stream's columns are known from its first rows: `axis=1` checks them too."""
    wide = concatenate_asset("wide", ["loud_first", "loud_second"], axis=1)
    result = run(env, *lazy_pair(True), wide, raise_on_error=False)
    assert not result.success
    error = str(result.failure_data_for_node("wide").error.cause)
    assert (
        "axis=1 needs distinct columns; column 'text' is in inputs loud_first and loud_second"
        in error
    )
    numbers = source("numbers", Dataset.from_dict({"n": [1, 2, 3]}), True)
    loud = lazy_transform_asset("loud_only", "first", only_loud)
    side_by_side = concatenate_asset("side", ["loud_only", "numbers"], axis=1)
    assert run(env, source("first", FIRST, True), numbers, loud, side_by_side).success
    assert loaded_rows(env, "side") == [{"loud": "A", "n": 1}, {"loud": "BB", "n": 2},
                                        {"loud": "CCC", "n": 3}]  # fmt: skip
