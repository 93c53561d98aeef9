"""Index assets in real Dagster runs: built from a stored dataset, stored as a bundle, loaded
back as a ready search object whose rows come from the indexed dataset version."""

import numpy as np
import pytest
from dagster import (
    AssetExecutionContext,
    DynamicPartitionsDefinition,
    StaticPartitionsDefinition,
    asset,
    materialize,
)
from datasets import Dataset

from ds_assets.assets.indexes import (
    elasticsearch_index_asset,
    faiss_index_asset,
    fulltext_index_asset,
    qdrant_index_asset,
)
from ds_assets.index.base import SearchIndex
from resources import DatasetIOManager
from tests.es_server import elasticsearch_server  # noqa: F401 - the session fixture

EMBED = "ds_assets.index.embedders:hashing_embedder"
TEXTS = ["the quick brown fox", "a lazy dog sleeps", "brown bears eat honey", "quick thinking"]


@pytest.fixture
def resources(tmp_path):
    return {"io_manager": DatasetIOManager(base_dir=str(tmp_path / "data"))}


def docs_asset(texts):
    @asset(name="docs")
    def docs() -> Dataset:
        vectors = np.random.default_rng(0).normal(size=(len(texts), 8)).astype("float32")
        return Dataset.from_dict({"text": list(texts), "vector": vectors.tolist()})

    return docs


def metadata_of(instance, name):
    from dagster import AssetKey

    event = instance.get_latest_materialization_event(AssetKey(name))
    return {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}


def test_faiss_index_asset_stores_and_loads_a_ready_search(instance, resources):
    docs = docs_asset(TEXTS)
    by_vector = faiss_index_asset("docs_vectors", docs, "vector", metric="l2")
    by_text = faiss_index_asset("docs_semantic", docs, "text", embed=EMBED, metric="cosine")
    seen = {}

    @asset
    def probe(docs_vectors: SearchIndex, docs_semantic: SearchIndex, docs: Dataset) -> None:
        vectors = np.asarray(docs["vector"][:], dtype="float32")
        distances = ((vectors - vectors[2]) ** 2).sum(axis=1)
        seen["vector"] = docs_vectors.search(vectors[2].tolist(), k=2)[1]
        seen["brute_force"] = np.argsort(distances)[:2].tolist()
        seen["text"] = docs_semantic.nearest_examples("honey bears", k=1)[1]["text"]

    assert materialize([docs, by_vector, by_text, probe], resources=resources,
                       instance=instance).success  # fmt: skip
    assert seen["vector"] == seen["brute_force"]
    assert seen["text"] == ["brown bears eat honey"]
    metadata = metadata_of(instance, "docs_semantic")
    assert metadata["engine"] == "faiss" and metadata["count"] == 4
    assert metadata["dimension"] == 64 and metadata["metric"] == "cosine"
    assert metadata["dataset_version"] and metadata["build_seconds"] >= 0
    assert "| 1 |" in metadata["sample_query"]


def test_nearest_examples_read_the_indexed_version_after_the_dataset_moves_on(instance, resources):
    index = fulltext_index_asset("docs_text", "docs", ["text"])
    assert materialize([docs_asset(TEXTS), index], resources=resources, instance=instance).success
    newer = docs_asset(["something else entirely"] * 3)
    assert materialize([newer], resources=resources, instance=instance).success
    seen = {}

    @asset
    def probe(docs_text: SearchIndex) -> None:
        scores, rows = docs_text.nearest_examples('"lazy dog"', k=1)
        seen["rows"] = rows["text"]

    assert materialize([newer, index, probe], resources=resources, instance=instance,
                       selection=[probe]).success  # fmt: skip
    assert seen["rows"] == ["a lazy dog sleeps"]  # from the version that was indexed


