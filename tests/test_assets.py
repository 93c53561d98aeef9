"""Asset factories against the direct `datasets` calls, through real materializations."""

import os
import subprocess
import sys
import textwrap

import datasets
import pytest
from dagster import DagsterInvalidDefinitionError, asset, materialize
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from ds_assets import (
    DatasetOpError,
    concatenate_asset,
    filter_asset,
    interleave_asset,
    map_asset,
    repeat_asset,
    split_assets,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FEATURES = Features({"id": Value("int64"), "label": ClassLabel(names=["a", "b", "c"])})


def labelled(rows: int, offset: int = 0) -> Dataset:
    ids = list(range(offset, offset + rows))
    return Dataset.from_dict({"id": ids, "label": [i % 3 for i in ids]}, features=FEATURES)


def source(name: str, dataset) -> object:
    @asset(name=name)
    def _source():
        return dataset

    return _source


def run(env, *assets):
    instance, io_manager, _ = env
    result = materialize(list(assets), resources={"io_manager": io_manager}, instance=instance)
    assert result.success
    return result


def stored(env, *parts):
    return datasets.load_from_disk(str(env[2].joinpath(*parts)))


def rows(dataset):
    return [dict(r) for r in dataset]


def test_two_splits_equal_train_test_split(env):
    raw = labelled(50)
    splits = split_assets("ds", "raw", {"train": 0.8, "test": 0.2}, seed=7,
                          stratify_by_column="label")  # fmt: skip
    run(env, source("raw", raw), splits)
    expected = raw.train_test_split(
        train_size=0.8, test_size=0.2, seed=7, stratify_by_column="label"
    )
    loaded = stored(env, "ds")
    assert isinstance(loaded, DatasetDict)
    for split in ("train", "test"):
        assert rows(loaded[split]) == rows(expected[split])
        assert loaded[split].features == raw.features


def test_three_splits_by_count_are_disjoint_and_complete(env):
    splits = split_assets("ds", "raw", {"train": 30, "valid": 10, "test": 10}, seed=1)
    run(env, source("raw", labelled(50)), splits)
    loaded = stored(env, "ds")
    sizes = {name: len(loaded[name]) for name in ("train", "valid", "test")}
    assert sizes == {"train": 30, "valid": 10, "test": 10}
    ids = [i for name in ("train", "valid", "test") for i in loaded[name]["id"][:]]
    assert sorted(ids) == list(range(50))


def test_fewer_splits_leave_the_old_split_out_of_the_dict(env):
    instance, io_manager, data = env
    raw = source("raw", labelled(10))
    run(env, raw, split_assets("ds", "raw", {"train": 6, "validation": 2, "test": 2}, seed=0))
    result = run(env, raw, split_assets("ds", "raw", {"train": 8, "test": 2}, seed=0))
    loaded = stored(env, "ds")
    assert {name: len(split) for name, split in loaded.items()} == {"train": 8, "test": 2}
    assert sorted(loaded["train"]["id"][:] + loaded["test"]["id"][:]) == list(range(10))
    warnings = [
        event.message
        for event in instance.all_logs(result.run_id)
        if "no longer splits" in (event.message or "")
    ]
    assert warnings and "['validation']" in warnings[0]
    assert (data / "ds" / "validation").is_dir()


def test_split_names_take_the_splits_of_a_dataset_dict_in_their_order(env):
    upstream = DatasetDict(train=labelled(5), validation=labelled(3), test=labelled(2))
    run(env, source("raw", upstream), split_assets("ds", "raw", ["validation", "train"]))
    loaded = stored(env, "ds")
    assert list(loaded) == ["validation", "train"]
    assert rows(loaded["validation"]) == rows(upstream["validation"])


def test_split_names_on_a_dataset_upstream_ask_for_sizes(env):
    instance, io_manager, _ = env
    result = materialize(
        [source("raw", labelled(5)), split_assets("ds", "raw", ["train", "test"])],
        resources={"io_manager": io_manager},
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    error = str(result.failure_data_for_node("ds__splits").error)
    assert "is a Dataset" in error and "give sizes" in error


def test_dataset_dict_upstream_fans_out(env):
    upstream = DatasetDict(train=labelled(5), test=labelled(2))
    run(env, source("raw", upstream), split_assets("ds", "raw", {"train": 1, "test": 1}))
    assert rows(stored(env, "ds", "train")) == rows(upstream["train"])
    assert len(stored(env, "ds", "test")) == 2
    shard = next((env[2] / "raw" / "train").glob("data-*.arrow"))
    assert (env[2] / "ds" / "train" / shard.name).stat().st_ino == shard.stat().st_ino


@pytest.mark.parametrize(
    ("splits", "message"),
    [
        ({"train": 0.8}, "at least two splits"),
        ({"train": 0.8, "test": 0.3}, "sum to at most 1"),
        ({"train": 0.8, "test": -0.1}, "must lie in"),
        ({"train": 10, "test": 0}, "must be positive"),
        ({"train": 0.5, "test": 5}, "all as row counts"),
        (["train", "train"], "distinct split names"),
        ([], "distinct split names"),
        ("train", "list of split names"),
        (["../x"], "cannot be a folder name"),
        ({"../x": 0.5, "y": 0.5}, "cannot be a folder name"),
        ([1], "is not a string"),
    ],
)
def test_split_validation(splits, message):
    with pytest.raises(DagsterInvalidDefinitionError, match=message):
        split_assets("ds", "raw", splits)


def test_map_and_filter_equal_direct_calls_and_respect_splits(env):
    upstream = DatasetDict(train=labelled(20), test=labelled(6))
    mapped = map_asset("mapped", "raw", lambda batch: {"double": [2 * i for i in batch["id"]]},
                       batched=True, batch_size=4, splits=["train"])  # fmt: skip
    kept = filter_asset("kept", "mapped", lambda row, index: index % 2 == 0, with_indices=True)
    run(env, source("raw", upstream), mapped, kept)
    direct = upstream["train"].map(lambda b: {"double": [2 * i for i in b["id"]]}, batched=True)
    loaded = stored(env, "mapped")
    assert rows(loaded["train"]) == rows(direct)
    assert loaded["train"].features == direct.features
    assert rows(loaded["test"]) == rows(upstream["test"])  # passed through
    filtered = stored(env, "kept")
    assert rows(filtered["train"]) == rows(
        direct.filter(lambda r, i: i % 2 == 0, with_indices=True)
    )


def test_map_on_a_stream_input_stays_a_stream(env):
    stream = labelled(10).to_iterable_dataset()
    run(env, source("raw", stream), map_asset("plus", "raw", lambda r: {"next": r["id"] + 1}))
    assert stored(env, "plus")["next"][:] == list(range(1, 11))


def test_unknown_split_selection_is_named(env):
    upstream = DatasetDict(train=labelled(2))
    with pytest.raises(DatasetOpError, match=r"splits \['dev'\] are not in the upstream"):
        run(env, source("raw", upstream), map_asset("m", "raw", lambda r: r, splits=["dev"]))


def test_code_version_follows_the_function():
    first = map_asset("m", "raw", lambda row: {"x": 1})
    second = map_asset("m", "raw", lambda row: {"x": 2})
    batched = map_asset("m", "raw", lambda row: {"x": 1}, batched=True)
    version = first.code_versions_by_key[first.key]
    assert version != second.code_versions_by_key[second.key]
    assert version != batched.code_versions_by_key[batched.key]
    assert 'lambda row: {"x": 1}' in first.descriptions_by_key[first.key]


def test_lambdas_on_one_line_get_their_own_description_and_version():
    low, high = [filter_asset(n, "raw", f) for n, f in (("low", lambda r: r["id"] < 2), ("high", lambda r: r["id"] > 2))]  # fmt: skip  # noqa: E501
    assert low.descriptions_by_key[low.key].startswith('`filter` of `lambda r: r["id"] < 2`\n')
    assert high.descriptions_by_key[high.key].startswith('`filter` of `lambda r: r["id"] > 2`\n')
    assert low.code_versions_by_key[low.key] != high.code_versions_by_key[high.key]
    spread = map_asset("spread", "raw", lambda r: {"pair": (r["id"],
                                                            r["id"] * 2)})  # fmt: skip
    assert '{"pair": (r["id"], r["id"] * 2)}`' in spread.descriptions_by_key[spread.key]


@pytest.mark.parametrize(
    ("factory", "arguments", "message"),
    [
        (map_asset, {"fn": "upper"}, "must be callable, got 'upper'"),
        (filter_asset, {"predicate": None}, "must be callable, got None"),
        (map_asset, {"fn": str.upper, "num_proc": -1}, "num_proc must be"),
        (filter_asset, {"predicate": bool, "num_proc": 2.5}, "num_proc must be"),
        (map_asset, {"fn": str.upper, "num_proc": True}, "num_proc must be"),
    ],
)
def test_function_and_num_proc_are_checked_when_defined(factory, arguments, message):
    with pytest.raises(DagsterInvalidDefinitionError, match=message):
        factory("bad", "raw", **arguments)


def test_map_declares_the_output_features(env):
    features = Features({"id": Value("int32"), "label": ClassLabel(names=["a", "b", "c"])})
    for name, upstream in (("raw", labelled(4)), ("raw_stream", labelled(4).to_iterable_dataset())):
        narrowed = map_asset(
            f"{name}_narrow", name, lambda r: {"id": r["id"] + 1}, features=features
        )
        run(env, source(name, upstream), narrowed)
        narrow = stored(env, f"{name}_narrow")
        assert narrow.features == features and narrow["id"][:] == [1, 2, 3, 4]


@pytest.mark.parametrize("strategy", ["first_exhausted", "all_exhausted"])
def test_interleave_equals_datasets(env, strategy):
    left, right = labelled(30), labelled(12, offset=100)
    mixed = interleave_asset("mixed", ["left", "right"], probabilities=[0.3, 0.7], seed=5,
                             stopping_strategy=strategy)  # fmt: skip
    run(env, source("left", left), source("right", right), mixed)
    expected = datasets.interleave_datasets(
        [left, right], probabilities=[0.3, 0.7], seed=5, stopping_strategy=strategy
    )
    loaded = stored(env, "mixed")
    assert rows(loaded) == rows(expected) and loaded.features == expected.features


def test_streaming_interleave_equals_datasets(env):
    left, right = labelled(2_500), labelled(1_800, offset=10_000)
    mixed = interleave_asset("mixed", ["left", "right"], probabilities=[0.6, 0.4], seed=11,
                             stopping_strategy="all_exhausted")  # fmt: skip
    run(env, source("left", left.to_iterable_dataset(num_shards=3)),
        source("right", right.to_iterable_dataset()), mixed)  # fmt: skip
    expected = datasets.interleave_datasets(
        [left.to_iterable_dataset(num_shards=3), right.to_iterable_dataset()],
        probabilities=[0.6, 0.4], seed=11, stopping_strategy="all_exhausted",
    )  # fmt: skip
    loaded = stored(env, "mixed")
    assert loaded["id"][:] == [r["id"] for r in expected]
    assert loaded.features == left.features


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"probabilities": [0.5]}, "1 probabilities for 2 inputs"),
        ({"probabilities": [1.2, -0.2]}, "probability of input right is -0.2"),
        ({"probabilities": [0.5, 0.6]}, "sum to 1.1"),
        ({"stopping_strategy": "never"}, "'never' is not one of"),
        # an input never sampled is never exhausted: a stream run would never end
        ({"probabilities": [1, 0], "stopping_strategy": "all_exhausted"}, r"0 for \['right'\]"),
    ],
)
def test_interleave_validation(kwargs, message):
    with pytest.raises(DagsterInvalidDefinitionError, match=message):
        interleave_asset("mixed", ["left", "right"], **kwargs)


