"""An index and the rows it returns always come from one stored version, whatever saves land
meanwhile: while the input is read, while the bundle is linked, while a reader opens it, and
for as long as a reader stays open. Real stores, real tantivy and FAISS indexes."""

import os
import shutil
import tempfile
import threading
import time

import pytest
from dagster import asset, materialize
from datasets import Dataset, IterableDataset

import ds_assets.storage.local as local_store
from ds_assets.assets.indexes import fulltext_index_asset
from ds_assets.index import faiss, fulltext
from ds_assets.index.base import SearchIndex, SearchIndexError
from ds_assets.index.stored import FAISS_FILE, open_stored
from ds_assets.storage import LocalStore
from ds_assets.storage.base import StaleVersionError
from resources import DatasetIOManager
from tests.es_server import elasticsearch_server  # noqa: F401 - the session fixture


def save_fulltext_bundle(store, texts, key=("docs_text",)):
    """Store `texts` as `docs`, then a tantivy index of them as the bundle `key`."""
    store.save(("docs",), Dataset.from_dict({"text": texts}))
    folder = os.path.join(tempfile.mkdtemp(), "index")
    built = fulltext.build(store.load(("docs",)), "text", folder)
    versions = [store.manifest(("docs",)).version]
    store.save_bundle(key, folder, ("docs",), built.describe(), versions=versions)


def open_index(store, key=("docs_text",)):
    return store.open_bundle(
        key, lambda manifest, folder, ds: open_stored(manifest.index, folder, ds)
    )