def test_index_of_a_partitioned_dataset_covers_every_partition(instance, resources):
    days = StaticPartitionsDefinition(["d1", "d2"])

    @asset(partitions_def=days)
    def notes(context: AssetExecutionContext) -> Dataset:
        texts = {"d1": ["apples and pears"], "d2": ["pears only", "plums"]}
        return Dataset.from_dict({"text": texts[context.partition_key]})

    index = fulltext_index_asset("notes_text", notes, ["text"])
    for day in ("d1", "d2"):
        assert materialize([notes], resources=resources, instance=instance,
                           partition_key=day).success  # fmt: skip
    seen = {}

    @asset
    def probe(notes_text: SearchIndex) -> None:
        seen["count"] = notes_text.count()
        seen["pears"] = sorted(notes_text.nearest_examples("pears", k=5)[1]["text"])

    assert materialize([notes, index, probe], resources=resources, instance=instance,
                       selection=[index, probe]).success  # fmt: skip
    assert seen == {"count": 3, "pears": ["apples and pears", "pears only"]}


def test_qdrant_index_asset_swaps_the_alias(instance, resources, tmp_path):
    from resources.qdrant import QdrantResource

    qdrant = QdrantResource(path=str(tmp_path / "qdrant"))
    index = qdrant_index_asset("docs_qdrant", "docs", collection="docs", column="text",
                               embed=EMBED)  # fmt: skip
    assert index.op.pool == "ds_assets_index/qdrant/docs"  # two builds never move one alias
    everything = {**resources, "qdrant": qdrant}
    for texts in (TEXTS, TEXTS[:2]):
        assert materialize([docs_asset(texts), index], resources=everything,
                           instance=instance).success  # fmt: skip
    client = qdrant.get_client()
    physical = [c.name for c in client.get_collections().collections]
    assert len(physical) == 1 and physical[0].startswith("docs__")  # the old one is gone
    assert client.count("docs").count == 2
    metadata = metadata_of(instance, "docs_qdrant")
    assert metadata["alias"] == "docs" and metadata["physical"] == physical[0]


def test_elasticsearch_index_asset_swaps_and_loads(instance, resources, elasticsearch_server):  # noqa: F811
    from resources import ElasticsearchResource

    name = elasticsearch_server.unique_name("docs")
    es = ElasticsearchResource(hosts=[elasticsearch_server.url])
    index = elasticsearch_index_asset("docs_es", "docs", index=name, text_columns=["text"])
    everything = {**resources, "elasticsearch": es}
    seen = {}

    @asset
    def probe(docs_es: SearchIndex) -> None:
        seen["rows"] = docs_es.nearest_examples("lazy dog", k=1)[1]["text"]

    for texts in (TEXTS[:2], TEXTS):
        assert materialize([docs_asset(texts), index, probe], resources=everything,
                           instance=instance).success  # fmt: skip
    assert seen["rows"] == ["a lazy dog sleeps"]
    metadata = metadata_of(instance, "docs_es")
    assert metadata["engine"] == "elasticsearch" and metadata["count"] == 4
    assert metadata["alias"] == name and metadata["physical"].startswith(name + "__")
    physical = sorted(es.get_client().indices.get_alias(name=name))
    assert physical == [metadata["physical"]]  # one index behind the alias, the old one gone


NOTES = {
    "b": ["apples and pears", "plums in june"],
    "c": ["pears only"],
    "a": ["cherries late in july", "pears and cherries"],
}


def dynamic_notes(texts):
    """A dataset asset with one dynamic partition per key of `texts` (its rows' texts)."""
    days = DynamicPartitionsDefinition(name="days")

    @asset(partitions_def=days)
    def notes(context: AssetExecutionContext) -> Dataset:
        return Dataset.from_dict({"text": texts[context.partition_key]})

    return notes


def materialize_days(notes, days, instance, resources):
    instance.add_dynamic_partitions("days", list(days))
    for day in days:
        assert materialize([notes], resources=resources, instance=instance,
                           partition_key=day).success  # fmt: skip