def test_incompatible_features_name_the_input(env):
    other = Dataset.from_dict({"id": ["x"], "label": [0]})
    with pytest.raises(DatasetOpError, match=r"input right does not match.*id: Value\('int64'\)"):
        run(env, source("left", labelled(3)), source("right", other),
            interleave_asset("mixed", ["left", "right"]))  # fmt: skip


def test_concatenate_equals_datasets_and_lists_differences(env):
    first, second = labelled(4), labelled(3, offset=50)
    run(env, source("first", first), source("second", second),
        concatenate_asset("both", ["first", "second"]))  # fmt: skip
    expected = datasets.concatenate_datasets([first, second])
    assert rows(stored(env, "both")) == rows(expected)
    wrong = Dataset.from_dict({"id": [1.5], "extra": [1]})
    with pytest.raises(DatasetOpError, match="label: missing; extra: unexpected; id:"):
        run(env, source("first", first), source("wrong", wrong),
            concatenate_asset("bad", ["first", "wrong"]))  # fmt: skip


def test_concatenate_columns(env):
    left = labelled(3)
    right = Dataset.from_dict({"score": [0.5, 0.25, 1.0]})
    run(env, source("left", left), source("right", right),
        concatenate_asset("wide", ["left", "right"], axis=1))  # fmt: skip
    assert stored(env, "wide").column_names == ["id", "label", "score"]
    with pytest.raises(DatasetOpError, match="input right has 1 rows"):
        run(env, source("left", left), source("right", right.select([0])),
            concatenate_asset("wide", ["left", "right"], axis=1))  # fmt: skip


