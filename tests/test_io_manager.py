"""The IO managers in real Dagster runs: materialize() on a DagsterInstance on disk."""

from typing import Any

import datasets
import pytest
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetOut,
    BackfillPolicy,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    StaticPartitionsDefinition,
    TableSchema,
    asset,
    materialize,
    multi_asset,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from dagster_aws.s3 import S3Resource
from datasets import Dataset, DatasetDict, IterableDataset, Value

from resources import DatasetIOManager, DatasetTypeError, S3DatasetIOManager
from tests.datasets_factory import rich_dataset, table_dataset


@pytest.fixture
def io_manager(tmp_path):
    return DatasetIOManager(base_dir=str(tmp_path / "data"))


def run(assets, io_manager, instance, **kwargs):
    return materialize(assets, resources={"io_manager": io_manager}, instance=instance, **kwargs)


def materialization(instance, key):
    event = instance.get_latest_materialization_event(AssetKey(key))
    return event.asset_materialization


@asset
def source() -> Dataset:
    return rich_dataset(8)


def test_dataset_roundtrip_and_annotations(io_manager, instance, tmp_path):
    seen = {}

    @asset
    def as_dataset(source: Dataset) -> Dataset:
        seen["dataset"] = source
        return source.filter(lambda row: row["id"] % 2 == 0)

    @asset
    def as_stream(source: IterableDataset) -> IterableDataset:
        seen["stream"] = source
        return source.map(lambda row: {"double": row["id"] * 2})

    @asset
    def unannotated(source, as_stream):
        seen["plain"], seen["stored_stream"] = source, as_stream
        return source

    result = run([source, as_dataset, as_stream, unannotated], io_manager, instance)
    assert result.success
    assert isinstance(seen["dataset"], Dataset) and isinstance(seen["stream"], IterableDataset)
    assert isinstance(seen["plain"], Dataset)
    assert isinstance(seen["stored_stream"], IterableDataset)  # what was stored
    on_disk = datasets.load_from_disk(str(tmp_path / "data" / "as_dataset"))
    assert on_disk["id"][:] == [0, 2, 4, 6] and on_disk.features == rich_dataset(1).features
    assert [r["double"] for r in seen["stored_stream"]] == [2 * i for i in range(8)]
    assert seen["stored_stream"].features == {**rich_dataset(1).features, "double": Value("int64")}


def test_materialization_metadata(io_manager, instance, tmp_path):
    run([source], io_manager, instance)
    metadata = materialization(instance, "source").metadata
    assert metadata["dagster/row_count"].value == 8
    schema = metadata["dagster/column_schema"].value
    assert isinstance(schema, TableSchema)
    assert [c.name for c in schema.columns] == list(rich_dataset(1).features)
    assert {c.name: c.type for c in schema.columns}["label"] == "ClassLabel[2]"
    assert metadata["num_shards"].value == 1 and metadata["num_bytes"].value > 0
    assert metadata["dagster/uri"].value == str(tmp_path / "data" / "source")
    assert metadata["features"].value["label"]["names"] == ["neg", "pos"]
    preview = metadata["preview"].value
    assert preview.splitlines()[0].startswith("| id | text | label")
    assert "bytes" in preview and len(preview.splitlines()) == 2 + 5


def test_dataset_dict_output_and_input(io_manager, instance, tmp_path):
    @asset
    def splits() -> DatasetDict:
        return DatasetDict(train=table_dataset(6), test=table_dataset(2))

    @asset
    def lengths(splits: DatasetDict) -> DatasetDict:
        assert list(splits) == ["train", "test"]
        return splits.map(lambda row: {"n": len(row["text"])})

    assert run([splits, lengths], io_manager, instance).success
    loaded = datasets.load_from_disk(str(tmp_path / "data" / "lengths"))
    assert {k: len(v) for k, v in loaded.items()} == {"train": 6, "test": 2}
    assert materialization(instance, "splits").metadata["splits"].value == {"train": 6, "test": 2}


def test_split_assets_maintain_dataset_dict_json(io_manager, instance, tmp_path):
    @multi_asset(
        outs={"train": AssetOut(key=["mnist", "train"]), "test": AssetOut(key=["mnist", "test"])}
    )
    def mnist_splits():
        whole = table_dataset(10).train_test_split(test_size=0.3, seed=0)
        return whole["train"], whole["test"]

    assert run([mnist_splits], io_manager, instance).success
    loaded = datasets.load_from_disk(str(tmp_path / "data" / "mnist"))
    assert isinstance(loaded, DatasetDict)
    assert {k: len(v) for k, v in loaded.items()} == {"train": 7, "test": 3}


def test_split_marker_metadata(io_manager, instance, tmp_path):
    @multi_asset(
        outs={
            "a": AssetOut(key=["corpus", "part_a"], metadata={"ds_assets/split": True}),
            "b": AssetOut(key=["corpus", "part_b"], metadata={"ds_assets/split": True}),
        }
    )
    def parts():
        return table_dataset(2), table_dataset(3)

    assert run([parts], io_manager, instance).success
    loaded = datasets.load_from_disk(str(tmp_path / "data" / "corpus"))
    assert sorted(loaded) == ["part_a", "part_b"]


