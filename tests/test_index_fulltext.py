"""Embedded full-text index (tantivy): BM25 ranking and scores, phrases against terms, several
columns, filters, ids, query syntax errors, escaping, save/open, Unicode, nulls, errors."""

from __future__ import annotations

import math
import os

import pytest
import tantivy
from datasets import Dataset, Features, List, Value

from ds_assets.index import fulltext
from ds_assets.index.base import SearchIndexError
from ds_assets.index.fulltext import MANIFEST_FILE, FullTextIndex

DOCS = {
    "title": [
        "Pipelines for machine learning",  # 0: the words, not the phrase
        "Notes",  # 1
        "Learning to cook",  # 2
        "Machine learning pipelines",  # 3: the exact phrase
        "Pipelines, machines and learning in learning machines",  # 4: words repeated
        None,  # 5: no title
    ],
    "body": [
        "how we build pipelines that do machine learning at scale",
        "machine learning pipelines in production: a short note",  # the phrase in the body
        "a kitchen story",
        "a tour of the tools",
        "factories and pipelines",
        "whale songs",
    ],
    "lang": ["en", "en", "fr", "en", "de", "en"],
}


@pytest.fixture
def docs() -> Dataset:
    return Dataset.from_dict(DOCS)


@pytest.fixture
def index(docs, tmp_path) -> FullTextIndex:
    return fulltext.build(docs, ["title", "body"], tmp_path / "index", batch_size=4)


def test_an_exact_phrase_ranks_its_documents_first_and_alone(index):
    scores, rows = index.search('"machine learning pipelines"')
    assert set(rows) == {1, 3}  # the phrase in the body of 1, the title of 3
    assert scores == sorted(scores, reverse=True) and all(score > 0 for score in scores)
    terms_scores, terms_rows = index.search("machine learning pipelines")
    assert set(terms_rows) == {0, 1, 2, 3, 4}  # any of the words
    assert terms_scores == sorted(terms_scores, reverse=True)
    title_scores, title_rows = index.search('title:"machine learning pipelines"')
    assert title_rows == [3]


def test_phrase_queries_respect_order_and_slop(index):
    assert index.search('"learning machine"')[1] == []
    assert index.search('"pipelines machine"')[1] == []
    assert index.search('"pipelines machine"~1')[1] == [0]  # "pipelines for machine learning"
    assert set(index.search("+learning -pipelines")[1]) == {2}


def test_scores_are_bm25(tmp_path):
    """tantivy's score against the BM25 formula (k1=1.2, b=0.75) computed here."""
    texts = ["apple banana apple", "banana cherry", "cherry cherry cherry date", "apple"]
    index = fulltext.build(Dataset.from_dict({"t": texts}), "t", tmp_path / "bm25")
    lengths = [len(text.split()) for text in texts]
    average = sum(lengths) / len(lengths)

    def bm25(term: str, row: int) -> float:
        having = sum(term in text.split() for text in texts)
        idf = math.log(1 + (len(texts) - having + 0.5) / (having + 0.5))
        tf = texts[row].split().count(term)
        return idf * tf * 2.2 / (tf + 1.2 * (1 - 0.75 + 0.75 * lengths[row] / average))

    scores, rows = index.search("apple cherry")
    expected = {row: bm25("apple", row) + bm25("cherry", row) for row in range(len(texts))}
    assert rows == sorted((r for r in expected if expected[r]), key=lambda r: -expected[r])
    assert scores == pytest.approx([expected[row] for row in rows], rel=1e-5)


def test_queries_search_every_text_column_and_can_name_one(index):
    assert index.search("kitchen")[1] == [2]  # body only
    assert index.search("notes")[1] == [1]  # title only
    assert index.search("body:notes")[1] == []
    assert set(index.search("title:pipelines")[1]) == {0, 3, 4}
    assert index.search("whale")[1] == [5]  # a row whose title is null


def test_filter_must_match_and_leaves_scores_unchanged(index):
    scores, rows = index.search("machine learning pipelines")
    by_row = dict(zip(rows, scores, strict=True))
    filtered_scores, filtered_rows = index.search(
        "machine learning pipelines", filter="title:pipelines"
    )
    assert set(filtered_rows) == {0, 3, 4}
    assert filtered_scores == pytest.approx([by_row[row] for row in filtered_rows])
    assert set(index.search("pipelines", filter="_row:[3 TO 4]")[1]) == {3, 4}
    query = tantivy.Query.term_query(index.index.schema, "body", "kitchen")
    assert index.search("learning", filter=query)[1] == [2]
    assert index.search("*", k=10, filter="whale")[1] == [5]


