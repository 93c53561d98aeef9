"""Qdrant index: exact recall against numpy, the alias swap under concurrent readers, clean
failures, payload filters, ids, text queries through an embedder, incremental upserts, memory.

Runs against Qdrant's embedded local mode; with QDRANT_URL (and QDRANT_API_KEY if needed) set,
the same tests run against that server, and the server-only cases run too.
"""

from __future__ import annotations

import datetime
import os
import threading
import time
import uuid
import zlib

import faiss
import numpy as np
import pytest
from datasets import Dataset, Features, Sequence, Value
from qdrant_client import QdrantClient, models

from ds_assets.index import qdrant
from ds_assets.index.base import SearchIndexError, StaleIndexError
from ds_assets.index.qdrant import ROW_KEY, QdrantIndex
from resources.qdrant import QdrantResource, local_client
from tests.bench_scripts import run_bench_script

SERVER = os.environ.get("QDRANT_URL")
needs_server = pytest.mark.skipif(
    not SERVER,
    reason="needs a Qdrant server: set QDRANT_URL (and QDRANT_API_KEY); none can be installed "
    "here, and the embedded local mode covers every other case",
)
WORD_DIMENSION = 64


def embed_words(texts: list[str]) -> np.ndarray:
    """A deterministic bag-of-words embedder (no model): one hashed slot per word."""
    matrix = np.zeros((len(texts), WORD_DIMENSION), np.float32)
    for row, text in enumerate(texts):
        for word in text.lower().split():
            matrix[row, zlib.crc32(word.encode()) % WORD_DIMENSION] += 1.0
    return matrix


def vectors(rows: int, dimension: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, dimension)).astype(np.float32)


def vector_dataset(rows: int, dimension: int, seed: int = 0, **columns) -> Dataset:
    return Dataset.from_dict({"vector": vectors(rows, dimension, seed), **columns})


@pytest.fixture
def client():
    if SERVER:
        server = QdrantClient(url=SERVER, api_key=os.environ.get("QDRANT_API_KEY"), timeout=120)
        yield server
        server.close()
    else:
        yield QdrantClient(location=":memory:")