letters = StaticPartitionsDefinition(["a", "b", "c"])


@asset(partitions_def=letters)
def by_letter(context: AssetExecutionContext) -> Dataset:
    key = context.partition_key
    return Dataset.from_dict({"letter": [key] * (ord(key) - 96), "n": list(range(ord(key) - 96))})


def test_partitions_load_concatenated_or_as_dict(io_manager, instance, tmp_path):
    seen = {}

    @asset
    def joined(by_letter: Dataset) -> Dataset:
        seen["joined"] = by_letter
        return by_letter

    @asset
    def per_partition(by_letter: dict[str, Dataset]) -> Dataset:
        seen["dict"] = by_letter
        return by_letter["a"]

    for key in letters.get_partition_keys():
        assert run([by_letter], io_manager, instance, partition_key=key).success
    assert (tmp_path / "data" / "by_letter" / "b" / "state.json").exists()
    uri = materialization(instance, "by_letter").metadata["dagster/uri"].value
    assert uri == str(tmp_path / "data" / "by_letter" / "c")
    assert run([by_letter, joined, per_partition], io_manager, instance,
               selection=[joined, per_partition]).success  # fmt: skip
    assert seen["joined"]["letter"][:] == ["a", "b", "b", "c", "c", "c"]
    assert seen["joined"].cache_files  # memory-mapped, not copied into memory
    assert {k: len(v) for k, v in seen["dict"].items()} == {"a": 1, "b": 2, "c": 3}


def test_missing_partition_is_named(io_manager, instance):
    @asset
    def joined(by_letter: Dataset) -> Dataset:
        return by_letter

    run([by_letter], io_manager, instance, partition_key="a")
    with pytest.raises(FileNotFoundError, match="partition 'b' of asset by_letter"):
        run([by_letter, joined], io_manager, instance, selection=[joined])


def test_single_run_backfill_stores_one_version_per_partition(io_manager, instance, tmp_path):
    @asset(partitions_def=letters, backfill_policy=BackfillPolicy.single_run())
    def ranged(context: AssetExecutionContext) -> dict[str, Dataset]:
        return {key: table_dataset(ord(key) - 96) for key in context.partition_keys}

    tags = {ASSET_PARTITION_RANGE_START_TAG: "a", ASSET_PARTITION_RANGE_END_TAG: "c"}
    assert run([ranged], io_manager, instance, tags=tags).success
    for key in "abc":
        stored = datasets.load_from_disk(str(tmp_path / "data" / "ranged" / key))
        assert len(stored) == ord(key) - 96


def test_range_output_that_is_not_a_dict_is_refused(io_manager, instance):
    @asset(partitions_def=letters, backfill_policy=BackfillPolicy.single_run())
    def ranged() -> Dataset:
        return table_dataset(1)

    tags = {ASSET_PARTITION_RANGE_START_TAG: "a", ASSET_PARTITION_RANGE_END_TAG: "c"}
    with pytest.raises(DatasetTypeError, match="covers 3 partitions.*dict keyed by partition"):
        run([ranged], io_manager, instance, tags=tags)


def test_multi_partition_keys_become_nested_safe_folders(io_manager, instance, tmp_path):
    two_d = MultiPartitionsDefinition(
        {"date": StaticPartitionsDefinition(["2024-01-01"]),
         "source": StaticPartitionsDefinition(["web/crawl", "books"])}
    )  # fmt: skip

    @asset(partitions_def=two_d)
    def docs(context: AssetExecutionContext) -> Dataset:
        return table_dataset(2)

    key = MultiPartitionKey({"date": "2024-01-01", "source": "web/crawl"})
    assert run([docs], io_manager, instance, partition_key=str(key)).success
    assert (tmp_path / "data" / "docs" / "2024-01-01" / "web%2Fcrawl" / "state.json").exists()


def test_wrong_output_type_names_asset_and_types(io_manager, instance):
    @asset
    def not_a_dataset() -> list:
        return [1, 2, 3]

    with pytest.raises(DatasetTypeError, match=r"not_a_dataset returned a builtins.list.*Dataset"):
        run([not_a_dataset], io_manager, instance)


def test_unsupported_annotation_is_refused(io_manager, instance):
    @asset
    def wants_a_list(source: list) -> Dataset:
        return table_dataset(1)

    with pytest.raises(DatasetTypeError, match=r"annotated as typing.List.*dict\[str, Dataset\]"):
        run([source, wants_a_list], io_manager, instance)


def test_dict_kind_into_dataset_annotation_is_refused(io_manager, instance):
    @asset
    def pair() -> DatasetDict:
        return DatasetDict(train=table_dataset(1))

    @asset
    def single(pair: Dataset) -> Any:
        return None

    with pytest.raises(DatasetTypeError, match="holds a DatasetDict"):
        run([pair, single], io_manager, instance)


