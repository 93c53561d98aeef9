"""Queries that probing found mishandled by the index layer: each gives the documented results
or a `SearchIndexError` naming the query, never a process abort, a bare numpy error or a
silently empty answer. FAISS and tantivy run embedded; Qdrant in its local mode."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from datasets import Dataset
from qdrant_client import QdrantClient

from ds_assets.index import faiss, fulltext, qdrant
from ds_assets.index.base import SearchIndexError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VECTORS = Dataset.from_dict({"v": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], "tag": ["a", "b", "c"]})


@pytest.fixture(params=["faiss", "qdrant"])
def vector_index(request):
    if request.param == "faiss":
        return faiss.build(VECTORS, "v")
    client = QdrantClient(location=":memory:")
    return qdrant.build(client, VECTORS, "q", column="v", distance="Euclid", version="1")


def test_a_k_beyond_the_rows_gives_every_row_without_allocating_k(tmp_path):
    # FAISS and tantivy allocate k results up front: 2**31 aborted the whole process
    script = f"""
import sys
sys.path.insert(0, {ROOT!r})
from datasets import Dataset
from ds_assets.index import faiss, fulltext
index = faiss.build(Dataset.from_dict({{"v": [[1.0, 2.0], [3.0, 4.0]]}}), "v")
print(index.search([1.0, 2.0], k=2**31)[1])
texts = fulltext.build(Dataset.from_dict({{"t": ["hi there", "hi"]}}), "t", {str(tmp_path / "t")!r})
print(sorted(texts.search("hi", k=2**31)[1]))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:2] == ["[0, 1]", "[0, 1]"]


@pytest.mark.parametrize("query", [[np.nan, 2.0], [np.inf, 2.0], [1e39, 2.0]])
def test_a_query_with_a_value_no_distance_can_use_is_refused(vector_index, query):
    with pytest.raises(SearchIndexError, match=r"query 0 has a NaN or infinite value"):
        vector_index.search(query)
    with pytest.raises(SearchIndexError, match=r"query 1 has a NaN or infinite value"):
        vector_index.search_batch([[1.0, 2.0], query])


@pytest.mark.parametrize(
    ("queries", "problem"),
    [
        ([[1, 2], [1]], r"vectors of one length, got lengths \[1, 2\]"),
        (["abc", [1, 2]], r"query 0 is 'abc'; expected a vector"),
        ([[1, 2], {"a": 1}], r"query 1 is \{'a': 1\}; expected a vector"),
        ([[1 + 2j, 2]], r"query 0 is .*; expected a vector \(a list or 1-d array\) of numbers"),
    ],
)
def test_malformed_query_batches_name_the_query(vector_index, queries, problem):
    with pytest.raises(SearchIndexError, match=problem):
        vector_index.search_batch(queries)


def test_an_empty_batch_and_no_hits(vector_index):
    assert vector_index.search_batch([]) == ([], [])
    assert vector_index.search_batch(np.zeros((0, 2), np.float32)) == ([], [])
    assert vector_index.search([3, 4], k=np.int64(1))[1] == [1]  # numpy integers are integers


def test_nearest_examples_without_hits_has_every_column_empty():
    index = faiss.build(VECTORS, "v")
    assert index.nearest_examples([1.0, 2.0], filter=[]) == ([], {"v": [], "tag": []})


def test_an_embedder_without_an_import_path_still_builds_and_queries():
    texts = Dataset.from_dict({"t": ["red apple", "blue whale"]})

    def embed(batch):  # defined here, as in a notebook: no import path to record
        return np.array([[text.count("p"), text.count("w"), 1.0] for text in batch], np.float32)

    index = faiss.build(texts, "t", embed=embed)
    assert index.search("whale", k=1)[1] == [1] and index.embed_path is None


def test_nearest_examples_against_a_shorter_dataset_say_so(tmp_path):
    texts = Dataset.from_dict({"t": ["a b", "c d"]})
    index = fulltext.build(texts, "t", str(tmp_path / "t"))
    index.dataset = texts.select([0])  # as an engine that cannot check it when opened (ES)
    with pytest.raises(SearchIndexError, match=r"returned row 1, but the dataset it was opened"):
        index.nearest_examples("c")


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ([[[1.0]]], r"column 'v' is not a vector column: it is List\(List"),
        ([[True, False]], r"column 'v' is not a vector column: it is List\(Value\('bool'\)\)"),
        ([[], [1.0]], r"column 'v', row 0: empty vector"),
    ],
)
def test_qdrant_checks_the_vector_column_as_faiss_does(values, problem):
    client = QdrantClient(location=":memory:")
    dataset = Dataset.from_dict({"v": values})
    with pytest.raises(SearchIndexError, match=problem):
        qdrant.build(client, dataset, "q", column="v", version="1", batch_size=1)


def test_filters_and_arguments_outside_the_index_are_named(tmp_path):
    index = faiss.build(VECTORS, "v")
    for rows in ([-1, 0], [3], [2**64]):
        with pytest.raises(SearchIndexError, match=r"filter row position.* (not a row|below 3)"):
            index.search([1.0, 2.0], filter=rows)
    assert index.search([1.0, 2.0], k=3, filter=[2])[1] == [2]
    with pytest.raises(FileNotFoundError, match=r"its folder does not exist"):
        index.save(tmp_path / "missing" / "v.faiss")
    client = QdrantClient(location=":memory:")
    with pytest.raises(SearchIndexError, match=r"qdrant collection or alias 'nope' not found"):
        qdrant.QdrantIndex(client, "nope").search([1.0, 2.0])
    with pytest.raises(SearchIndexError, match=r"row_limit must be a non-negative integer"):
        qdrant.QdrantIndex(client, "nope", row_limit=-1)