def test_repeat_equals_datasets_and_reuses_shards(env):
    from dagster import AssetKey

    raw = labelled(4)
    instance = env[0]
    run(env, source("raw", raw), repeat_asset("thrice", "raw", 3))
    assert rows(stored(env, "thrice")) == rows(raw.repeat(3))
    event = instance.get_latest_materialization_event(AssetKey("thrice")).asset_materialization
    assert event.metadata["dagster/row_count"].value == 12
    assert event.metadata["num_bytes"].value == 0  # nothing new written
    upstream_shard = next((env[2] / "raw").glob("data-*.arrow"))
    assert (env[2] / "thrice" / upstream_shard.name).stat().st_ino == upstream_shard.stat().st_ino


def test_repeat_of_chosen_splits(env):
    upstream = DatasetDict(train=labelled(3), test=labelled(2))
    run(env, source("raw", upstream), repeat_asset("more", "raw", 2, splits=["train"]))
    loaded = stored(env, "more")
    assert len(loaded["train"]) == 6 and len(loaded["test"]) == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_repeat_validation(bad):
    with pytest.raises(DagsterInvalidDefinitionError, match="num_times must be a positive integer"):
        repeat_asset("r", "raw", bad)


def test_unknown_option_is_named():
    with pytest.raises(DagsterInvalidDefinitionError, match=r"unknown options \['colour'\]"):
        map_asset("m", "raw", lambda r: r, colour="red")