@pytest.fixture
def s3_manager(seaweedfs, s3_bucket):
    return S3DatasetIOManager(
        s3_resource=S3Resource(
            endpoint_url=seaweedfs.endpoint,
            aws_access_key_id=seaweedfs.access_key,
            aws_secret_access_key=seaweedfs.secret_key,
            region_name="us-east-1",
        ),
        s3_bucket=s3_bucket,
        s3_prefix="pipelines",
    )


def test_s3_io_manager(s3_manager, s3_bucket, instance):
    manager = s3_manager
    seen = {}

    @asset
    def downstream(source: Dataset, by_letter: dict[str, Dataset]) -> Dataset:
        seen["rows"] = source["id"][:]
        seen["letters"] = sorted(by_letter)
        return source.select([0])

    for key in letters.get_partition_keys():
        assert run([by_letter], manager, instance, partition_key=key).success
    assert run([source, by_letter, downstream], manager, instance,
               selection=[source, downstream]).success  # fmt: skip
    assert seen == {"rows": list(range(8)), "letters": ["a", "b", "c"]}
    uri = materialization(instance, "downstream").metadata["dagster/uri"].value
    assert uri == f"s3://{s3_bucket}/pipelines/downstream"


def test_range_output_missing_a_partition_is_refused(io_manager, instance):
    @asset(partitions_def=letters, backfill_policy=BackfillPolicy.single_run())
    def ranged(context: AssetExecutionContext) -> dict[str, Dataset]:
        return {"a": table_dataset(1)}

    tags = {ASSET_PARTITION_RANGE_START_TAG: "a", ASSET_PARTITION_RANGE_END_TAG: "c"}
    with pytest.raises(DatasetTypeError, match=r"no value for partitions \['b', 'c'\]"):
        run([ranged], io_manager, instance, tags=tags)


def test_s3_repeat_split_fan_out_and_lazy_transform_copy_no_data(s3_manager, instance):
    from ds_assets import lazy_transform_asset, repeat_asset, split_assets
    from tests.transforms_for_tests import shout

    @asset
    def pair() -> DatasetDict:
        return DatasetDict(
            train=Dataset.from_dict({"text": ["a", "b", "c"]}),
            test=Dataset.from_dict({"text": ["d"]}),
        )

    seen = {}

    @asset(ins={"doubled": AssetIn("doubled"), "loud": AssetIn("loud")})
    def probe(doubled: DatasetDict, loud: Dataset) -> Any:
        seen["doubled"] = {k: v["text"][:] for k, v in doubled.items()}
        seen["loud"] = loud[:]["loud"]

    doubled = repeat_asset("doubled", "pair", 2)
    splits = split_assets("ds", "pair", {"train": 1, "test": 1})
    loud = lazy_transform_asset("loud", ["ds", "train"], shout)
    assert run([pair, doubled, splits, loud, probe], s3_manager, instance).success
    assert seen == {"doubled": {"train": ["a", "b", "c"] * 2, "test": ["d", "d"]},
                    "loud": ["A", "B", "C"]}  # fmt: skip
    client = s3_manager.s3_resource.get_client()
    listing = client.list_objects_v2(Bucket=s3_manager.s3_bucket, Prefix="pipelines/")
    shards = [i["Key"] for i in listing["Contents"] if i["Key"].endswith(".arrow")]
    assert shards and all(key.startswith("pipelines/pair/") for key in shards)
    for name in ("doubled", "loud"):
        assert materialization(instance, name).metadata["num_bytes"].value == 0


def test_partitioned_lazy_transform_and_repeat_link_each_partition(io_manager, instance):
    from ds_assets import lazy_transform_asset, repeat_asset
    from tests.transforms_for_tests import shout

    @asset(partitions_def=letters)
    def texts(context: AssetExecutionContext) -> Dataset:
        return Dataset.from_dict({"text": [context.partition_key] * 2})

    loud = lazy_transform_asset("loud", "texts", shout, partitions_def=letters)
    twice = repeat_asset("twice", "loud", 2, partitions_def=letters)
    seen = {}

    @asset(partitions_def=letters)
    def probe(twice: Dataset) -> None:
        seen.setdefault("loud", []).append(twice[:]["loud"])

    for key in ("a", "b"):
        assert run([texts, loud, twice, probe], io_manager, instance, partition_key=key).success
    assert seen["loud"] == [["A"] * 4, ["B"] * 4]
    assert materialization(instance, "twice").metadata["dagster/row_count"].value == 4


def test_lazy_transform_of_an_unpartitioned_upstream_per_partition(io_manager, instance):
    from ds_assets import lazy_transform_asset
    from tests.transforms_for_tests import shout

    @asset
    def texts() -> Dataset:
        return Dataset.from_dict({"text": ["x"]})

    loud = lazy_transform_asset("loud", "texts", shout, partitions_def=letters)

    @asset(partitions_def=letters)
    def probe(loud: Dataset) -> None:
        assert loud[:]["loud"] == ["X"]

    assert run([texts], io_manager, instance).success
    assert run([texts, loud, probe], io_manager, instance, partition_key="c",
               selection=[loud, probe]).success  # fmt: skip