@pytest.fixture
def name(client):
    """A collection name of this test only; its collections are deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    yield prefix
    for description in client.get_collections().collections:
        if description.name.startswith(prefix):
            client.delete_collection(description.name)


def physical_collections(client, name):
    return sorted(c.name for c in client.get_collections().collections if c.name.startswith(name))


def alias_target(client, name):
    return {a.alias_name: a.collection_name for a in client.get_aliases().aliases}.get(name)


def brute_force(data: np.ndarray, queries: np.ndarray, distance: str, k: int):
    """Top-k row positions and scores by numpy, in float64."""
    data, queries = data.astype(np.float64), queries.astype(np.float64)
    if distance == "Cosine":
        data = data / np.linalg.norm(data, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    if distance == "Euclid":
        scores = np.sqrt(((queries[:, None, :] - data[None, :, :]) ** 2).sum(axis=2))
        order = np.argsort(scores, axis=1, kind="stable")[:, :k]
    else:
        scores = queries @ data.T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


# --- recall -----------------------------------------------------------------------------


@pytest.mark.parametrize("distance", ["Cosine", "Dot", "Euclid"])
def test_top10_of_100_queries_over_10000_vectors_equals_numpy_brute_force(client, name, distance):
    data, queries = vectors(10_000, 32), vectors(100, 32, seed=1)
    dataset = Dataset.from_dict({"vector": data})
    qdrant.build(client, dataset, name, column="vector", distance=distance, version="1")
    index = QdrantIndex(client, name, dataset=dataset, exact=True)

    scores, indices = index.search_batch(queries, k=10)

    expected_indices, expected_scores = brute_force(data, queries, distance, 10)
    assert indices == expected_indices.tolist()
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-4, atol=1e-4)


def test_search_and_nearest_examples_agree_with_datasets_own_faiss_search(client, name):
    data, queries = vectors(2_000, 16), vectors(20, 16, seed=3)
    dataset = Dataset.from_dict({"vector": data, "label": [f"row {i}" for i in range(2_000)]})
    reference = Dataset.from_dict({"vector": data, "label": dataset["label"]})
    reference.add_faiss_index("vector", metric_type=faiss.METRIC_INNER_PRODUCT)
    index = qdrant.build(client, dataset, name, column="vector", distance="Dot", version="1")
    index.exact = True

    scores, indices = index.search_batch(queries, k=5)
    expected = reference.search_batch("vector", queries, k=5)
    assert indices == [list(map(int, row)) for row in expected.total_indices]
    np.testing.assert_allclose(scores, expected.total_scores, rtol=1e-4)

    one_scores, rows = index.nearest_examples(queries[0], k=3)
    expected_one = reference.get_nearest_examples("vector", queries[0], k=3)
    assert rows["label"] == expected_one.examples["label"]
    np.testing.assert_allclose(rows["vector"], expected_one.examples["vector"])
    np.testing.assert_allclose(one_scores, expected_one.scores, rtol=1e-4)


def test_hits_are_row_positions_of_a_shuffled_or_selected_dataset_as_datasets_counts_them(
    client, name
):
    data = vectors(300, 4)
    dataset = Dataset.from_dict({"vector": data, "key": list(range(300))})
    view = dataset.shuffle(seed=0).select(range(100, 250))
    index = qdrant.build(client, view, name, column="vector", id_column="key",
                         payload_columns=["key"], version="1")  # fmt: skip
    index.exact = True
    for position in (0, 17, 149):
        assert index.search(view[position]["vector"], k=1)[1] == [position]
    key = view[17]["key"]
    assert client.retrieve(name, ids=[key])[0].payload == {ROW_KEY: 17, "key": key}
    assert index.nearest_examples(view[17]["vector"], k=1)[1]["key"] == [key]


# --- the alias swap -----------------------------------------------------------------------


def test_readers_of_the_alias_see_the_old_count_until_the_swap_then_the_new_never_an_error(
    client, name
):
    old, new = vector_dataset(2_000, 8), vector_dataset(3_000, 8, seed=1)
    qdrant.build(client, old, name, column="vector", version="1")
    index = QdrantIndex(client, name)
    query = vectors(1, 8, seed=2)[0]
    reads, errors, stop = [], [], threading.Event()

    def read_in_a_loop():
        for _ in range(100_000):  # bounded, and stopped by the event long before
            if stop.is_set():
                return
            try:
                count = index.count()
                rows = index.search(query, k=5)[1]
                reads.append((time.perf_counter(), count, max(rows)))
            except Exception as error:  # recorded, asserted below
                errors.append(repr(error))

    reader = threading.Thread(target=read_in_a_loop)
    reader.start()
    while not reads and reader.is_alive():
        time.sleep(0.01)
    started = time.perf_counter()
    qdrant.build(client, new, name, column="vector", version="2", batch_size=100)
    finished = time.perf_counter()
    while sum(1 for at, _, _ in reads if at > finished) < 5 and reader.is_alive():
        time.sleep(0.01)
    stop.set()
    reader.join(timeout=60)

    assert errors == []
    counts = [count for _, count, _ in reads]
    assert set(counts) <= {2_000, 3_000}
    assert counts[0] == 2_000 and counts[-1] == 3_000
    assert counts == sorted(counts)  # never back to the old version once the new one is seen
    during = [count for at, count, _ in reads if started < at < finished]
    assert len(during) >= 3, "the reader must have run while the build was filling"
    assert all(top < 3_000 for _, _, top in reads)  # hits are rows of one version or the other
    assert physical_collections(client, name) == [f"{name}__2"]


@pytest.mark.parametrize("failure", ["wrong dimension", "embedder raises"])
def test_a_build_failing_midway_leaves_the_alias_on_the_old_version_and_no_leftover(
    client, name, failure
):
    qdrant.build(client, vector_dataset(500, 4), name, column="vector", version="1")
    if failure == "wrong dimension":
        rows = vectors(300, 4).tolist() + vectors(100, 5).tolist() + vectors(100, 4).tolist()
        dataset = Dataset.from_dict({"vector": rows})
        options = {"column": "vector"}
        message = r"column 'vector', rows 300\.\.399: vectors of dimension 5; expected 4"
    else:
        calls = []

        def embed_then_fail(texts):
            calls.append(len(texts))
            if len(calls) == 3:
                raise RuntimeError("embedding service went away")
            return np.ones((len(texts), 4), np.float32)

        dataset = Dataset.from_dict({"text": [f"text {i}" for i in range(500)]})
        options = {"column": "text", "embed": embed_then_fail}
        message = "embedding service went away"

    with pytest.raises((SearchIndexError, RuntimeError), match=message):
        qdrant.build(client, dataset, name, version="2", batch_size=100, **options)

    assert alias_target(client, name) == f"{name}__1"
    assert physical_collections(client, name) == [f"{name}__1"]
    assert QdrantIndex(client, name).count() == 500


def test_a_build_reusing_a_version_or_a_plain_collection_name_is_refused(client, name):
    dataset = vector_dataset(10, 4)
    qdrant.build(client, dataset, name, column="vector", version="1")
    with pytest.raises(SearchIndexError, match=rf"'{name}__1' is live behind the alias"):
        qdrant.build(client, dataset, name, column="vector", version="1")
    plain = f"{name}plain"
    client.create_collection(plain, models.VectorParams(size=4, distance="Cosine"))
    with pytest.raises(SearchIndexError, match=rf"'{plain}' is a qdrant collection, not an alias"):
        qdrant.build(client, dataset, plain, column="vector", version="1")
    assert physical_collections(client, name) == sorted([f"{name}__1", plain])


def test_a_build_deletes_day_old_leftovers_of_killed_builds_and_nothing_else(client, name):
    def leftover(suffix, record):
        metadata = {qdrant.METADATA_KEY: record} if record else None
        client.create_collection(
            f"{name}__{suffix}", models.VectorParams(size=4, distance="Cosine"), metadata=metadata
        )

    leftover("old", {"alias": name, "started": time.time() - 2 * 24 * 3600})
    leftover("busy", {"alias": name, "started": time.time()})  # maybe still being filled
    leftover("foreign", None)  # not ours
    qdrant.build(client, vector_dataset(10, 4), name, column="vector", version="1")
    assert physical_collections(client, name) == [
        f"{name}__1",
        f"{name}__busy",
        f"{name}__foreign",
    ]


def hand_made_behind_the_alias(client, alias, collection):
    """A collection not made by build(), one point in it, and the alias `alias` on it."""
    client.create_collection(collection, models.VectorParams(size=4, distance="Cosine"))
    client.upsert(
        collection, [models.PointStruct(id=0, vector=[1.0, 0, 0, 0], payload={ROW_KEY: 0})]
    )
    create = models.CreateAlias(collection_name=collection, alias_name=alias)
    client.update_collection_aliases(
        change_aliases_operations=[models.CreateAliasOperation(create_alias=create)]
    )


@pytest.mark.parametrize("suffix", ["handmade", "__handmade"], ids=["other-name", "our-form"])
def test_a_build_keeps_a_collection_it_did_not_make_that_the_alias_pointed_at(client, name, suffix):
    hand_made = f"{name}{suffix}"  # "__handmade": named like ours, but no build record
    hand_made_behind_the_alias(client, name, hand_made)
    with pytest.warns(UserWarning, match=rf"moved away from '{hand_made}', which build\(\) did"):
        qdrant.build(client, vector_dataset(10, 4), name, column="vector", version="1")
    assert alias_target(client, name) == f"{name}__1"
    assert physical_collections(client, name) == sorted([f"{name}__1", hand_made])
    assert client.count(hand_made, exact=True).count == 1
    qdrant.build(client, vector_dataset(10, 4), name, column="vector", version="2")
    assert physical_collections(client, name) == sorted([f"{name}__2", hand_made])  # ours go


@pytest.mark.parametrize("write", [qdrant.append, qdrant.upsert])
def test_append_and_upsert_refuse_a_collection_build_did_not_make(client, name, write):
    hand_made = f"{name}handmade"
    hand_made_behind_the_alias(client, name, hand_made)
    with pytest.raises(StaleIndexError, match=rf"points at '{hand_made}', which build\(\) did"):
        write(client, vector_dataset(3, 4), name, column="vector", row_offset=1)
    assert client.count(hand_made, exact=True).count == 1


# --- payloads, ids, filters ------------------------------------------------------------------


def test_non_finite_payload_floats_are_stored_as_null(client, name):
    scores = [0.5, float("nan"), float("inf"), None, -float("inf")]
    dataset = Dataset.from_dict({"vector": vectors(5, 4), "score": scores})
    qdrant.build(client, dataset, name, column="vector", payload_columns=["score"], version="1")
    points, _ = client.scroll(name, limit=10, with_payload=True)
    stored = {point.payload[qdrant.ROW_KEY]: point.payload["score"] for point in points}
    assert stored == {0: 0.5, 1: None, 2: None, 3: None, 4: None}  # JSON has no NaN


def test_payload_filters_in_dict_and_model_form_give_numpy_brute_force_over_matching_rows(
    client, name
):
    rows = 1_000
    data = vectors(rows, 8)
    colors = ["red", "green", "blue", None][:4] * (rows // 4)
    years = [2015 + i % 10 for i in range(rows)]
    days = [datetime.date(2024, 1, 1) + datetime.timedelta(days=i % 30) for i in range(rows)]
    dataset = Dataset.from_dict({"vector": data, "color": colors, "year": years, "day": days})
    index = qdrant.build(
        client, dataset, name, column="vector", distance="Euclid",
        payload_columns=["color", "year", "day"], version="1",
    )  # fmt: skip
    index.exact = True
    query = vectors(1, 8, seed=5)[0]
    as_dict = {
        "must": [
            {"key": "color", "match": {"value": "red"}},
            {"key": "year", "range": {"gte": 2020}},
            {"key": "day", "range": {"lt": "2024-01-20T00:00:00Z"}},
        ]
    }
    as_model = models.Filter(
        must=[
            models.FieldCondition(key="color", match=models.MatchValue(value="red")),
            models.FieldCondition(key="year", range=models.Range(gte=2020)),
            models.FieldCondition(
                key="day", range=models.DatetimeRange(lt=datetime.datetime(2024, 1, 20))
            ),
        ]
    )

    matching = np.array(
        [c == "red" and y >= 2020 and d < datetime.date(2024, 1, 20)
         for c, y, d in zip(colors, years, days, strict=True)]
    )  # fmt: skip
    positions = np.flatnonzero(matching)
    order, _ = brute_force(data[positions], query[None, :], "Euclid", 10)
    expected = positions[order[0]].tolist()
    assert index.search(query, k=10, filter=as_dict)[1] == expected
    assert index.search(query, k=10, filter=as_model)[1] == expected
    null_color = {"must": [{"is_null": {"key": "color"}}]}
    assert {colors[row] for row in index.search(query, k=50, filter=null_color)[1]} == {None}


def test_payload_holds_the_row_position_and_the_chosen_columns_json_ready(client, name):
    dataset = Dataset.from_dict(
        {
            "vector": vectors(3, 2),
            "tags": [["a", "b"], [], None],
            "meta": [{"n": 1}, {"n": None}, {"n": 3}],
            "at": [datetime.datetime(2024, 5, 1, 12, 30), None, datetime.datetime(2024, 5, 2)],
            "hidden": ["x", "y", "z"],
        }
    )
    qdrant.build(
        client, dataset, name, column="vector", payload_columns=["tags", "meta", "at"],
        version="1",
    )  # fmt: skip
    points = client.retrieve(name, ids=[0, 1, 2])
    payloads = {point.id: point.payload for point in points}
    assert payloads[0] == {ROW_KEY: 0, "tags": ["a", "b"], "meta": {"n": 1},
                           "at": "2024-05-01T12:30:00"}  # fmt: skip
    assert payloads[1] == {ROW_KEY: 1, "tags": [], "meta": {"n": None}, "at": None}
    assert payloads[2][ROW_KEY] == 2 and "hidden" not in payloads[2]


def test_features_of_payload_columns_come_from_the_dataset_schema(client, name):
    features = Features({"vector": Sequence(Value("float32"), length=2), "n": Value("uint8")})
    dataset = Dataset.from_dict({"vector": [[1.0, 0.0], [0.0, 1.0]], "n": [1, 255]},
                                features=features)  # fmt: skip
    qdrant.build(client, dataset, name, column="vector", payload_columns=["n"], version="1")
    assert [p.payload["n"] for p in client.retrieve(name, ids=[0, 1])] == [1, 255]


def test_ids_come_from_id_column_integers_or_uuids_and_hits_are_still_row_positions(client, name):
    data = vectors(50, 4)
    integers = Dataset.from_dict({"vector": data, "key": [1_000 + 7 * i for i in range(50)]})
    index = qdrant.build(client, integers, name, column="vector", id_column="key", version="1")
    assert [p.payload[ROW_KEY] for p in client.retrieve(name, ids=[1_007, 1_343])] == [1, 49]
    assert index.search(data[12], k=1)[1] == [12]

    uuids = [uuid.UUID(int=i + 1) for i in range(50)]
    spelled = [u.hex.upper() if i % 2 else str(u) for i, u in enumerate(uuids)]  # both forms
    texts = Dataset.from_dict({"vector": data, "key": spelled})
    index = qdrant.build(client, texts, name, column="vector", id_column="key", version="2")
    assert client.retrieve(name, ids=[str(uuids[3])])[0].payload[ROW_KEY] == 3
    assert index.search(data[3], k=1)[1] == [3]
    assert index.describe()["id_column"] == "key"


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ([1, 2, -5, 4], r"id_column 'key', row 2: -5 is not a valid point id; expected "
                              r"non-negative integers or UUID strings"),
        (["7d4e", "x", "y", "z"], r"id_column 'key', row 0: '7d4e' is not a valid point id"),
        ([1, None, 3, 4], r"id_column 'key', row 1: None is not a valid point id"),
        ([1.5, 2.0, 3.0, 4.0], r"id_column 'key' has type double; expected non-negative"),
        ([7, 1, 2, 7], r"4 rows but 3 points .* id_column 'key' must be unique: rows 0 and 3 "
                       r"both have id 7"),
    ],
)  # fmt: skip
def test_bad_ids_are_refused_with_their_row_and_leave_the_live_version_alone(
    client, name, keys, message
):
    qdrant.build(client, vector_dataset(4, 3), name, column="vector", version="1")
    dataset = vector_dataset(4, 3, key=keys)
    with pytest.raises(SearchIndexError, match=message):
        qdrant.build(client, dataset, name, column="vector", id_column="key", version="2")
    assert physical_collections(client, name) == [f"{name}__1"]
    assert alias_target(client, name) == f"{name}__1"


# --- text queries through an embedder ------------------------------------------------------------

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "a red fox hides in the forest",
    "stock markets fell on monday",
    "the dog sleeps all day long",
    "new vaccine trial shows promise",
]


def test_text_columns_and_text_queries_go_through_the_embedder_named_by_import_path(client, name):
    dataset = Dataset.from_dict({"text": TEXTS, "topic": ["animals", "animals", "money",
                                                         "animals", "health"]})  # fmt: skip
    path = "tests.test_index_qdrant:embed_words"
    qdrant.build(client, dataset, name, column="text", embed=path, payload_columns=["topic"],
                 version="1", batch_size=2)  # fmt: skip

    index = QdrantIndex(client, name, dataset=dataset, embed=path)
    scores, rows = index.nearest_examples("a red fox hides in the forest", k=2)
    assert rows["text"][0] == TEXTS[1]
    assert scores[0] == pytest.approx(1.0, abs=1e-5)
    assert index.search("markets fell", k=1)[1] == [2]
    animals = {"must": [{"key": "topic", "match": {"value": "animals"}}]}
    assert index.search("vaccine trial", k=5, filter=animals)[1] != [4]
    assert set(index.search("vaccine trial", k=5, filter=animals)[1]) == {0, 1, 3}
    assert index.describe()["embed"] == path

    without = QdrantIndex(client, name, dataset=dataset)
    with pytest.raises(SearchIndexError, match=rf"built with embed='{path}', pass that"):
        without.search("red fox")
    assert without.search(embed_words(["red fox"])[0], k=1)[1] == [1]  # vectors need none


def test_a_null_text_is_refused_with_its_row(client, name):
    dataset = Dataset.from_dict({"text": ["a", "b", None]})
    with pytest.raises(SearchIndexError, match=r"column 'text', row 2: null text to embed"):
        qdrant.build(client, dataset, name, column="text", embed=embed_words, version="1")
    assert physical_collections(client, name) == []


# --- describe, incremental upsert ---------------------------------------------------------------


def test_describe_reports_count_dimension_distance_physical_name_alias_and_the_build(client, name):
    dataset = vector_dataset(25, 6, color=["x"] * 25)
    index = qdrant.build(client, dataset, name, column="vector", distance="l2",
                         payload_columns=["color"], version="ds-3.run-9")  # fmt: skip
    assert index.describe() == {
        "engine": "qdrant",
        "alias": name,
        "physical": f"{name}__ds-3.run-9",
        "count": 25,
        "dimension": 6,
        "distance": "Euclid",
        "version": "ds-3.run-9",
        "column": "vector",
        "embed": None,
        "payload_columns": ["color"],
        "id_column": None,
    }


def test_upsert_adds_a_new_partition_in_place_and_upserting_it_again_overwrites(client, name):
    first, second = vector_dataset(100, 4), vector_dataset(40, 4, seed=1)
    qdrant.build(client, first, name, column="vector", version="1")
    index = qdrant.upsert(client, second, name, column="vector", row_offset=100, batch_size=16)
    assert index.count() == 140
    qdrant.upsert(client, second, name, column="vector", row_offset=100)
    assert index.count() == 140
    whole = Dataset.from_dict({"vector": np.concatenate([vectors(100, 4), vectors(40, 4, 1)])})
    index = QdrantIndex(client, name, dataset=whole, exact=True)
    assert index.search(vectors(40, 4, seed=1)[7], k=1)[1] == [107]
    assert physical_collections(client, name) == [f"{name}__1"]

    with pytest.raises(SearchIndexError, match=r"expected 4, the dimension of the collection"):
        qdrant.upsert(client, vector_dataset(3, 5), name, column="vector", row_offset=140)
    with pytest.raises(SearchIndexError, match=r"alias 'nothing' does not exist: run build"):
        qdrant.upsert(client, second, "nothing", column="vector")


def test_append_adds_rows_after_the_last_all_or_nothing_unseen_by_readers_of_the_old_rows(
    client, name
):
    first, second = vector_dataset(100, 4), vector_dataset(40, 4, seed=1)
    whole = Dataset.from_dict({"vector": np.concatenate([vectors(100, 4), vectors(40, 4, 1)])})
    qdrant.build(client, first, name, column="vector", version="1")
    old_reader = QdrantIndex(client, name, dataset=first, row_limit=100)
    probe = vectors(40, 4, seed=1)[7]
    before = old_reader.search(probe, k=3)

    bad = Dataset.from_dict({"vector": [*vectors(40, 4, 1).tolist()[:39], [float("nan")] * 4]})
    with pytest.raises(SearchIndexError, match=r"rows 32\.\.39: row 39 has a NaN"):  # 3rd batch
        qdrant.append(client, bad, name, column="vector", row_offset=100, batch_size=16)
    assert QdrantIndex(client, name).count() == 100  # the points it added were deleted
    with pytest.raises(SearchIndexError, match=r"holds 100 points; append\(row_offset=90\)"):
        qdrant.append(client, second, name, column="vector", row_offset=90)

    new = qdrant.append(client, second, name, column="vector", row_offset=100, batch_size=16)
    assert new.count() == 140 and physical_collections(client, name) == [f"{name}__1"]
    assert QdrantIndex(client, name, dataset=whole).search(probe, k=1)[1] == [107]
    assert old_reader.count() == 100 and old_reader.search(probe, k=3) == before
    with pytest.raises(StaleIndexError, match=rf"points at '{name}__1', not at '{name}__0'"):
        qdrant.append(client, second, name, column="vector", row_offset=140,
                      physical=f"{name}__0")  # fmt: skip
    with pytest.raises(StaleIndexError, match=r"alias 'nothing' does not exist"):
        qdrant.append(client, second, "nothing", column="vector", row_offset=0)
    assert new.count() == 140
    tagged = {"must": [{"key": ROW_KEY, "range": {"gte": 50}}]}
    assert all(50 <= row < 100 for row in old_reader.search(probe, k=10, filter=tagged)[1])


def test_append_refuses_an_id_an_earlier_row_has_and_writes_nothing(client, name):
    first = vector_dataset(3, 2, key=[10, 11, 12])
    qdrant.build(client, first, name, column="vector", id_column="key", version="1")
    clash = vector_dataset(2, 2, seed=1, key=[13, 11])
    with pytest.raises(
        SearchIndexError, match=r"row 1 of the rows appended: id 11 is already the id of row 1"
    ):
        qdrant.append(client, clash, name, column="vector", id_column="key", row_offset=3)
    assert QdrantIndex(client, name).count() == 3
    point = client.retrieve(name, ids=[11], with_payload=True)[0]
    assert point.payload[ROW_KEY] == 1  # untouched


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "options", "message"),
    [
        (vector_dataset(3, 2), {"column": "vectr"},
         r"columns \['vectr'\] are not in the dataset; it has \['vector'\]"),
        (vector_dataset(3, 2), {}, r"column is required"),
        (vector_dataset(3, 2, raw=[b"x"] * 3), {"column": "vector", "payload_columns": ["raw"]},
         r"payload column 'raw' has type binary"),
        (vector_dataset(3, 2, _row=[1] * 3), {"column": "vector", "payload_columns": ["_row"]},
         r"would overwrite the row position"),
        (vector_dataset(3, 2), {"column": "vector", "distance": "hamming"},
         r"distance 'hamming' is not one of Cosine, Dot, Euclid, Manhattan"),
        (vector_dataset(3, 2), {"column": "vector", "version": "a/b"},
         r"version 'a/b': expected letters, digits"),
        (Dataset.from_dict({"vector": [[1.0, 2.0], None]}), {"column": "vector"},
         r"column 'vector', rows 0\.\.1: 1 rows have no vector"),
        (Dataset.from_dict({"vector": [[1.0, 2.0], [float("nan"), 1.0]]}), {"column": "vector"},
         r"row 1 has a NaN or infinite value"),
        (Dataset.from_dict({"vector": ["a", "b"]}), {"column": "vector"},
         r"it is Value\('string'\); expected a list of numbers per row"),
        (Dataset.from_dict({"vector": [[1.0]]}).select([]), {"column": "vector"},
         r"the dataset has no rows"),
        (vector_dataset(3, 2), {"column": "vector", "batch_size": 0},
         r"batch_size must be a positive integer"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_with_a_message_naming_what_is_wrong(client, name, dataset, options,
                                                                   message):  # fmt: skip
    options = {"version": "1", **options}
    with pytest.raises(SearchIndexError, match=message):
        qdrant.build(client, dataset, name, **options)
    assert physical_collections(client, name) == []


def test_bad_queries_are_refused_with_a_clear_message(client, name):
    index = qdrant.build(client, vector_dataset(10, 4), name, column="vector", version="1")
    with pytest.raises(SearchIndexError, match=r"queries have 3 dimensions; .* holds vectors of 4"):
        index.search([1.0, 2.0, 3.0])
    with pytest.raises(SearchIndexError, match=r"is not a Qdrant Filter"):
        index.search([1.0, 2.0, 3.0, 4.0], filter={"must": "color is red"})
    with pytest.raises(SearchIndexError, match=r"filter must be a qdrant_client.models.Filter"):
        index.search([1.0, 2.0, 3.0, 4.0], filter="color = red")
    with pytest.raises(SearchIndexError, match=r"k must be a positive integer"):
        index.search([1.0, 2.0, 3.0, 4.0], k=0)
    shorter = vector_dataset(5, 4)
    with pytest.raises(SearchIndexError, match=r"past the end of the dataset given \(5 rows\)"):
        QdrantIndex(client, name, dataset=shorter, exact=True).search(vectors(10, 4)[9], k=10)


# --- resource, local folder mode ------------------------------------------------------------


def test_the_resource_shares_one_local_client_per_folder_which_keeps_the_alias_on_disk(tmp_path):
    folder = str(tmp_path / "qdrant")
    client = QdrantResource(path=folder).get_client()
    assert QdrantResource(path=folder + "/").get_client() is client
    assert qdrant.is_local(client)
    dataset = vector_dataset(30, 4, color=["a", "b", "c"] * 10)
    qdrant.build(client, dataset, "docs", column="vector", payload_columns=["color"], version="1")
    qdrant.build(client, dataset, "docs", column="vector", payload_columns=["color"], version="2")
    client.close()

    reopened = local_client(folder)  # the closed client is replaced, the data is on disk
    assert reopened is not client
    index = QdrantIndex(reopened, "docs", dataset=dataset)
    assert index.describe()["physical"] == "docs__2" and index.count() == 30
    assert index.search(vectors(30, 4)[4], k=1)[1] == [4]
    assert sorted(os.listdir(os.path.join(folder, "collection"))) == ["docs__2"]
    reopened.close()


def test_the_resource_hands_out_a_server_client_when_a_url_is_set_and_hides_the_api_key(
    monkeypatch,
):
    from dagster import EnvVar

    monkeypatch.setenv("TEST_QDRANT_KEY", "s3cr3t-value")
    resource = QdrantResource(url=SERVER or "http://127.0.0.1:9", api_key="s3cr3t-value")
    assert "s3cr3t-value" not in repr(resource) and "s3cr3t-value" not in str(resource)
    from_env = QdrantResource(url="http://127.0.0.1:9", api_key=EnvVar("TEST_QDRANT_KEY"))
    assert "s3cr3t-value" not in repr(from_env)
    with pytest.warns(UserWarning):  # qdrant-client: an API key over http, server unreachable
        client = QdrantResource(url="http://127.0.0.1:9", api_key="k", timeout=1).get_client()
        assert not qdrant.is_local(client)
        assert client.init_options["url"] == "http://127.0.0.1:9"
        client.close()


@pytest.mark.parametrize(
    "url",
    ["https://admin:hunter2@qdrant.internal:6333", "admin:hunter2@qdrant.internal:6333",
     "http://:hunter2@qdrant.internal:6333", "https://admin:hunter2/x@qdrant.internal:6333"],
)  # fmt: skip
def test_a_url_holding_credentials_is_refused_without_showing_them(url):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"holds a user and password; .*api_key=") as raised:
        QdrantResource(url=url)
    assert "hunter2" not in str(raised.value) and "hunter2" not in repr(raised.value)


def test_an_asset_builds_through_the_resource_in_a_dagster_run(tmp_path):
    from dagster import asset, materialize

    @asset
    def vectors_index(qdrant_db: QdrantResource) -> None:
        index = qdrant.build(qdrant_db.get_client(), vector_dataset(20, 3), "assets",
                             column="vector", version="run1")  # fmt: skip
        assert index.count() == 20

    folder = str(tmp_path / "qdrant")
    assert materialize([vectors_index], resources={"qdrant_db": QdrantResource(path=folder)})
    assert QdrantIndex(local_client(folder), "assets").count() == 20
    local_client(folder).close()


# --- memory -------------------------------------------------------------------------------------


def probe(*arguments):
    return run_bench_script("index_qdrant_bench.py", *arguments)


def test_building_holds_no_copy_of_the_vectors_beyond_a_streaming_upload_by_hand(tmp_path):
    """30,000 x 384 float32 (46 MB; 370 MB as Python floats), local mode in memory. The
    reference streams the same batches from the memory map into Qdrant by hand, in its own
    fresh process: `build` may add its checks and one batch, not a copy of the column."""
    data = str(tmp_path / "data")
    probe("--make", data, "30000", "384")
    reference = probe("--measure", "qdrant", data, ":memory:", "--no-queries")
    built = probe("--measure", "build", data, ":memory:", "--no-queries")
    assert built["rows"] == reference["rows"] == 30_000
    assert built["growth_mb"] < reference["growth_mb"] + 16, (built, reference)


# --- a real server ---------------------------------------------------------------------------


@needs_server
def test_on_a_server_a_second_client_sees_the_swap_and_exact_search_matches_numpy(client, name):
    data, queries = vectors(5_000, 16), vectors(10, 16, seed=1)
    qdrant.build(client, Dataset.from_dict({"vector": data[:1000]}), name, column="vector",
                 version="1")  # fmt: skip
    other = QdrantClient(url=SERVER, api_key=os.environ.get("QDRANT_API_KEY"), timeout=120)
    assert QdrantIndex(other, name).count() == 1_000
    qdrant.build(client, Dataset.from_dict({"vector": data}), name, column="vector",
                 version="2")  # fmt: skip
    index = QdrantIndex(other, name, exact=True)
    assert index.count() == 5_000
    assert (
        index.search_batch(queries, k=10)[1] == brute_force(data, queries, "Cosine", 10)[0].tolist()
    )
    other.close()
