"""FAISS index: exact recall against numpy brute force, training, save/load, text queries through
the embedder, rows as `datasets` gives them, filters, errors, and bounded memory while building.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import faiss as raw_faiss
import numpy as np
import pytest
from datasets import Dataset, List, Value, load_from_disk

from ds_assets.index import faiss
from ds_assets.index.base import SearchIndexError
from ds_assets.index.embedders import hashing_embedder
from ds_assets.index.faiss import FaissIndex

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMBEDDER = "ds_assets.index.embedders:hashing_embedder"
DIMENSION = 32


def random_vectors(rows: int, dimension: int = DIMENSION, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, dimension)).astype(np.float32)


def brute_force(
    vectors: np.ndarray, queries: np.ndarray, k: int, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, indices) of the exact top k, computed in float64 with numpy."""
    x, q = vectors.astype(np.float64), queries.astype(np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    if metric == "l2":
        scores = (q**2).sum(1)[:, None] - 2 * q @ x.T + (x**2).sum(1)[None, :]
        order = np.argsort(scores, axis=1, kind="stable")[:, :k]
    else:
        scores = q @ x.T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


@pytest.fixture(scope="module")
def ten_thousand():
    vectors = random_vectors(10_000)
    return vectors, Dataset.from_dict({"vector": vectors, "id": np.arange(10_000)})


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_flat_top10_equals_numpy_brute_force_for_100_queries(ten_thousand, metric):
    vectors, dataset = ten_thousand
    queries = random_vectors(100, seed=1)
    index = faiss.build(dataset, "vector", metric=metric, batch_size=3_000)
    scores, indices = index.search_batch(queries, k=10)
    expected_scores, expected_indices = brute_force(vectors, queries, 10, metric)
    assert indices == expected_indices.tolist()
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-4, atol=1e-4)
    assert index.count() == 10_000
    assert index.describe() == {
        "engine": "faiss",
        "count": 10_000,
        "dimension": DIMENSION,
        "metric": metric,
        "index_factory": "Flat",
        "index_type": "IndexFlat",
        "embed": None,
    }


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize(
    "layout",
    ["stored float32", "float64 (converted)", "selected rows", "small stored chunks"],
)
def test_a_flat_index_holds_what_faiss_add_would_and_can_grow(tmp_path, metric, layout):
    vectors = random_vectors(2_500)
    dataset = Dataset.from_dict({"v": vectors})
    if layout == "float64 (converted)":
        dataset = Dataset.from_dict({"v": vectors.astype(np.float64)})
    elif layout == "selected rows":
        order = np.random.default_rng(1).permutation(len(vectors))
        dataset, vectors = dataset.select(order), vectors[order]
    elif layout == "small stored chunks":  # views of many stored chunks, each checked
        dataset.save_to_disk(str(tmp_path / "ds"), max_shard_size="64KB")
        dataset = load_from_disk(str(tmp_path / "ds"))
    built = faiss.build(dataset, "v", metric=metric, batch_size=300)
    reference = (
        raw_faiss.IndexFlatIP(DIMENSION) if metric == "cosine" else raw_faiss.IndexFlatL2(DIMENSION)
    )
    expected = vectors.copy()
    if metric == "cosine":
        raw_faiss.normalize_L2(expected)
    reference.add(expected)
    assert built.count() == reference.ntotal == len(vectors)
    np.testing.assert_array_equal(built.index.reconstruct_n(0, len(vectors)), expected)
    more = random_vectors(10, seed=5)
    built.index.add(more)  # FAISS keeps adding to an index filled in place
    np.testing.assert_array_equal(built.index.reconstruct(len(vectors) + 9), more[9])


@pytest.mark.parametrize("factory", ["Flat", "IVF4,Flat", "HNSW8"])
def test_a_memory_mapped_index_extends_through_a_writable_copy(tmp_path, factory):
    vectors = random_vectors(300)
    faiss.build(Dataset.from_dict({"v": vectors}), "v", index_factory=factory).save(
        tmp_path / "v.faiss"
    )
    mapped = FaissIndex.load(tmp_path / "v.faiss")  # what a Dagster input receives
    copy = mapped.writable()
    copy.index.add(random_vectors(5, seed=7))  # FAISS would abort the process on `mapped`
    assert (copy.count(), mapped.count()) == (305, 300)
    assert copy.search(vectors[3].tolist(), k=1)[1] == mapped.search(vectors[3].tolist(), k=1)[1]