LAMBDA_LOCATION = textwrap.dedent(
    """
    import os
    from dagster import Definitions, asset, multiprocess_executor
    from datasets import Dataset
    from ds_assets import map_asset, filter_asset
    from resources import DatasetIOManager

    @asset
    def numbers() -> Dataset:
        return Dataset.from_dict({"n": list(range(10))})

    squares = map_asset("squares", numbers, lambda row: {"sq": row["n"] ** 2})
    even = filter_asset("even", squares, lambda row: row["sq"] % 2 == 0)
    defs = Definitions(
        assets=[numbers, squares, even],
        resources={"io_manager": DatasetIOManager(base_dir=os.environ["DATA"])},
        executor=multiprocess_executor,
    )
    """
)


def test_lambda_transforms_run_under_the_multiprocess_executor(tmp_path):
    location = tmp_path / "location.py"
    location.write_text(LAMBDA_LOCATION)
    env = dict(os.environ, DAGSTER_HOME=str(tmp_path), DATA=str(tmp_path / "data"),
               PYTHONPATH=ROOT)  # fmt: skip
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    out = subprocess.run(
        [dagster, "asset", "materialize", "-f", str(location), "--select", "*"],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "multiprocess" in out.stderr.lower() or "Launching subprocess" in out.stderr
    assert datasets.load_from_disk(str(tmp_path / "data" / "even"))["sq"][:] == [0, 4, 16, 36, 64]


def check_results(result):
    return {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def test_checks_pass_and_fail_with_reasons(env):
    from ds_assets.checks import (
        no_nulls_check,
        row_count_check,
        schema_drift_check,
        split_fractions_check,
    )

    with_null = Dataset.from_dict({"id": [1, 2, None], "label": [0, 1, 2]})
    checks = [
        row_count_check("raw", min_rows=1, max_rows=2),
        no_nulls_check("raw", ["id", "label"]),
        schema_drift_check("raw"),
    ]
    first = check_results(run(env, source("raw", with_null), *checks))
    assert not first["row_count"].passed and "3 rows" in first["row_count"].description
    assert not first["no_nulls"].passed
    assert first["no_nulls"].metadata["null_counts"].value == {"id": 1}
    assert first["schema_unchanged"].passed
    changed = Dataset.from_dict({"id": ["a"], "label": [0]})
    second = check_results(run(env, source("raw", changed), *checks))
    assert second["row_count"].passed and second["no_nulls"].passed
    assert not second["schema_unchanged"].passed
    assert second["schema_unchanged"].metadata["changed_columns"].value == ["id"]

    splits = split_assets("ds", "raw", {"train": 0.7, "test": 0.3}, seed=0)
    fractions = split_fractions_check("ds", {"train": 0.7, "test": 0.3}, tolerance=0.05)
    strict = split_fractions_check("ds", {"train": 0.5, "test": 0.5}, tolerance=0.05)
    ok = check_results(run(env, source("raw", labelled(100)), splits, fractions))
    assert ok["split_fractions"].passed
    assert ok["split_fractions"].metadata["row_counts"].value == {"train": 70, "test": 30}
    off = check_results(run(env, source("raw", labelled(100)), splits, strict))
    assert not off["split_fractions"].passed


@pytest.mark.parametrize("rows", [10, 99, 100, 101, 333])
def test_three_fraction_splits_cover_every_row(env, rows):
    splits = split_assets("ds", "raw", {"train": 0.7, "valid": 0.2, "test": 0.1}, seed=3)
    run(env, source("raw", labelled(rows)), splits)
    loaded = stored(env, "ds")
    ids = sorted(i for name in ("train", "valid", "test") for i in loaded[name]["id"][:])
    assert ids == list(range(rows))
    assert len(loaded["train"]) == int(0.7 * rows)


def test_lazy_transform_stores_no_copy_and_applies_on_access(env):
    from ds_assets import lazy_transform_asset
    from ds_assets.storage import LocalStore
    from tests.transforms_for_tests import shout

    raw = Dataset.from_dict({"text": ["a", "bb", "ccc"], "x": [1.0, 2.0, 3.0]})
    loud = lazy_transform_asset("loud", "raw", shout)
    measured = lazy_transform_asset("measured", "loud", "tests.transforms_for_tests:measure")
    seen = {}

    @asset
    def consumer(measured: Dataset) -> Dataset:
        seen["rows"] = measured[:]
        return measured.with_format(None)

    run(env, source("raw", raw), loud, measured, consumer)
    assert seen["rows"]["loud"] == ["A", "BB", "CCC"] and seen["rows"]["loud_length"] == [1, 2, 3]
    data = env[2]
    raw_shard = next((data / "raw").glob("data-*.arrow"))
    lazy_shard = data / "measured" / raw_shard.name
    assert lazy_shard.stat().st_ino == raw_shard.stat().st_ino  # a link, not a copy
    manifest = LocalStore(str(data)).manifest(("measured",))
    assert [t["transform"] for t in manifest.transforms] == [
        "tests.transforms_for_tests:shout",
        "tests.transforms_for_tests:measure",
    ]
    assert manifest.source["path"] == str(data / "loud")
    assert manifest.source["version"] == LocalStore(str(data)).manifest(("loud",)).version
    plain = datasets.load_from_disk(str(data / "measured"))  # opens, without the transform
    assert plain[:] == raw[:]


def test_lazy_transform_runs_on_every_access(env):
    from ds_assets import lazy_transform_asset
    from ds_assets.storage import LocalStore
    from tests.transforms_for_tests import jitter

    raw = Dataset.from_dict({"x": [0.0] * 20})
    run(env, source("raw", raw),
        lazy_transform_asset("noisy", "raw", jitter, transform_kwargs={"scale": 5.0}))  # fmt: skip
    loaded = LocalStore(str(env[2])).load(("noisy",))
    first, second = loaded[:]["noisy"], loaded[:]["noisy"]
    assert first != second and all(-5 <= v <= 5 for v in first)


def test_lazy_transform_refuses_a_lambda():
    from ds_assets import lazy_transform_asset
    from ds_assets.ops.lazy import LazyTransformError

    with pytest.raises(LazyTransformError, match="has no import path"):
        lazy_transform_asset("l", "raw", lambda batch: batch)
    with pytest.raises(LazyTransformError, match="does not import"):
        lazy_transform_asset("l", "raw", "tests.transforms_for_tests:missing")


def test_partitioned_transform_follows_its_upstream_partition(env):
    from dagster import AssetExecutionContext, StaticPartitionsDefinition

    parts = StaticPartitionsDefinition(["x", "y"])

    @asset(partitions_def=parts)
    def raw(context: AssetExecutionContext) -> Dataset:
        return labelled(3 if context.partition_key == "x" else 5)

    doubled = map_asset("doubled", raw, lambda r: {"id": r["id"] * 2}, partitions_def=parts)
    instance, io_manager, data = env
    for key in ("x", "y"):
        result = materialize([raw, doubled], partition_key=key, instance=instance,
                             resources={"io_manager": io_manager})  # fmt: skip
        assert result.success
    assert datasets.load_from_disk(str(data / "doubled" / "y"))["id"][:] == [0, 2, 4, 6, 8]


def test_streams_with_their_columns_in_another_order_concatenate(env):
    first = Dataset.from_dict({"x": [1, 2], "y": ["a", "b"]})
    second = Dataset.from_dict({"y": ["c"], "x": [3]})
    run(env, source("first", first.to_iterable_dataset()),
        source("second", second.to_iterable_dataset()),
        concatenate_asset("both", ["first", "second"]))  # fmt: skip
    assert stored(env, "both")[:] == datasets.concatenate_datasets([first, second])[:]


def test_concatenate_streams_equals_datasets(env):
    first, second = labelled(700), labelled(300, offset=1_000)
    run(env, source("first", first.to_iterable_dataset(num_shards=2)),
        source("second", second.to_iterable_dataset()),
        concatenate_asset("both", ["first", "second"]))  # fmt: skip
    expected = datasets.concatenate_datasets(
        [first.to_iterable_dataset(num_shards=2), second.to_iterable_dataset()]
    )
    assert stored(env, "both")["id"][:] == [r["id"] for r in expected]


def test_every_factory_passes_the_usual_asset_options():
    from dagster import AutomationCondition, StaticPartitionsDefinition

    from ds_assets import lazy_transform_asset
    from tests.transforms_for_tests import shout

    partitions = StaticPartitionsDefinition(["a"])
    options = dict(
        key_prefix=["team"], group_name="curated", description="in my words", tags={"tier": "1"},
        owners=["team:ml"], partitions_def=partitions,
        automation_condition=AutomationCondition.eager(),
    )  # fmt: skip
    definitions = [
        split_assets("s", "raw", **options),
        map_asset("m", "raw", lambda row: row, **options),
        filter_asset("f", "raw", lambda row: True, **options),
        interleave_asset("i", ["a", "b"], **options),
        concatenate_asset("c", ["a", "b"], **options),
        repeat_asset("r", "raw", 2, **options),
        lazy_transform_asset("l", "raw", shout, **options),
    ]
    specs = [spec for definition in definitions for spec in definition.specs]
    assert len(specs) == 8
    for spec in specs:
        assert spec.key.path[0] == "team"
        assert spec.group_name == "curated" and spec.description.startswith("in my words")
        assert spec.tags["tier"] == "1" and spec.owners == ["team:ml"]
        assert spec.partitions_def == partitions and spec.automation_condition is not None
    assert all(dep.asset_key.path[0] != "team" for spec in specs for dep in spec.deps)


def test_dict_inputs_with_the_same_splits_in_another_order_combine(env):
    a = DatasetDict({"train": labelled(3), "test": labelled(2, offset=10)})
    b = DatasetDict({"test": labelled(1, offset=20), "train": labelled(2, offset=30)})
    run(env, source("a", a), source("b", b), concatenate_asset("ab", ["a", "b"]))
    both = stored(env, "ab")
    assert list(both) == ["train", "test"]  # the first input's order
    assert both["train"]["id"] == [0, 1, 2, 30, 31] and both["test"]["id"] == [10, 11, 20]
