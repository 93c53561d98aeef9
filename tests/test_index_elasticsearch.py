"""`ds_assets.index.elasticsearch` and `ElasticsearchResource` against a real Elasticsearch REST
server: noida-db on loopback, or the cluster at `$ELASTICSEARCH_URL` (see tests/es_server.py)."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import threading
import traceback
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from dagster import DagsterInstance, EnvVar, asset, materialize
from datasets import ClassLabel, Dataset, Features, Image, List, Value
from elasticsearch import AuthenticationException, Elasticsearch, NotFoundError
from elasticsearch import ConnectionError as ESConnectionError
from pydantic import ValidationError

from ds_assets.index import elasticsearch as es_index
from ds_assets.index.base import SearchIndexError, StaleIndexError
from ds_assets.index.elasticsearch import ROW_FIELD, BulkLoadError, ElasticsearchIndex
from resources.elasticsearch import ElasticsearchResource
from tests.bench_scripts import run_bench_script
from tests.es_server import elasticsearch_server  # noqa: F401 - the session fixture
from tests.servers import free_port


@pytest.fixture
def client(elasticsearch_server):  # noqa: F811 - the fixture imported above
    return elasticsearch_server.client()


@pytest.fixture
def alias(elasticsearch_server):  # noqa: F811
    return elasticsearch_server.unique_name()


def physical_indices(client, alias: str) -> list[str]:
    """Every physical `<alias>__*` index on the server."""
    return sorted(client.indices.get(index=f"{alias}__*", expand_wildcards="all").body)


def aliased(client, alias: str) -> list[str]:
    """The physical indices the alias points at ([] when there is no such alias)."""
    try:
        return sorted(client.indices.get_alias(name=alias).body)
    except NotFoundError:
        return []


def test_an_exact_phrase_ranks_first_where_plain_bm25_would_not(client, alias):
    texts = [
        "york city new york new city york",  # every word, often: plain BM25's favourite
        "a long travel guide to new york city for visitors who like slow walks",
        "cats and dogs",
        "city lights at night",
        "a new day",
    ]
    dataset = Dataset.from_dict({"text": texts})
    index = es_index.build(client, dataset, alias, ["text"], version="v1")
    plain = client.search(index=alias, query={"match": {"text": "new york city"}})
    plain_rows = [hit["_source"][ROW_FIELD] for hit in plain["hits"]["hits"]]
    assert plain_rows[0] == 0  # the test has teeth: without the phrase clause, row 0 wins

    scores, rows = index.search("new york city", k=5)
    assert rows[0] == 1
    assert set(rows) == set(plain_rows)  # same matches, only the order changes
    assert scores == sorted(scores, reverse=True)


def test_scores_and_rows_match_datasets_own_elasticsearch_index(client, alias):
    texts = ["the cat sat on the mat", "a dog and a cat", "birds fly high", "cat cat cat",
             "dogs bark at birds", "nothing to see here"]  # fmt: skip
    dataset = Dataset.from_dict({"text": texts, "n": list(range(len(texts)))})
    ours = es_index.build(client, dataset, alias, ["text"], version="v1")
    reference = Dataset.from_dict(dataset.to_dict())  # datasets forbids select() once indexed
    reference.add_elasticsearch_index("text", es_client=client, es_index_name=f"{alias}__datasets")
    client.indices.refresh(index=f"{alias}__datasets")  # datasets does not refresh
    try:
        for query in ["cat birds", "dog mat", "high"]:  # no two words of a query adjacent
            theirs = reference.search("text", query, k=10)
            scores, rows = ours.search(query, k=10)
            ours_by_row = dict(zip(rows, scores, strict=True))
            theirs_by_row = dict(zip(theirs.indices, theirs.scores, strict=True))
            assert ours_by_row.keys() == theirs_by_row.keys(), query
            if " " in query:  # no phrase match: pure BM25, the very scores datasets gets
                for row, score in theirs_by_row.items():
                    assert ours_by_row[row] == pytest.approx(score, rel=1e-5), (query, row)
            else:  # a one-word phrase is the word itself: the same order
                assert sorted(ours_by_row, key=ours_by_row.get) == sorted(
                    theirs_by_row, key=theirs_by_row.get
                )
        scores, examples = ours.nearest_examples("dog mat", k=2)
        expected = reference.get_nearest_examples("text", "dog mat", k=2)
        assert examples == expected.examples
        assert scores == pytest.approx(expected.scores, rel=1e-5)
    finally:
        reference.drop_index("text")
        client.options(ignore_status=404).indices.delete(index=f"{alias}__datasets")


def test_hits_are_row_positions_of_the_dataset_as_given(client, alias):
    source = Dataset.from_dict(
        {"key": [f"doc-{i}" for i in range(40)], "text": [f"word{i % 7} common" for i in range(40)]}
    )
    dataset = source.shuffle(seed=3).select(range(30))  # an indices mapping over the table
    index = es_index.build(client, dataset, alias, "text", id_column="key", version="v1")
    scores, rows = index.search("word3", k=30)
    expected = [row for row, text in enumerate(dataset["text"]) if text.startswith("word3 ")]
    assert sorted(rows) == expected
    documents = client.mget(index=alias, ids=[dataset[row]["key"] for row in rows])["docs"]
    assert [document["_source"][ROW_FIELD] for document in documents] == rows  # _id: id_column
    hit_scores, examples = index.nearest_examples("word3", k=30)
    assert examples == dataset.select(rows).to_dict()
    assert hit_scores == scores


def test_search_batch_is_msearch_with_the_answers_of_single_searches(client, alias):
    titles = ["red fox", "brown dog", "red dog", "quick brown fox"]
    dataset = Dataset.from_dict(
        {"title": titles, "body": ["runs", "sleeps", "barks at the fox", "jumps"]}
    )
    index = es_index.build(client, dataset, alias, ["title", "body"], version="v1")
    queries = ["red", "fox", "brown dog", "nothing matches this"]
    scores, rows = index.search_batch(queries, k=3)
    assert rows == [index.search(query, k=3)[1] for query in queries]
    assert scores == [index.search(query, k=3)[0] for query in queries]
    assert rows[1] and set(rows[1]) == {0, 2, 3}  # "fox" in a title or in a body
    assert rows[3] == [] and scores[3] == []
    assert index.search_batch([], k=3) == ([], [])


def test_k_above_the_result_window_is_capped_at_the_window_and_the_count(client, alias, caplog):
    index = es_index.build(client, Dataset.from_dict({"title": ["red fox", "blue fox"]}), alias,
                           ["title"], version="v1")  # fmt: skip
    assert index.search("fox", k=10_001) == index.search("fox", k=2)
    assert index.search_batch(["red", "fox"], k=50_000) == index.search_batch(["red", "fox"], k=2)
    assert index.result_size(10_001) == 2 and index.result_size(7) == 7

    small = f"{alias}-small"
    titles = [f"fox {'fox ' * i}" for i in range(8)]
    narrow = es_index.build(client, Dataset.from_dict({"title": titles}), small, ["title"],
                            settings={"index": {"max_result_window": 5}}, version="v1")  # fmt: skip
    try:
        with caplog.at_level(logging.WARNING, logger=es_index.__name__):
            scores, rows = narrow.search("fox", k=6)
        assert (scores, rows) == narrow.search("fox", k=5) and len(rows) == 5
        assert "only the best 5 hits are returned" in caplog.text
    finally:
        client.indices.delete(index=f"{small}__v1")


def test_filter_is_passed_through_as_the_bool_filter_clause(client, alias):
    langs = ["en", "fr", "de"]
    dataset = Dataset.from_dict({
        "text": [f"annual report number {i}" for i in range(30)],
        "lang": [langs[i % 3] for i in range(30)],
        "year": [2000 + i for i in range(30)],
    })  # fmt: skip
    index = es_index.build(client, dataset, alias, ["text"], version="v1")

    def expected(predicate):
        return sorted(row for row, example in enumerate(dataset) if predicate(example))

    _, rows = index.search("report", k=30, filter={"term": {"lang.keyword": "fr"}})
    assert sorted(rows) == expected(lambda e: e["lang"] == "fr")
    clauses = [{"term": {"lang.keyword": "en"}}, {"range": {"year": {"gte": 2015}}}]
    _, rows = index.search("report", k=30, filter=clauses)
    assert sorted(rows) == expected(lambda e: e["lang"] == "en" and e["year"] >= 2015)
    _, batch_rows = index.search_batch(["report", "annual"], k=30, filter=clauses)
    assert [sorted(r) for r in batch_rows] == [sorted(rows)] * 2


def test_bad_filters_and_queries_raise_errors_naming_them(client, alias):
    dataset = Dataset.from_dict({"text": ["a b", "c d"]})
    index = es_index.build(client, dataset, alias, ["text"], version="v1")
    with pytest.raises(SearchIndexError, match="filter must be an Elasticsearch query dict"):
        index.search("a", filter="lang:en")
    with pytest.raises(SearchIndexError, match=r"search for 'a' on .*bogus"):
        index.search("a", filter={"bogus": {"x": 1}})
    with pytest.raises(SearchIndexError, match=r"search for 'a b' on .*bogus"):
        index.search_batch(["a b", "b"], filter=[{"bogus": {}}])
    with pytest.raises(SearchIndexError, match="queries are strings"):
        index.search(["a"])
    missing = ElasticsearchIndex(client, f"{alias}-missing", ["text"])
    with pytest.raises(SearchIndexError, match=f"count on '{alias}-missing' failed \\(404\\)"):
        missing.count()


def test_mappings_are_inferred_from_features_and_documents_hold_what_they_map(client, alias):
    features = Features({
        "title": Value("string"), "tags": List(Value("string")), "year": Value("int16"),
        "big": Value("uint64"), "score": Value("float32"), "ok": Value("bool"),
        "label": ClassLabel(names=["neg", "pos"]), "when": Value("timestamp[s]"),
        "vector": List(Value("float32")), "blob": Value("binary"), "image": Image(),
    })  # fmt: skip
    dataset = Dataset.from_dict({
        "title": ["first", None], "tags": [["a", "b"], []], "year": [1999, 2024],
        "big": [2**40 + 1, 0], "score": [float("nan"), 0.5], "ok": [True, None],
        "label": [1, 0], "when": [datetime(2024, 1, 2, 3, 4, 5), None],
        "vector": [[0.1, 0.2], [0.3, 0.4]], "blob": [b"\x00", b"\x01"], "image": [None, None],
    }, features=features)  # fmt: skip
    es_index.build(client, dataset, alias, ["title", "tags"], version="v1")
    (physical,) = aliased(client, alias)
    mapping = client.indices.get_mapping(index=alias)[physical]["mappings"]
    types = {name: field["type"] for name, field in mapping["properties"].items()}
    assert types == {"title": "text", "tags": "text", "year": "short", "big": "unsigned_long",
                     "score": "float", "ok": "boolean", "label": "long", "when": "date",
                     ROW_FIELD: "long"}  # fmt: skip
    assert mapping["properties"]["title"]["fields"]["keyword"]["type"] == "keyword"
    assert mapping["_meta"]["ds_assets"]["num_rows"] == 2
    source = client.get(index=alias, id="0")["_source"]
    assert source == {"title": "first", "tags": ["a", "b"], "year": 1999, "big": 2**40 + 1,
                      "score": None, "ok": True, "label": 1, "when": "2024-01-02T03:04:05",
                      ROW_FIELD: 0}  # NaN sent as null; vector, blob, image left out  # fmt: skip
    assert client.get(index=alias, id="1")["_source"]["title"] is None  # a null text: no terms
    assert ElasticsearchIndex(client, alias, ["title", "tags"]).search("a", k=2)[1] == [0]


def test_explicit_mappings_are_used_as_given(client, alias):
    dataset = Dataset.from_dict(
        {"text": ["she runs daily", "a quiet walk"], "code": ["A-1", "B-2"], "other": [1, 2]}
    )
    mappings = {"properties": {"text": {"type": "text", "analyzer": "english"},
                               "code": {"type": "keyword"}}}  # fmt: skip
    index = es_index.build(client, dataset, alias, ["text"], mappings=mappings, version="v1")
    assert mappings == {"properties": {"text": {"type": "text", "analyzer": "english"},
                                       "code": {"type": "keyword"}}}  # not modified  # fmt: skip
    (physical,) = aliased(client, alias)
    properties = client.indices.get_mapping(index=alias)[physical]["mappings"]["properties"]
    assert properties["text"] == {"type": "text", "analyzer": "english"}
    assert properties["code"] == {"type": "keyword"} and properties[ROW_FIELD] == {"type": "long"}
    assert client.get(index=alias, id="1")["_source"] == {"text": "a quiet walk", "code": "B-2",
                                                          ROW_FIELD: 1}  # fmt: skip
    assert index.search("running", k=2)[1] == [0]  # the english analyzer stems
    assert index.search("x", k=2, filter={"term": {"code": "B-2"}})[1] == []
    assert index.search("quiet", k=2, filter={"term": {"code": "B-2"}})[1] == [1]


@pytest.mark.parametrize("parallel", [True, False], ids=["parallel_bulk", "streaming_bulk"])
def test_rejected_documents_fail_the_build_and_keep_the_previous_version(client, alias, parallel):
    first = Dataset.from_dict(
        {"text": ["old one", "old two", "old three"], "code": ["1", "2", "3"]}
    )
    mappings = {"properties": {"text": {"type": "text"}, "code": {"type": "long"}}}
    es_index.build(client, first, alias, ["text"], mappings=mappings, version="v1")
    codes = [str(i) for i in range(1200)]
    codes[3], codes[701] = "three", "7o1"  # a long field cannot hold them
    second = Dataset.from_dict({"text": [f"new {i}" for i in range(1200)], "code": codes})

    with pytest.raises(BulkLoadError) as raised:
        es_index.build(client, second, alias, ["text"], mappings=mappings, version="v2",
                       parallel=parallel)  # fmt: skip
    message = str(raised.value)
    assert f"index '{alias}__v2'" in message
    assert "row 3 (id '3')" in message and "[code] of type [long]" in message
    assert f"the alias '{alias}' stays on ['{alias}__v1']" in message
    assert raised.value.failures[0]["row"] == 3 and raised.value.failures[0]["status"] == 400
    assert aliased(client, alias) == [f"{alias}__v1"]
    assert physical_indices(client, alias) == [f"{alias}__v1"]  # the new index is gone
    old = ElasticsearchIndex(client, alias, ["text"])
    assert old.count() == 3 and old.search("old two", k=1)[1] == [1]


class _BulkProxy(BaseHTTPRequestHandler):
    """Forwards every request to the test server and records the documents of each `_bulk`
    request; while `server.reject_bulks` is above 0, a bulk request is answered here instead,
    every document rejected with 429 as a busy cluster does (noida-db never answers 429)."""

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        bulk = self.path.split("?")[0].endswith("/_bulk")
        if bulk and self.server.reject_bulks > 0:
            self.server.reject_bulks -= 1
            self.server.rejected.append(len(_bulk_actions(body)))
            return self._reply(200, {"Content-Type": "application/json"}, _too_many(body))
        if bulk:
            self.server.forwarded.append(len(_bulk_actions(body)))
        upstream = urlsplit(self.server.upstream)
        connection_class = (
            http.client.HTTPSConnection
            if upstream.scheme == "https"
            else http.client.HTTPConnection
        )
        connection = connection_class(upstream.netloc, timeout=120)
        headers = {key: value for key, value in self.headers.items() if key.lower() != "host"}
        connection.request(self.command, self.path, body=body or None, headers=headers)
        response = connection.getresponse()
        answer = response.read()
        skip = {"transfer-encoding", "connection", "content-length"}
        kept = {key: value for key, value in response.getheaders() if key.lower() not in skip}
        connection.close()
        self._reply(response.status, kept, answer)

    def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for key, value in {"X-Elastic-Product": "Elasticsearch", **headers}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

    def log_message(self, *args) -> None:
        pass


def _bulk_actions(body: bytes) -> list[dict]:
    """The action lines of a bulk body (each `create` is followed by its document)."""
    lines = [json.loads(line) for line in body.splitlines() if line.strip()]
    return lines[0::2]


def _too_many(body: bytes) -> bytes:
    items = [
        {op: {"_index": action["_index"], "_id": action["_id"], "status": 429,
              "error": {"type": "es_rejected_execution_exception",
                        "reason": "rejected execution of coordinating operation"}}}
        for line in _bulk_actions(body)
        for op, action in line.items()
    ]  # fmt: skip
    return json.dumps({"took": 1, "errors": True, "items": items}).encode()


@pytest.fixture
def bulk_proxy(elasticsearch_server):  # noqa: F811
    """A `_BulkProxy` in front of the test server; `.client()` talks to it."""
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _BulkProxy)
    proxy.upstream, proxy.reject_bulks = elasticsearch_server.url, 0
    proxy.forwarded, proxy.rejected = [], []
    url = f"http://127.0.0.1:{proxy.server_address[1]}"
    proxy.client = lambda: Elasticsearch(url, api_key=elasticsearch_server.api_key,
                                         request_timeout=120)  # fmt: skip
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()


def test_a_parallel_load_sends_no_chunk_after_the_first_with_rejections(bulk_proxy, alias):
    rows, chunk = 3000, 100
    codes = [str(i) for i in range(rows)]
    codes[5] = "five"
    dataset = Dataset.from_dict({"text": [f"doc {i}" for i in range(rows)], "code": codes})
    mappings = {"properties": {"text": {"type": "text"}, "code": {"type": "long"}}}
    client = bulk_proxy.client()
    with pytest.raises(BulkLoadError) as raised:
        es_index.build(client, dataset, alias, ["text"], mappings=mappings, version="v1",
                       chunk_size=chunk, parallel=True)  # fmt: skip
    assert "row 5 (id '5')" in str(raised.value) and "[code] of type [long]" in str(raised.value)
    assert [failure["row"] for failure in raised.value.failures] == [5]
    # the chunks in flight when the first one came back, and not the 27 others
    assert sum(bulk_proxy.forwarded) <= (es_index.BULK_THREADS + 1) * chunk
    assert physical_indices(client, alias) == []


@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "sequential"])
def test_documents_rejected_with_429_are_sent_again_until_accepted(bulk_proxy, alias, parallel):
    bulk_proxy.reject_bulks = 1
    dataset = Dataset.from_dict({"text": [f"doc {i}" for i in range(250)]})
    client = bulk_proxy.client()
    index = es_index.build(client, dataset, alias, ["text"], version="v1", chunk_size=100,
                           parallel=parallel)  # fmt: skip
    assert bulk_proxy.rejected == [100]  # the first chunk was turned away once
    assert sorted(bulk_proxy.forwarded) == [50, 100, 100]  # then every document went through
    assert index.count() == 250 and index.search("doc 7", k=1)[1] == [7]


def test_append_refuses_an_index_build_did_not_make(client, alias):
    manual = f"{alias}__manual"  # named like a build's, but without its _meta record
    client.indices.create(index=manual, mappings={"properties": {"text": {"type": "text"}}})
    client.indices.update_aliases(actions=[{"add": {"index": manual, "alias": alias}}])
    with pytest.raises(StaleIndexError, match=f"points at '{manual}', which build\\(\\) did not"):
        es_index.append(client, Dataset.from_dict({"text": ["new"]}), alias, ["text"],
                        row_offset=0)  # fmt: skip
    assert client.count(index=manual)["count"] == 0


@pytest.mark.parametrize("parallel", [False, True])
def test_append_adds_rows_after_the_last_all_or_nothing_unseen_by_readers_of_the_old_rows(
    client, alias, parallel
):
    mappings = {"properties": {"text": {"type": "text"}, "code": {"type": "long"}}}
    first = Dataset.from_dict({"text": ["old fox", "old dog"], "code": ["1", "2"]})
    es_index.build(client, first, alias, ["text"], mappings=mappings, version="v1")
    old_reader = ElasticsearchIndex(client, alias, ["text"], row_limit=2)
    codes = [str(i) for i in range(30)]
    codes[25] = "x25"  # a long field cannot hold it
    bad = Dataset.from_dict({"text": [f"new fox {i}" for i in range(30)], "code": codes})
    with pytest.raises(BulkLoadError, match=r"(?s)the documents it added.*row 27 \(id '27'\)"):
        es_index.append(client, bad, alias, ["text"], row_offset=2, chunk_size=10,
                        parallel=parallel)  # fmt: skip
    assert ElasticsearchIndex(client, alias, ["text"]).count() == 2  # what it added is gone

    more = Dataset.from_dict({"text": ["new fox", "new cat"], "code": ["3", "4"]})
    new = es_index.append(client, more, alias, ["text"], row_offset=2)
    assert new.count() == 4 and aliased(client, alias) == [f"{alias}__v1"]
    assert sorted(new.search("fox", k=5)[1]) == [0, 2]
    assert old_reader.count() == 2 and old_reader.search("fox", k=5)[1] == [0]
    assert old_reader.search("fox", k=5, filter={"term": {"code": 3}})[1] == []
    with pytest.raises(StaleIndexError, match=r"holds 4 documents; append\(row_offset=3\)"):
        es_index.append(client, more, alias, ["text"], row_offset=3)
    with pytest.raises(StaleIndexError, match=r"alias 'nothing-here' on one index made by build"):
        es_index.append(client, more, "nothing-here", ["text"], row_offset=0)


def test_append_refuses_an_id_an_earlier_row_has_and_leaves_it_alone(client, alias):
    first = Dataset.from_dict({"key": ["a", "b"], "text": ["apple", "berry"]})
    es_index.build(client, first, alias, ["text"], id_column="key", version="v1")
    clash = Dataset.from_dict({"key": ["c", "a"], "text": ["cherry", "avocado"]})
    with pytest.raises(BulkLoadError, match=r"row 3 \(id 'a'\): version_conflict"):
        es_index.append(client, clash, alias, ["text"], id_column="key", row_offset=2)
    index = ElasticsearchIndex(client, alias, ["text"])
    assert index.count() == 2 and index.search("apple", k=1)[1] == [0]


def test_append_names_a_text_column_the_new_rows_lack(client, alias):
    es_index.build(client, Dataset.from_dict({"text": ["apple"]}), alias, ["text"], version="v1")
    renamed = Dataset.from_dict({"body": ["cherry"]})
    with pytest.raises(
        SearchIndexError, match=r"text column 'text' is not in the dataset \['body'\]"
    ):
        es_index.append(client, renamed, alias, ["text"], row_offset=1)
    assert ElasticsearchIndex(client, alias, ["text"]).count() == 1


def test_duplicate_ids_are_named_and_nothing_is_left_behind(client, alias):
    dataset = Dataset.from_dict({"key": ["a", "b", "c", "b"], "text": ["w", "x", "y", "z"]})
    with pytest.raises(BulkLoadError, match=r"row 3 \(id 'b'\): version_conflict.*must be unique"):
        es_index.build(client, dataset, alias, ["text"], id_column="key", version="v1")
    assert aliased(client, alias) == []
    assert physical_indices(client, alias) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"text_columns": ["nope"]}, r"text column 'nope' is not in the dataset"),
        ({"text_columns": ["n"]}, r"text column 'n' holds Value\('int64'\); expected strings"),
        ({"text_columns": []}, r"text_columns must be column names"),
        ({"id_column": "nope"}, r"id_column 'nope' is not in the dataset"),
        ({"id_column": "f"}, r"id_column 'f' holds Value\('float64'\); expected integers or str"),
        ({"id_column": "key"}, r"id_column 'key', row 2: null id"),
        ({"index": "Docs"}, r"index \(alias\) name 'Docs': .*lowercase.*found 'D'"),
        ({"version": "v 1"}, r"version 'v 1': .*found ' '"),
        ({"chunk_size": 0}, r"chunk_size must be a positive integer"),
        ({"mappings": {"properties": {ROW_FIELD: {"type": "keyword"}}}},
         rf"\['{ROW_FIELD}'\] is \{{'type': 'keyword'\}}; that field holds the row position"),
        ({"mappings": {"properties": {"image": {"type": "object"}}}},
         r"column 'image' holds Image\(.*no JSON form"),
        ({"mappings": ["text"]}, r"mappings must be a dict"),
    ],
)  # fmt: skip
def test_bad_arguments_raise_errors_naming_the_fault(client, alias, change, message):
    dataset = Dataset.from_dict(
        {"text": ["a", "b", "c"], "n": [1, 2, 3], "f": [0.5, 1.5, 2.5], "key": ["x", "y", None],
         "image": [None, None, None]},
        features=Features({"text": Value("string"), "n": Value("int64"), "f": Value("float64"),
                           "key": Value("string"), "image": Image()}),
    )  # fmt: skip
    arguments = {"index": alias, "text_columns": ["text"], "version": "v1", **change}
    with pytest.raises(SearchIndexError, match=message):
        es_index.build(client, dataset, **arguments)
    assert physical_indices(client, alias) == []


def test_a_dataset_column_named_like_the_row_field_is_refused(client, alias):
    dataset = Dataset.from_dict({"text": ["a"], ROW_FIELD: [7]})
    with pytest.raises(SearchIndexError, match=f"has a column '{ROW_FIELD}'.*rename it"):
        es_index.build(client, dataset, alias, ["text"], version="v1")


def test_an_existing_index_named_like_the_alias_is_refused(client, alias):
    client.indices.create(index=alias)
    try:
        with pytest.raises(SearchIndexError, match=f"'{alias}' is an Elasticsearch index, not an"):
            es_index.build(client, Dataset.from_dict({"text": ["a"]}), alias, ["text"], version="1")
        assert physical_indices(client, alias) == []
    finally:
        client.indices.delete(index=alias)


def test_rebuilds_move_the_alias_and_delete_the_old_index(client, alias):
    first = Dataset.from_dict({"text": ["one", "two"]})
    second = Dataset.from_dict({"text": ["one", "two", "three"]})
    es_index.build(client, first, alias, ["text"], version="v1")
    index = es_index.build(client, second, alias, ["text"], version="v2")
    assert aliased(client, alias) == [f"{alias}__v2"]
    assert physical_indices(client, alias) == [f"{alias}__v2"]
    description = index.describe()
    assert description == {
        "engine": "elasticsearch", "alias": alias, "physical_name": f"{alias}__v2", "count": 3,
        "text_columns": ["text"], "version": "v2", "num_rows": 3, "id_column": None,
        "row_field": ROW_FIELD, "dataset_fingerprint": second._fingerprint,
    }  # fmt: skip
    empty = es_index.build(client, second.select([]), alias, ["text"], version="v3")
    assert empty.count() == 0 and empty.search("one") == ([], [])


def test_searches_during_a_rebuild_see_the_old_or_the_new_version_only(client, alias):
    old = Dataset.from_dict({"text": [f"common old {i}" for i in range(300)]})
    new = Dataset.from_dict({"text": [f"common new {i}" for i in range(1500)]})
    es_index.build(client, old, alias, ["text"], version="v1")
    reader = ElasticsearchIndex(client, alias, ["text"])
    counts, errors, stop = [], [], threading.Event()

    def search_loop():
        while not stop.is_set():
            try:
                counts.append(reader.count())
                scores, rows = reader.search("common", k=5)
                assert len(rows) == 5 and all(0 <= row < 1500 for row in rows)
            except Exception as error:  # noqa: BLE001 - every failure is the finding
                errors.append(error)

    thread = threading.Thread(target=search_loop)
    thread.start()
    try:
        es_index.build(client, new, alias, ["text"], version="v2", chunk_size=100)
        seen_after_swap = len(counts)
        while len(counts) < seen_after_swap + 3 and thread.is_alive():
            stop.wait(0.05)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert set(counts) <= {300, 1500}
    assert counts[0] == 300 and counts[-1] == 1500
    assert counts.count(300) >= 3  # the readers did run while the new index was filled
    assert physical_indices(client, alias) == [f"{alias}__v2"]


class _SecuredClusterStandIn(BaseHTTPRequestHandler):
    """Answers every request as a secured Elasticsearch answers an unknown API key: 401 and a
    security_exception naming the key's id (noida-db has no authentication to test against)."""

    def _unauthorized(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        header = self.headers.get("Authorization", "")
        key_id = base64.b64decode(header.removeprefix("ApiKey ")).decode().split(":")[0]
        reason = ("unable to authenticate with provided credentials and anonymous access is not "
                  "allowed for this request")  # fmt: skip
        error = {"type": "security_exception", "reason": reason,
                 "additional_unsuccessful_credentials": f"API key: unable to find apikey with id "
                                                        f"{key_id}"}  # fmt: skip
        body = json.dumps({"error": {"root_cause": [error], **error}, "status": 401}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("WWW-Authenticate", 'ApiKey, Basic realm="security" charset="UTF-8"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _unauthorized

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def secured_cluster():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SecuredClusterStandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_a_wrong_api_key_is_never_shown(secured_cluster, monkeypatch, tmp_path):
    secret = "Sup3rSecretKeyValue"
    encoded = base64.b64encode(f"key-id-123:{secret}".encode()).decode()
    monkeypatch.setenv("DS_ASSETS_TEST_ES_KEY", encoded)
    records = _Records()
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(records)
    root.setLevel(logging.DEBUG)
    shown: list[str] = []
    try:
        direct = ElasticsearchResource(hosts=[secured_cluster], api_key=encoded)
        shown.append(repr(direct))
        with pytest.raises(AuthenticationException) as raised:
            es_index.build(direct.get_client(), Dataset.from_dict({"text": ["a"]}), "docs",
                           ["text"], version="v1")  # fmt: skip
        shown += [str(raised.value), repr(raised.value), "".join(traceback.format_exception(
            raised.value))]  # fmt: skip
        # the failure did happen, and with the key: the server could read its id
        assert "security_exception" in str(raised.value)
        assert "key-id-123" in json.dumps(raised.value.body)
        shown.append(json.dumps(raised.value.body))

        refused = ElasticsearchResource(hosts=[f"http://127.0.0.1:{free_port()}"], api_key=encoded)
        with pytest.raises(ESConnectionError) as raised:
            refused.get_client().options(max_retries=0).info()
        shown += [str(raised.value), repr(raised.value)]

        @asset
        def docs_index(elasticsearch: ElasticsearchResource) -> None:
            dataset = Dataset.from_dict({"text": ["a red fox"]})
            es_index.build(elasticsearch.get_client(), dataset, "docs", ["text"], version="v1")

        instance = DagsterInstance.ephemeral(tempdir=str(tmp_path))
        resource = ElasticsearchResource(
            hosts=[secured_cluster], api_key=EnvVar("DS_ASSETS_TEST_ES_KEY")
        )
        result = materialize([docs_index], resources={"elasticsearch": resource},
                             instance=instance, raise_on_error=False)  # fmt: skip
        assert not result.success
        logs = instance.all_logs(result.run_id)
        shown += [str(entry) for entry in logs]
        shown.append(str(instance.get_run_by_id(result.run_id)))
        assert any("security_exception" in text for text in shown[-len(logs) - 1 :])
    finally:
        root.removeHandler(records)
        root.setLevel(previous_level)
    shown += records.lines
    leaks = [text for text in shown if encoded in text or secret in text]
    assert leaks == []


def test_hosts_holding_credentials_are_refused_without_showing_them():
    with pytest.raises(ValidationError) as raised:
        ElasticsearchResource(hosts=["https://elastic:Pa55word@es.internal:9200"])
    assert "holds credentials" in str(raised.value) and "https://***@es.internal:9200" in str(
        raised.value
    )
    assert "Pa55word" not in str(raised.value) and "Pa55word" not in repr(raised.value)
    with pytest.raises(ValidationError, match="expected a URL like https://host:9200"):
        ElasticsearchResource(hosts=["es.internal:9200"])
    with pytest.raises(ValidationError, match="hosts is empty"):
        ElasticsearchResource(hosts=[])


@pytest.mark.parametrize(
    "host",
    ["user:hunter2@es.internal:9200", "ftp://u:hunter2@es.internal:21", "http://u:hunter2@:9200",
     "https://elastic:hunter2@x@es.internal:9200", "//u:hunter2@es.internal:9200",
     "http://elastic:hunter2/x@es.internal:9200", "https://u:hunter2?#@es.internal:9200"],
)  # fmt: skip
def test_credentials_in_a_host_of_any_form_are_never_shown(host):
    with pytest.raises(ValidationError) as raised:
        ElasticsearchResource(hosts=[host])
    assert "***@" in str(raised.value)
    assert "hunter2" not in str(raised.value) and "hunter2" not in repr(raised.value)


def test_the_resource_hands_out_one_configured_client(elasticsearch_server):  # noqa: F811
    resource = ElasticsearchResource(
        hosts=[elasticsearch_server.url], api_key=elasticsearch_server.api_key
    )
    client = resource.get_client()
    assert client is resource.get_client()
    assert client.info()["tagline"] == "You Know, for Search"


def run_bench(*arguments: str) -> dict:
    return run_bench_script("index_elasticsearch_bench.py", *arguments) or {}


LIMIT_MB = 150


def test_building_a_200mb_dataset_stays_within_bounded_memory(elasticsearch_server, tmp_path):  # noqa: F811
    """Peak RSS of a build in a fresh process, above the floor of merely reading the same
    memory-mapped dataset once: bounded by the bulk chunks in flight, not by the dataset."""
    data = str(tmp_path / "data")
    run_bench("--make", data, "15000", "3000", "500")  # about 200 MB, 13 kB per document
    size_mb = Dataset.load_from_disk(data).data.nbytes / 1024**2
    assert size_mb > LIMIT_MB + 30  # a copy of the whole dataset cannot fit under the bound
    floor = run_bench("--measure", "read", data, elasticsearch_server.url)
    build = run_bench("--measure", "build", data, elasticsearch_server.url)
    assert build["rows"] == 15000
    assert build["growth_mb"] - floor["growth_mb"] < LIMIT_MB, (build, floor)


def test_an_alias_over_an_index_not_built_here_gives_a_clear_error(client, alias):
    client.indices.create(index=f"{alias}__manual")
    client.index(index=f"{alias}__manual", id="x", document={"text": "hello"}, refresh=True)
    client.indices.update_aliases(actions=[{"add": {"index": f"{alias}__manual", "alias": alias}}])
    index = ElasticsearchIndex(client, alias, ["text"])
    with pytest.raises(SearchIndexError, match=f"document 'x' .* has no '{ROW_FIELD}' field"):
        index.search("hello")