def test_search_agrees_with_datasets_faiss_index(ten_thousand):
    vectors, dataset = ten_thousand
    index = faiss.build(dataset, "vector", metric="ip")
    reference = Dataset.from_dict({"vector": vectors})
    reference.add_faiss_index("vector", metric_type=raw_faiss.METRIC_INNER_PRODUCT)
    query = random_vectors(1, seed=5)[0]
    expected_scores, expected_indices = reference.search("vector", query, k=10)
    scores, indices = index.search(query, k=10)
    assert indices == expected_indices.tolist()
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-6)


def test_nearest_examples_returns_the_rows_like_datasets(ten_thousand):
    vectors, dataset = ten_thousand
    index = faiss.build(dataset, "vector")
    reference = Dataset.from_dict({"vector": vectors, "id": np.arange(10_000)})
    reference.add_faiss_index("vector")
    expected_scores, expected_rows = reference.get_nearest_examples("vector", vectors[42], k=3)
    scores, rows = index.nearest_examples(vectors[42], k=3)
    assert rows["id"] == expected_rows["id"] and rows["id"][0] == 42
    np.testing.assert_allclose(rows["vector"], expected_rows["vector"])
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-5)
    assert set(rows) == {"vector", "id"}


def test_row_positions_are_those_of_the_indexed_dataset_version(ten_thousand):
    vectors, dataset = ten_thousand
    shuffled = dataset.shuffle(seed=3).select(range(2_000))  # an indices mapping, no copy
    index = faiss.build(shuffled, "vector", batch_size=700)
    query = vectors[shuffled[10]["id"]]
    scores, indices = index.search(query, k=1)
    assert indices == [10] and scores == [0.0]
    assert index.nearest_examples(query, k=1)[1]["id"] == [shuffled[10]["id"]]


def test_ivf_is_trained_on_a_sample_and_finds_exact_neighbours_with_all_lists_probed(
    ten_thousand,
):
    vectors, dataset = ten_thousand
    index = faiss.build(dataset, "vector", index_factory="IVF64,Flat", train_size=3_000)
    ivf = raw_faiss.extract_index_ivf(index.index)
    assert ivf.is_trained and ivf.nlist == 64 and index.count() == 10_000
    assert sorted(np.concatenate([_list_ids(ivf, n) for n in range(64)])) == list(range(10_000))
    ivf.nprobe = 64  # every list: the search is exhaustive again
    queries = random_vectors(20, seed=2)
    _, indices = index.search_batch(queries, k=10)
    assert indices == brute_force(vectors, queries, 10, "l2")[1].tolist()
    assert index.describe()["index_type"] == "IndexIVFFlat"


@pytest.mark.parametrize("train_size", [3_000, 100])  # dense: one scan; sparse: select
def test_training_uses_the_documented_random_rows(ten_thousand, train_size):
    vectors, dataset = ten_thousand
    index = faiss.build(dataset, "vector", index_factory="IVF16,Flat", train_size=train_size)
    rng = np.random.default_rng(faiss.TRAIN_SEED)
    rows = np.sort(rng.choice(len(vectors), size=train_size, replace=False))
    reference = raw_faiss.index_factory(DIMENSION, "IVF16,Flat")
    reference.train(vectors[rows])  # FAISS's k-means is seeded: same rows, same centroids
    np.testing.assert_array_equal(_centroids(index.index, 16), _centroids(reference, 16))


def test_a_bad_vector_in_the_training_sample_is_named_by_its_row():
    vectors = random_vectors(4_000, dimension=4)
    vectors[2_500:] = np.nan
    dataset = Dataset.from_dict({"v": vectors})
    with pytest.raises(SearchIndexError, match=r"column 'v', row (\d+): NaN") as error:
        faiss.build(dataset, "v", index_factory="IVF4,Flat", train_size=1_000, batch_size=512)
    row = int(str(error.value).split("row ")[1].split(":")[0])
    assert 2_500 <= row < 2_600 and np.isnan(vectors[row]).all()


def _centroids(index, nlist: int) -> np.ndarray:
    return raw_faiss.extract_index_ivf(index).quantizer.reconstruct_n(0, nlist)


def _list_ids(ivf, number: int) -> np.ndarray:
    size = ivf.invlists.list_size(number)
    return raw_faiss.rev_swig_ptr(ivf.invlists.get_ids(number), size).copy()