def test_an_open_fulltext_index_keeps_its_version_after_a_new_one_is_stored(tmp_path):
    store = LocalStore(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"))
    save_fulltext_bundle(store, ["apple pie", "banana split"])
    reader = open_index(store)
    save_fulltext_bundle(store, ["banana bread", "cherry tart"])  # same row count
    newer = open_index(store)
    time.sleep(1.5)  # tantivy's default reader reloads the folder it watches within 0.5 s
    assert newer.nearest_examples("cherry", k=1)[1]["text"] == ["cherry tart"]
    assert reader.search("cherry") == ([], [])
    assert reader.nearest_examples("apple", k=1)[1]["text"] == ["apple pie"]


def test_opening_a_bundle_while_it_is_stored_again_never_pairs_two_versions(tmp_path):
    store = LocalStore(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"))
    first = Dataset.from_dict({"text": ["apple", "banana"], "v": [[1.0, 0.0], [0.0, 1.0]]})
    second = Dataset.from_dict(  # another row count: a swapped folder fails the opener's check
        {"text": ["cherry", "date", "elder"], "v": [[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]]}
    )

    def save(dataset):
        store.save(("docs",), dataset)
        loaded = store.load(("docs",))
        folder = tempfile.mkdtemp()
        built = faiss.build(loaded, "v")
        built.save(os.path.join(folder, FAISS_FILE))
        versions = [store.manifest(("docs",)).version]
        store.save_bundle(("docs_vectors",), folder, ("docs",), built.describe(), versions=versions)
        shutil.rmtree(folder)

    save(first)
    stop = threading.Event()

    def writer():
        while not stop.is_set():
            save(second)
            save(first)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        answers = []
        for _ in range(150):
            index = open_index(store, ("docs_vectors",))
            answers.append(index.nearest_examples([1.0, 0.0], k=1)[1]["v"][0])
    finally:
        stop.set()
        thread.join()
    # the row found nearest to [1, 0] is that vector in whichever version was opened
    assert answers == [[1.0, 0.0]] * len(answers)


def test_a_save_of_the_upstream_while_the_bundle_is_linked_fails_the_bundle(tmp_path, monkeypatch):
    store = LocalStore(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"))
    save_fulltext_bundle(store, ["apple pie", "banana split"])
    stored = store.manifest(("docs_text",)).version
    link_tree = local_store._link_tree

    def link_then_save(source, target, repeat=1):  # another run commits `docs` right now
        link_tree(source, target, repeat)
        store.save(("docs",), Dataset.from_dict({"text": ["zebra crossing", "yak milk"]}))

    monkeypatch.setattr(local_store, "_link_tree", link_then_save)
    with pytest.raises(StaleVersionError, match="stored again while the index was being saved"):
        save_fulltext_bundle(store, ["apple pie", "cherry tart"])
    assert store.manifest(("docs_text",)).version == stored  # the previous bundle stays


@pytest.mark.parametrize("store", ["local", "s3"], indirect=True)
def test_a_save_of_the_upstream_after_its_version_was_checked_fails_the_bundle(store, monkeypatch):
    save_fulltext_bundle(store, ["apple pie", "banana split"])
    stored = store.manifest(("docs_text",)).version
    save_bundle = type(store)._save_bundle

    def save_then_link(self, *args):  # another run commits `docs` right after the check
        self.save(("docs",), Dataset.from_dict({"text": ["zebra crossing", "yak milk"]}))
        return save_bundle(self, *args)

    monkeypatch.setattr(type(store), "_save_bundle", save_then_link)
    with pytest.raises(StaleVersionError, match="stored again while the index was being saved"):
        save_fulltext_bundle(store, ["apple pie", "cherry tart"])
    monkeypatch.undo()
    assert store.manifest(("docs_text",)).version == stored  # the previous bundle stays
    assert open_index(store).nearest_examples("apple", k=1)[1]["text"] == ["apple pie"]


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs a second file system")
def test_a_bundle_on_another_file_system_keeps_its_rows_when_the_upstream_moves_on(tmp_path):
    root = tmp_path / "data"
    elsewhere = tempfile.mkdtemp(dir="/dev/shm")  # tmpfs: hard links into it fail
    try:
        root.mkdir()
        os.symlink(elsewhere, root / "indexes")
        store = LocalStore(str(root), cache_dir=str(tmp_path / "cache"))
        save_fulltext_bundle(store, ["apple pie", "banana split"], key=("indexes", "docs_text"))
        store.save(("docs",), Dataset.from_dict({"text": ["zebra", "yak", "cat"]}))
        reader = open_index(store, ("indexes", "docs_text"))
        assert reader.nearest_examples("apple", k=1)[1]["text"] == ["apple pie"]
    finally:
        shutil.rmtree(elsewhere)


class SaveAfterLoadIOManager(DatasetIOManager):
    """Lets another run commit `docs` right after Dagster loaded it as the index's input."""

    def load_input(self, context):
        value = super().load_input(context)
        if context.asset_key.path == ["docs"] and context.dagster_type.typing_type is Dataset:
            newer = Dataset.from_dict({"text": ["zebra crossing", "yak milk"]})
            self.store().save(("docs",), newer)
        return value


def test_an_upstream_saved_after_the_input_was_loaded_is_the_version_indexed(tmp_path):
    @asset
    def docs() -> Dataset:
        return Dataset.from_dict({"text": ["apple pie", "banana split"]})

    index = fulltext_index_asset("docs_text", "docs", ["text"])
    base = str(tmp_path / "data")
    assert materialize([docs], resources={"io_manager": DatasetIOManager(base_dir=base)}).success
    racing = {"io_manager": SaveAfterLoadIOManager(base_dir=base)}
    assert materialize([docs, index], selection=[index], resources=racing).success
    seen = {}

    @asset
    def probe(docs_text: SearchIndex) -> None:
        seen["zebra"] = docs_text.nearest_examples("zebra", k=1)[1]["text"]
        seen["apple"] = docs_text.search("apple")

    plain = {"io_manager": DatasetIOManager(base_dir=base)}
    assert materialize([docs, index, probe], selection=[probe], resources=plain).success
    assert seen == {"zebra": ["zebra crossing"], "apple": ([], [])}


@pytest.mark.parametrize(
    "first_row",
    ["Note: call back", '"Hello world', "AND then", "price: $5", ["red apple", "fruit"]],
)
def test_fulltext_index_asset_takes_any_first_row_as_its_sample_query(tmp_path, first_row):
    @asset
    def docs() -> Dataset:
        other = ["another row"] if isinstance(first_row, list) else "another row"
        return Dataset.from_dict({"text": [first_row, other]})

    index = fulltext_index_asset("docs_text", docs, ["text"])
    result = materialize(
        [docs, index], resources={"io_manager": DatasetIOManager(base_dir=str(tmp_path))}
    )
    assert result.success
    sample = result.asset_materializations_for_node("docs_text")[0].metadata["sample_query"]
    assert "| 1 |" in sample.value  # the first row's own words find it


def test_an_index_over_a_stored_stream_is_stored_and_opens(tmp_path):
    @asset
    def docs() -> IterableDataset:
        return Dataset.from_dict({"text": ["apple pie", "banana split"]}).to_iterable_dataset()

    index = fulltext_index_asset("docs_text", docs, ["text"])
    store_dir = str(tmp_path / "data")
    resources = {"io_manager": DatasetIOManager(base_dir=store_dir)}
    assert materialize([docs, index], resources=resources).success
    reader = open_index(LocalStore(store_dir, cache_dir=str(tmp_path / "cache")))
    assert reader.nearest_examples("banana", k=1)[1]["text"] == ["banana split"]


EMBED = "ds_assets.index.embedders:hashing_embedder"


def notes_asset(texts):
    @asset(name="notes")
    def notes() -> Dataset:
        return Dataset.from_dict({"text": list(texts)})

    return notes


def test_a_qdrant_reader_queries_the_collection_it_opened_not_the_moved_alias(
    tmp_path, monkeypatch
):
    from ds_assets.assets.indexes import qdrant_index_asset
    from resources.qdrant import QdrantResource

    monkeypatch.chdir(tmp_path)  # the resource's folder is relative, as in the demo
    resources = {
        "io_manager": DatasetIOManager(base_dir=str(tmp_path / "data")),
        "qdrant": QdrantResource(path="./qdrant"),
    }
    index = qdrant_index_asset("notes_qdrant", "notes", collection="notes", column="text",
                               embed=EMBED)  # fmt: skip
    store = LocalStore(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"))
    assert materialize(
        [notes_asset(["east wind", "north star"]), index], resources=resources
    ).success
    assert store.manifest(("notes_qdrant",)).index["path"] == str(tmp_path / "qdrant")
    reader = open_index(store, ("notes_qdrant",))
    assert reader.nearest_examples("east wind", k=1)[1]["text"] == ["east wind"]
    rebuilt = notes_asset(["north star", "east wind"])  # the same rows, reordered
    assert materialize([rebuilt, index], resources=resources).success
    with pytest.raises(SearchIndexError, match=r"collection or alias 'notes__\w+.*' not found"):
        reader.nearest_examples("east wind", k=1)  # never row 0 of its own dataset
    monkeypatch.chdir("/")  # a reader elsewhere finds the same local folder
    assert open_index(store, ("notes_qdrant",)).nearest_examples("east wind", k=1)[1]["text"] == [
        "east wind"
    ]


def test_an_elasticsearch_reader_keeps_the_resource_tls_settings(tmp_path, elasticsearch_server):  # noqa: F811
    from ds_assets.assets.indexes import elasticsearch_index_asset
    from resources import ElasticsearchResource

    name = elasticsearch_server.unique_name("notes")
    es = ElasticsearchResource(hosts=[elasticsearch_server.url], verify_certs=False,
                               request_timeout=123.0)  # fmt: skip
    resources = {"io_manager": DatasetIOManager(base_dir=str(tmp_path / "data")),
                 "elasticsearch": es}  # fmt: skip
    index = elasticsearch_index_asset("notes_es", "notes", index=name, text_columns=["text"])
    assert materialize(
        [notes_asset(["east wind", "north star"]), index], resources=resources
    ).success
    store = LocalStore(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"))
    reader = open_index(store, ("notes_es",))
    node = reader.client.transport.node_pool.all()[0].config
    assert (node.verify_certs, reader.client._request_timeout) == (False, 123.0)
    assert reader.nearest_examples("north", k=1)[1]["text"] == ["north star"]
    assert materialize(
        [notes_asset(["north star", "east wind"]), index], resources=resources
    ).success
    with pytest.raises(SearchIndexError, match="index_not_found"):
        reader.search("north", k=1)  # its index was replaced: never the new row positions


def test_index_factories_refuse_a_bad_metric_or_incremental_when_defined():
    from dagster import DagsterInvalidDefinitionError

    from ds_assets.assets.indexes import FAISS_METRICS, faiss_index_asset

    assert sorted(FAISS_METRICS) == sorted(faiss.METRICS)  # the engine's own list
    with pytest.raises(DagsterInvalidDefinitionError, match="metric must be one of .*'dot'"):
        faiss_index_asset("docs_faiss", "docs", "v", metric="dot")
    with pytest.raises(DagsterInvalidDefinitionError, match="incremental=True is for the server"):
        faiss_index_asset("docs_faiss", "docs", "v", incremental=True)
    with pytest.raises(DagsterInvalidDefinitionError, match="incremental=True is for the server"):
        fulltext_index_asset("docs_text", "docs", ["text"], incremental=True)


def racing_save(monkeypatch, module, step, store):
    """Another run commits `notes` right after `module.step` of a build (real store, real save)."""
    original = getattr(module, step)

    def step_then_save(*args, **kwargs):
        result = original(*args, **kwargs)
        store.save(("notes",), Dataset.from_dict({"text": ["west wind", "south pole", "dusk"]}))
        return result

    monkeypatch.setattr(module, step, step_then_save)


@pytest.mark.parametrize(
    ("engine", "step"),
    [("qdrant", "_check_count"), ("elasticsearch", "_finish_load"),  # before the alias moves
     ("qdrant", "_swap_alias"), ("elasticsearch", "_swap_alias")],  # after: the bundle fails
)  # fmt: skip
def test_a_build_whose_input_was_stored_again_leaves_the_alias_on_the_stored_bundle(
    tmp_path,
    monkeypatch,
    engine,
    step,
    elasticsearch_server,  # noqa: F811
):
    from ds_assets.assets.indexes import elasticsearch_index_asset, qdrant_index_asset
    from ds_assets.index import elasticsearch, qdrant
    from resources import ElasticsearchResource
    from resources.qdrant import QdrantResource

    resources = {"io_manager": DatasetIOManager(base_dir=str(tmp_path / "data"))}
    if engine == "qdrant":
        resources["qdrant"] = QdrantResource(path=str(tmp_path / "qdrant"))
        index = qdrant_index_asset("notes_index", "notes", collection="notes", column="text",
                                   embed=EMBED)  # fmt: skip
        module, alias, physical = qdrant, "notes", "physical"
    else:
        alias = elasticsearch_server.unique_name("notes")
        resources["elasticsearch"] = ElasticsearchResource(hosts=[elasticsearch_server.url])
        index = elasticsearch_index_asset(
            "notes_index", "notes", index=alias, text_columns=["text"]
        )
        module, physical = elasticsearch, "physical_name"
    store = LocalStore(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"))
    assert materialize(
        [notes_asset(["east wind", "north star"]), index], resources=resources
    ).success
    live = store.manifest(("notes_index",)).index[physical]
    racing_save(monkeypatch, module, step, store)  # another run commits `notes` at that step
    notes = notes_asset(["east wind", "north star"])
    failed = materialize(
        [notes, index], resources=resources, selection=[index], raise_on_error=False
    )
    assert not failed.success  # StaleVersionError: before the move, or from the bundle's save
    monkeypatch.undo()
    assert store.manifest(("notes_index",)).index[physical] == live
    reader = open_index(store, ("notes_index",))  # the stored bundle still opens, and answers
    assert reader.nearest_examples("north star", k=1)[1]["text"] == ["north star"]
    if engine == "qdrant":
        client = resources["qdrant"].get_client()
        assert [a.collection_name for a in client.get_aliases().aliases] == [live]
        assert [c.name for c in client.get_collections().collections] == [live]  # new one gone
    else:
        client = resources["elasticsearch"].get_client()
        assert sorted(client.indices.get_alias(name=alias)) == [live]
        assert sorted(client.indices.get(index=f"{alias}__*")) == [live]  # new one deleted