def test_incremental_qdrant_index_adds_new_partitions_in_place(instance, resources, tmp_path):
    from ds_assets.index.stored import open_stored
    from ds_assets.storage import LocalStore
    from resources.qdrant import QdrantResource

    texts = {day: list(rows) for day, rows in NOTES.items()}
    notes = dynamic_notes(texts)
    qdrant = QdrantResource(path=str(tmp_path / "qdrant"))
    index = qdrant_index_asset("notes_qdrant", notes, collection="notes", column="text",
                               embed=EMBED, incremental=True)  # fmt: skip
    everything = {**resources, "qdrant": qdrant}
    store = LocalStore(str(tmp_path / "data"))

    def index_now():
        assert materialize([notes, index], resources=everything, instance=instance,
                           selection=[index]).success  # fmt: skip
        return metadata_of(instance, "notes_qdrant")

    materialize_days(notes, ["b", "c"], instance, everything)
    first = index_now()  # nothing stored yet: a full build
    assert first["count"] == 3 and "appended" not in first["index"]

    def stored_reader():
        manifest, folder, dataset = store.load_bundle(("notes_qdrant",))
        return open_stored(manifest.index, folder, dataset)

    old_reader = stored_reader()

    materialize_days(notes, ["a"], instance, everything)
    second = index_now()
    assert second["physical"] == first["physical"]  # the same live collection, grown
    assert second["count"] == 5 and second["index"]["appended"] == ["a"]
    manifest, folder, dataset = store.load_bundle(("notes_qdrant",))
    assert dataset["text"] == NOTES["b"] + NOTES["c"] + NOTES["a"]  # rows in the order indexed
    reader = open_stored(manifest.index, folder, dataset)
    assert reader.nearest_examples("cherries late in july", k=1)[1]["text"] == [NOTES["a"][0]]
    assert reader.count() == 5
    assert old_reader.count() == 3  # a reader of the previous version sees only its rows
    assert all(row < 3 for row in old_reader.search("cherries late in july", k=5)[1])

    third = index_now()  # nothing new: the same collection, nothing added
    assert third["physical"] == first["physical"] and third["count"] == 5

    texts["c"] = ["pears only, and figs"]
    materialize_days(notes, ["c"], instance, everything)  # an indexed partition changes
    fourth = index_now()
    assert fourth["physical"] != first["physical"] and fourth["count"] == 5  # built again
    rows = stored_reader().nearest_examples("figs", k=1)[1]
    assert rows["text"] == ["pears only, and figs"]


def test_incremental_index_builds_from_scratch_when_appending_would_be_wrong(
    instance, resources, tmp_path
):
    from ds_assets.index import qdrant as qdrant_index
    from resources.qdrant import QdrantResource

    notes = dynamic_notes({day: list(rows) for day, rows in NOTES.items()})
    qdrant = QdrantResource(path=str(tmp_path / "qdrant"))
    everything = {**resources, "qdrant": qdrant}

    def index_asset(**options):
        return qdrant_index_asset("notes_qdrant", notes, collection="notes", column="text",
                                  embed=EMBED, incremental=True, **options)  # fmt: skip

    def index_now(index, tags=None):
        assert materialize([notes, index], resources=everything, instance=instance,
                           selection=[index], tags=tags).success  # fmt: skip
        return metadata_of(instance, "notes_qdrant")

    def why_rebuilt() -> str:
        logs = instance.all_logs(instance.get_runs(limit=1)[0].run_id)
        said = [event.user_message or "" for event in logs]
        return next((message for message in said if "building from scratch" in message), "")

    index = index_asset()
    assert index.op.pool == "ds_assets_index/qdrant/notes"  # appends to one index: one at a time
    materialize_days(notes, ["b", "c"], instance, everything)
    built = index_now(index)

    appended = index_now(index, tags={"ds_assets/rebuild": "true"})  # asked for
    assert appended["physical"] != built["physical"] and "appended" not in appended["index"]
    assert "the run has the tag ds_assets/rebuild" in why_rebuilt()

    other = index_now(index_asset(payload_columns=["text"]))  # other arguments
    assert other["physical"] != appended["physical"] and other["count"] == 3
    assert "built with other payload_columns" in why_rebuilt()

    client = qdrant.get_client()  # the alias moved by another build
    dataset = Dataset.from_dict({"text": ["elsewhere"]})
    qdrant_index.build(client, dataset, "notes", column="text", embed=EMBED, version="other")
    moved = index_now(index_asset(payload_columns=["text"]))
    assert moved["physical"] not in (other["physical"], "notes__other") and moved["count"] == 3
    assert f"points at 'notes__other', not at '{other['physical']}'" in why_rebuilt()

    instance.delete_dynamic_partition("days", "c")  # a partition indexed is gone
    gone = index_now(index_asset(payload_columns=["text"]))
    assert gone["physical"] != moved["physical"] and gone["count"] == 2
    assert "is no longer a partition of the input" in why_rebuilt()