def test_default_train_size_follows_faiss_recommendations():
    ivf = raw_faiss.index_factory(16, "IVF100,Flat")
    assert faiss.default_train_size(ivf, 10**9, 16) == 256 * 100  # k-means' own subsample
    assert faiss.default_train_size(ivf, 5_000, 16) == 5_000  # never more than the rows
    ivfpq = raw_faiss.index_factory(16, "IVF16,PQ4")
    assert faiss.default_train_size(ivfpq, 10**9, 16) == 256 * 256  # the PQ's 256 centroids
    huge = raw_faiss.index_factory(1024, "IVF65536,Flat")
    assert faiss.default_train_size(huge, 10**9, 1024) == 39 * 65536  # memory cap, FAISS minimum


def test_training_needs_enough_rows_and_says_so():
    dataset = Dataset.from_dict({"vector": random_vectors(100)})
    with pytest.raises(SearchIndexError, match=r"training FAISS index 'IVF256,Flat' on 100 "):
        faiss.build(dataset, "vector", index_factory="IVF256,Flat")


@pytest.mark.parametrize("factory", ["IDMap,Flat", "HNSW16", "SQ8"])
def test_other_factories_keep_row_positions(factory):
    vectors = random_vectors(3_000)
    index = faiss.build(Dataset.from_dict({"v": vectors}), "v", index_factory=factory)
    assert index.search(vectors[1234], k=1)[1] == [1234]


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_save_and_load_give_the_same_results(tmp_path, ten_thousand, metric):
    vectors, dataset = ten_thousand
    index = faiss.build(dataset, "vector", metric=metric)
    path = tmp_path / "vector.faiss"
    index.save(path)
    assert os.listdir(tmp_path) == ["vector.faiss"]  # no temporary file left behind
    assert raw_faiss.read_index(str(path)).ntotal == 10_000  # a plain FAISS file
    loaded = FaissIndex.load(path, dataset=dataset, metric=metric)
    queries = random_vectors(10, seed=4)
    assert loaded.search_batch(queries, k=5) == index.search_batch(queries, k=5)
    described = loaded.describe() | {"index_factory": "Flat"}  # FAISS files do not record it
    assert {**described, "index_type": None} == {**index.describe(), "index_type": None}
    assert loaded.nearest_examples(queries[0], k=2) == index.nearest_examples(queries[0], k=2)
    in_memory = FaissIndex.load(path, metric=metric, mmap=False)
    in_memory.index.add(vectors[:1])  # an index read into memory can still grow
    assert in_memory.count() == 10_001


def test_loading_checks_metric_dataset_and_file(tmp_path):
    vectors = random_vectors(50)
    dataset = Dataset.from_dict({"v": vectors})
    path = str(tmp_path / "v.faiss")
    faiss.build(dataset, "v", metric="cosine").save(path)
    with pytest.raises(SearchIndexError, match="inner product; pass metric='ip' or"):
        FaissIndex.load(path)
    with pytest.raises(SearchIndexError, match="uses inner product, not metric 'l2'"):
        FaissIndex.load(path, metric="l2")
    with pytest.raises(SearchIndexError, match="holds 50 vectors but the dataset has 10 rows"):
        FaissIndex.load(path, metric="cosine", dataset=dataset.select(range(10)))
    with pytest.raises(SearchIndexError, match="no such FAISS index file"):
        FaissIndex.load(tmp_path / "missing.faiss")
    (tmp_path / "junk.faiss").write_bytes(b"not an index at all")
    with pytest.raises(SearchIndexError, match="junk.faiss: not a readable FAISS index file"):
        FaissIndex.load(tmp_path / "junk.faiss")