def test_id_column_is_indexed_for_filters(tmp_path):
    dataset = Dataset.from_dict({"sku": ["A-1", "B-2", "C-3"], "text": ["red shoe"] * 3})
    index = fulltext.build(dataset, "text", tmp_path / "ids", id_column="sku")
    assert index.search("shoe", filter='sku:"B-2"')[1] == [1]
    assert index.describe()["id_column"] == "sku"
    numbers = Dataset.from_dict({"n": [10, 20, 30], "text": ["red shoe"] * 3})
    by_number = fulltext.build(numbers, "text", tmp_path / "numbers", id_column="n")
    assert set(by_number.search("shoe", filter="n:[15 TO 40]")[1]) == {1, 2}


def test_bad_query_syntax_is_a_clear_error_never_a_crash(index):
    for query in ['"unclosed', "title:", "(", "AND", "a^", "[1 TO", "\\", "nosuchcolumn:x"]:
        with pytest.raises(SearchIndexError, match=r"full-text query .*escape=True") as error:
            index.search(query)
        assert repr(query) in str(error.value)
    with pytest.raises(SearchIndexError, match=r"full-text filter '\(': .*tantivy query string"):
        index.search("learning", filter="(")
    with pytest.raises(SearchIndexError, match="a tantivy query string or a tantivy.Query"):
        index.search("learning", filter=["title"])
    with pytest.raises(SearchIndexError, match="queries are strings"):
        index.search(3)
    assert index.search("") == ([], [])


def test_escape_takes_the_query_as_plain_words(index):
    assert index.search('"unclosed (title:', escape=True) == ([], [])
    plain = index.search("machine learning pipelines")
    assert index.search("Machine, learning: (pipelines)!", escape=True) == plain
    assert index.search('"learning machine"', escape=True) == index.search("learning machine")
    assert index.search_batch(["kitchen", "title:"], escape=True)[1] == [[2], []]
    scores, rows = index.nearest_examples("whale songs!", k=1, escape=True)
    assert rows == {"title": [None], "body": ["whale songs"], "lang": ["en"]}


def test_nearest_examples_returns_the_rows(index, docs):
    scores, rows = index.nearest_examples('"machine learning pipelines"', k=2)
    positions = index.search('"machine learning pipelines"', k=2)[1]
    assert rows == docs.select(positions)[:]
    # no hits: an empty list per column, as datasets' own get_nearest_examples gives
    assert index.nearest_examples("nothing-matches-this") == (
        [],
        {name: [] for name in docs.column_names},
    )


def test_search_batch_gives_one_result_per_query(index):
    scores, rows = index.search_batch(["kitchen", "whale", "zzz"], k=3)
    assert rows == [[2], [5], []] and len(scores) == 3