def test_incremental_elasticsearch_index_fails_whole_and_appends_once_fixed(
    instance,
    resources,
    elasticsearch_server,  # noqa: F811
):
    from resources import ElasticsearchResource

    name = elasticsearch_server.unique_name("notes")
    es = ElasticsearchResource(hosts=[elasticsearch_server.url])
    codes = {"b": ["1", "2"], "c": ["3"], "a": [str(n) for n in range(30)]}
    codes["a"][25] = "x25"  # the mappings make `code` a long: Elasticsearch rejects this row
    days = DynamicPartitionsDefinition(name="days")

    @asset(partitions_def=days)
    def notes(context: AssetExecutionContext) -> Dataset:
        day_codes = codes[context.partition_key]
        texts = [f"note {code} of {context.partition_key}" for code in day_codes]
        return Dataset.from_dict({"text": texts, "code": day_codes})

    mappings = {"properties": {"text": {"type": "text"}, "code": {"type": "long"}}}
    index = elasticsearch_index_asset("notes_es", notes, index=name, text_columns=["text"],
                                      mappings=mappings, incremental=True)  # fmt: skip
    everything = {**resources, "elasticsearch": es}
    client = es.get_client()

    def index_now():
        return materialize([notes, index], resources=everything, instance=instance,
                           selection=[index], raise_on_error=False).success  # fmt: skip

    materialize_days(notes, ["b", "c"], instance, everything)
    assert index_now()
    first = metadata_of(instance, "notes_es")
    materialize_days(notes, ["a"], instance, everything)
    assert not index_now()  # a rejected document fails the run
    assert metadata_of(instance, "notes_es")["version"] == first["version"]  # nothing stored
    assert sorted(client.indices.get_alias(name=name).body) == [first["physical"]]
    assert client.count(index=name)["count"] == 3  # what the failed append added is gone

    codes["a"][25] = "25"
    materialize_days(notes, ["a"], instance, everything)
    assert index_now()
    second = metadata_of(instance, "notes_es")
    assert second["physical"] == first["physical"] and second["count"] == 33
    assert second["index"]["appended"] == ["a"]


def test_index_bundle_on_s3_loads_through_the_cache(instance, seaweedfs, s3_bucket):
    from dagster_aws.s3 import S3Resource

    from resources import S3DatasetIOManager

    s3 = S3Resource(
        endpoint_url=seaweedfs.endpoint, aws_access_key_id=seaweedfs.access_key,
        aws_secret_access_key=seaweedfs.secret_key, region_name="us-east-1",
    )  # fmt: skip
    manager = S3DatasetIOManager(s3_resource=s3, s3_bucket=s3_bucket, s3_prefix="p")
    index = fulltext_index_asset("docs_text", "docs", ["text"])
    seen = {}

    @asset
    def probe(docs_text: SearchIndex) -> None:
        seen["rows"] = docs_text.nearest_examples("bears", k=1)[1]["text"]

    assert materialize([docs_asset(TEXTS), index, probe], resources={"io_manager": manager},
                       instance=instance).success  # fmt: skip
    assert seen["rows"] == ["brown bears eat honey"]
    listing = s3.get_client().list_objects_v2(Bucket=s3_bucket, Prefix="p/docs_text/")
    keys = [item["Key"] for item in listing["Contents"]]
    assert any("/index/" in key for key in keys)
    assert not any(key.endswith(".arrow") for key in keys)  # the dataset is linked, not copied