def test_text_queries_go_through_the_embedder(tmp_path):
    texts = [
        "a recipe for apple pie with cinnamon",
        "the blue whale is the largest animal",
        "training neural networks on GPUs",
        "whale songs travel far under water",
        "a cake made with fresh apples",
    ]
    dataset = Dataset.from_dict({"text": texts, "id": list(range(len(texts)))})
    index = faiss.build(dataset, "text", embed=EMBEDDER, metric="cosine", batch_size=2)
    scores, indices = index.search("whale", k=2)
    assert sorted(indices) == [1, 3]
    expected_scores, expected_indices = brute_force(
        hashing_embedder(texts), hashing_embedder(["whale"]), 2, "cosine"
    )
    assert indices == expected_indices[0].tolist()
    np.testing.assert_allclose(scores, expected_scores[0], rtol=1e-5)
    assert index.describe()["embed"] == EMBEDDER
    assert index.nearest_examples("apple pie recipe", k=1)[1]["id"] == [0]
    path = tmp_path / "text.faiss"
    index.save(path)
    loaded = FaissIndex.load(path, dataset=dataset, embed=EMBEDDER, metric="cosine")
    assert loaded.search_batch(["whale", "neural networks"], k=1)[1] == [[indices[0]], [2]]


def test_filters_take_row_positions_or_a_faiss_selector(ten_thousand):
    vectors, dataset = ten_thousand
    index = faiss.build(dataset, "vector")
    query = random_vectors(1, seed=7)[0]
    allowed = list(range(0, 10_000, 7))
    _, indices = index.search(query, k=5, filter=allowed)
    expected = np.array(allowed)[brute_force(vectors[allowed], query[None], 5, "l2")[1][0]]
    assert indices == expected.tolist()
    _, in_range = index.search(query, k=5, filter=raw_faiss.IDSelectorRange(100, 200))
    expected = 100 + brute_force(vectors[100:200], query[None], 5, "l2")[1][0]
    assert in_range == expected.tolist()
    assert index.search(query, k=5, filter=[3, 9]) == index.search(query, k=5, filter={9, 3})
    assert len(index.search(query, k=5, filter=[3, 9])[1]) == 2  # fewer matches than k


def test_k_larger_than_the_index_returns_every_vector():
    dataset = Dataset.from_dict({"v": random_vectors(3)})
    scores, indices = faiss.build(dataset, "v").search([0.0] * DIMENSION, k=10)
    assert sorted(indices) == [0, 1, 2] and len(scores) == 3


def test_fixed_size_and_integer_vector_columns_are_read():
    vectors = np.arange(12, dtype=np.int32).reshape(4, 3)
    dataset = Dataset.from_dict({"v": vectors.tolist()}).cast_column("v", List(Value("int32"), 3))
    assert faiss.build(dataset, "v").search([9, 10, 11], k=1) == ([0.0], [3])


def test_errors_name_what_is_wrong():
    dataset = Dataset.from_dict({"v": random_vectors(20).tolist(), "text": ["x"] * 20})
    cases = [
        (lambda: faiss.build(dataset, "v", metric="euclid"), r"metric must be one of .*'euclid'"),
        (lambda: faiss.build(dataset, "missing"), r"column 'missing' is not in the dataset"),
        (lambda: faiss.build(dataset, "text"), r"column 'text' is not a vector column: .*string"),
        (lambda: faiss.build(dataset, "v", embed=EMBEDDER), r"column 'v' is List.*not text"),
        (lambda: faiss.build(dataset.select([]), "v"), r"the dataset is empty: .* column 'v'"),
        (lambda: faiss.build(dataset, "v", batch_size=0), r"batch_size must be a positive"),
        (lambda: faiss.build(dataset, "v", index_factory="IVF,Nope"), r"'IVF,Nope' for dim"),
        (
            lambda: faiss.build(dataset, "v", index_factory="HNSW8,PQ4", metric="ip"),
            r"'HNSW8,PQ4' does not support metric 'ip'",
        ),
    ]
    for call, message in cases:
        with pytest.raises(SearchIndexError, match=message):
            call()
    index = faiss.build(dataset, "v")
    with pytest.raises(SearchIndexError, match="queries have dimension 3; .* dimension 32"):
        index.search([1.0, 2.0, 3.0])
    with pytest.raises(SearchIndexError, match="text queries need an embedder"):
        index.search("hello")
    with pytest.raises(SearchIndexError, match="a sequence of allowed row positions, got str"):
        index.search([0.0] * DIMENSION, filter="id > 3")
    with pytest.raises(SearchIndexError, match="k must be a positive integer"):
        index.search([0.0] * DIMENSION, k=0)