def test_open_gives_the_same_results_and_checks_the_folder(index, docs, tmp_path):
    folder = tmp_path / "index"
    opened = FullTextIndex.open(folder, dataset=docs)
    for query in ['"machine learning pipelines"', "learning", "title:notes"]:
        assert opened.search(query) == index.search(query)
    assert (
        opened.describe()
        == index.describe()
        == {
            "engine": "fulltext",
            "library": "tantivy",
            "count": 6,
            "text_columns": ["title", "body"],
            "id_column": None,
            "row_field": "_row",
            "tokenizer": "default",
            "scoring": "bm25",
        }
    )
    assert opened.nearest_examples("kitchen", k=1)[1]["title"] == ["Learning to cook"]
    with pytest.raises(SearchIndexError, match="holds 6 documents but the dataset has 2 rows"):
        FullTextIndex.open(folder, dataset=docs.select([0, 1]))
    with pytest.raises(SearchIndexError, match=f"no {MANIFEST_FILE}; not a full-text index"):
        FullTextIndex.open(tmp_path)
    without_dataset = FullTextIndex.open(folder)
    with pytest.raises(SearchIndexError, match="opened without its dataset"):
        without_dataset.nearest_examples("kitchen")
    (folder / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(SearchIndexError, match=f"{MANIFEST_FILE}: unreadable"):
        FullTextIndex.open(folder)


def test_unicode_text_is_tokenized_and_case_folded(tmp_path):
    texts = ["Crème brûlée au café", "Straße in München", "Москва — столица", "東京 タワー 🙂"]
    index = fulltext.build(Dataset.from_dict({"t": texts}), "t", tmp_path / "unicode")
    assert index.search("CAFÉ")[1] == [0]
    assert index.search('"crème brûlée"')[1] == [0]
    assert index.search("straße")[1] == [1]
    assert index.search("москва")[1] == [2]
    assert index.search("東京")[1] == [3]
    assert index.search("cafe")[1] == []  # no accent folding: the default tokenizer keeps them


def test_nulls_and_lists_of_strings(tmp_path):
    dataset = Dataset.from_dict(
        {"tags": [["red", "big dog"], None, [None, "cat"], []], "note": [None, "dog", None, None]}
    )
    assert dataset.features["tags"] == List(Value("string"))
    index = fulltext.build(dataset, ["tags", "note"], tmp_path / "lists")
    assert index.count() == 4
    assert set(index.search("dog")[1]) == {0, 1}
    assert index.search("cat")[1] == [2]
    assert index.search('"red big"')[1] == []  # a phrase does not run across list items


def test_rows_are_positions_in_the_indexed_dataset_version(docs, tmp_path):
    shuffled = docs.shuffle(seed=1)
    index = fulltext.build(shuffled, ["title", "body"], tmp_path / "shuffled")
    position = shuffled["body"].index("a kitchen story")
    assert index.search("kitchen")[1] == [position]
    assert index.nearest_examples("kitchen", k=1)[1]["body"] == ["a kitchen story"]


def test_an_empty_dataset_gives_an_empty_index(tmp_path):
    empty = Dataset.from_dict({"t": []}, features=Features({"t": Value("string")}))
    index = fulltext.build(empty, "t", tmp_path / "empty")
    assert index.count() == 0 and index.search("anything") == ([], [])


def test_build_errors_name_the_column_or_folder(docs, tmp_path):
    cases = [
        (lambda: fulltext.build(docs, "missing", tmp_path / "a"), r"column 'missing' is not in"),
        (lambda: fulltext.build(docs, [], tmp_path / "a"), "text_columns is empty"),
        (lambda: fulltext.build(docs, ["title", "title"], tmp_path / "a"), "names a column twice"),
        (lambda: fulltext.build(docs, "body", tmp_path / "a", id_column="body"), "also a text"),
        (lambda: fulltext.build(docs, "body", tmp_path / "a", batch_size=0), "batch_size must"),
    ]
    numbers = Dataset.from_dict({"n": [1, 2], "_row": ["a", "b"], "f": [0.5, 1.5], "s": ["a", "b"]})
    cases += [
        (lambda: fulltext.build(numbers, "n", tmp_path / "a"), r"column 'n' is Value\('int64'\)"),
        (lambda: fulltext.build(numbers, "_row", tmp_path / "a"), "'_row' cannot be a tantivy"),
        (lambda: fulltext.build(numbers, "s", tmp_path / "a", id_column="f"), "'f' is Value"),
    ]
    for call, message in cases:
        with pytest.raises(SearchIndexError, match=message):
            call()
    assert not os.path.exists(tmp_path / "a")  # validation happens before any file is written
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(SearchIndexError, match="full: the folder is not empty"):
        fulltext.build(docs, "body", tmp_path / "full")
    assert os.listdir(tmp_path / "full") == ["keep.txt"]


def test_a_failed_build_leaves_no_half_written_index(tmp_path):
    dataset = Dataset.from_dict({"id": ["a", "b", None], "text": ["x", "y", "z"]})
    created = tmp_path / "created"
    with pytest.raises(SearchIndexError, match=r"id_column 'id', row 2: null id"):
        fulltext.build(dataset, "text", created, id_column="id")
    assert not created.exists()
    given = tmp_path / "given"
    given.mkdir()
    with pytest.raises(SearchIndexError, match="row 2: null id"):
        fulltext.build(dataset, "text", given, id_column="id")
    assert os.listdir(given) == []
    assert fulltext.build(dataset.select([0, 1]), "text", given, id_column="id").count() == 2