def test_bad_rows_are_named():
    ragged = Dataset.from_dict({"v": [[1.0, 2.0]] * 5 + [[1.0, 2.0, 3.0]]})
    with pytest.raises(SearchIndexError, match=r"column 'v', rows 4..5: .*different lengths"):
        faiss.build(ragged, "v", batch_size=4)
    split_ragged = Dataset.from_dict({"v": [[1.0, 2.0]] * 4 + [[1.0, 2.0, 3.0]] * 2})
    with pytest.raises(SearchIndexError, match=r"rows 4..5: vectors of length 3, expected 2"):
        faiss.build(split_ragged, "v", batch_size=4)
    with_nan = Dataset.from_dict({"v": [[1.0, 2.0]] * 6 + [[float("nan"), 0.0]]})
    with pytest.raises(SearchIndexError, match=r"column 'v', row 6: NaN or infinite"):
        faiss.build(with_nan, "v", batch_size=4)
    with_null = Dataset.from_dict({"v": [[1.0, 2.0], None]})
    with pytest.raises(SearchIndexError, match=r"column 'v', rows 0..1: 1 rows have no vector"):
        faiss.build(with_null, "v")
    null_text = Dataset.from_dict({"t": ["a", None]})
    with pytest.raises(SearchIndexError, match=r"column 't', row 1: null text to embed"):
        faiss.build(null_text, "t", embed=EMBEDDER)


def test_values_whose_distances_overflow_are_refused_naming_the_row():
    huge = random_vectors(100, dimension=4)
    huge[7] = 1e30  # its squared length overflows float32: searches would never return it
    for factory in ("Flat", "IVF2,Flat"):  # (FAISS's own k-means would abort the process)
        with pytest.raises(SearchIndexError, match=r"column 'v', row 7: values so large that"):
            faiss.build(Dataset.from_dict({"v": huge}), "v", index_factory=factory)
    huge[7], huge[33, 2] = 1.0, -np.inf
    for factory in ("Flat", "IVF2,Flat"):
        with pytest.raises(SearchIndexError, match=r"column 'v', row 33: NaN or infinite"):
            faiss.build(Dataset.from_dict({"v": huge}), "v", index_factory=factory, batch_size=16)
    large = random_vectors(3, dimension=2) * 1e18  # squared lengths near 1e36 still fit
    index = faiss.build(Dataset.from_dict({"v": large}), "v")
    assert sorted(index.search(large[0], k=3)[1]) == [0, 1, 2]


def test_an_index_type_without_selectors_says_filters_are_not_supported():
    dataset = Dataset.from_dict({"v": random_vectors(2_000, dimension=8)})
    index = faiss.build(dataset, "v", index_factory="PQ2np", train_size=1_000)
    with pytest.raises(SearchIndexError, match="IndexPQ .filters need an index type that takes"):
        index.search([0.0] * 8, filter=[1, 2])


# Peak memory of a build, in a fresh process (VmHWM: see bench/stream_memory.py for why).
# 1,000,000 texts embedded to 128 float32 each would be 512 MB at once; SQ4 keeps 64 bytes per
# vector (64 MB), so a streamed build stays far below 512 MB.
MEMORY_ROWS = 1_000_000
MEMORY_DIMENSION = 128
MEMORY_LIMIT_MB = 200
PROBE = """
import json, sys
import psutil
from datasets import load_from_disk
from ds_assets.index import faiss
from bench.stream_memory import peak_rss

dataset = load_from_disk(sys.argv[1])
baseline = psutil.Process().memory_info().rss
index = faiss.build(dataset, "text", embed="tests.test_index_faiss:random_embedder",
                    index_factory="SQ4", train_size=10_000)
print(json.dumps({"growth_mb": (peak_rss() - baseline) / 1024**2, "count": index.count()}))
"""


def random_embedder(texts: list[str]) -> np.ndarray:
    """Stands in for a model in the memory probe: a fresh 128-float vector per text."""
    rng = np.random.default_rng(len(texts))
    return rng.standard_normal((len(texts), MEMORY_DIMENSION), dtype=np.float32)


def test_building_over_a_million_embedded_rows_stays_in_bounded_memory(tmp_path):
    texts = np.char.add("row ", np.arange(MEMORY_ROWS).astype(str))
    Dataset.from_dict({"text": texts}).save_to_disk(str(tmp_path / "texts"))
    assert load_from_disk(str(tmp_path / "texts")).num_rows == MEMORY_ROWS
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "texts")],
        capture_output=True, text=True, cwd=ROOT, check=False,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["count"] == MEMORY_ROWS
    assert report["growth_mb"] < MEMORY_LIMIT_MB, report
