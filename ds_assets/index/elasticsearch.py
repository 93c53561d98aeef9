"""Elasticsearch full-text index over text columns of a `datasets.Dataset`, behind an alias.

`build` creates a new physical index `<index>__<version>`, bulk-loads the rows, refreshes it and
then moves the alias `<index>` in one `update_aliases` call, so readers querying the alias see
the old version until the swap and never a half-filled index. `ElasticsearchIndex` queries the
alias with the search API of `ds_assets.index.base` (BM25 scores, larger is better).

What we build on, and what is ours:

- the official `elasticsearch` client: `helpers.streaming_bulk` for loading (chunking,
  serialization, retries of 429 rejections; run in a few threads for a parallel load),
  `msearch` for batches of queries, the index and alias APIs. Nothing here speaks HTTP or JSON
  itself.
- `datasets` / `pyarrow`: rows are read batch by batch from the memory-mapped dataset
  (`with_format("arrow").iter`), never the whole column at once.
- ours: mappings inferred from the dataset's Features, the row position stored in every
  document (`ROW_FIELD`) so hits map back to rows, an error naming the rejected documents
  (row, id, reason), the clean-up that never leaves a partial index behind the alias, and the
  query (BM25 `multi_match` with exact phrases ranked first, the caller's `filter` clause).

Mappings inferred from Features (when `mappings` is not given):

- string columns: `text` with a `keyword` sub-field (`<column>.keyword`, strings up to 256
  characters), as Elasticsearch's own dynamic mapping does: full-text search on the column and
  exact `term` filters on the sub-field;
- integers, floats, booleans (and ClassLabel, stored as its integer): their Elasticsearch type
  (`long`, `integer`, `short`, `byte`, `unsigned_long`, `double`, `float`, `half_float`,
  `boolean`); NaN and infinite floats are sent as null, which Elasticsearch accepts (it rejects
  non-finite numbers); timestamps and dates: `date` (millisecond precision);
- everything else (lists, structs, images, audio, binary, vectors) is left out of the documents:
  `nearest_examples` reads rows from the dataset itself, so the index only holds what is searched
  or filtered on. Text columns may also be lists of strings (a multi-valued `text` field).

With explicit `mappings`, they are used as given (plus `ROW_FIELD`), and the documents carry the
text columns and the dataset columns the mappings' `properties` name.

When to pick which full-text engine: `ds_assets.index.fulltext` (tantivy) needs no server and is
stored beside the dataset (notebooks, the demo, one machine); Elasticsearch when the index is
shared by services, is larger than one machine, or needs its analyzers, aggregations and
security.
"""

from __future__ import annotations

import copy
import itertools
import logging
import re
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from datasets import ClassLabel, Dataset, Features, LargeList, List, Value
from elasticsearch import ApiError, Elasticsearch, NotFoundError, TransportError, helpers

from ds_assets.index.base import SearchIndex, SearchIndexError, StaleIndexError, check_count

ROW_FIELD = "ds_assets_row"  # the row position in the indexed dataset version, in every document
PHRASE_BOOST = 10.0  # exact phrase matches outrank documents that only share words
MAX_FAILURES_SHOWN = 10
DEFAULT_RESULT_WINDOW = 10_000  # Elasticsearch's index.max_result_window unless set
BULK_THREADS = 2  # bulk requests at once in a parallel load; see bench/index_elasticsearch_bench.py
BULK_MAX_RETRIES = 3  # resends of documents rejected with 429 (too many requests), with backoff
BULK_MAX_BYTES = 5 * 1024 * 1024  # per bulk request (Elasticsearch advises 5-15 MB); bounds memory

logger = logging.getLogger(__name__)

_STRING_TYPES = {"string", "large_string"}
_SCALAR_TYPES = {
    "bool": "boolean",
    "int8": "byte",
    "int16": "short",
    "int32": "integer",
    "int64": "long",
    "uint8": "short",
    "uint16": "integer",
    "uint32": "long",
    "uint64": "unsigned_long",
    "float16": "half_float",
    "float32": "float",
    "float64": "double",
    "date32": "date",
    "date64": "date",
}
_FLOAT_TYPES = {"float16", "float32", "float64"}
_ID_TYPES = _STRING_TYPES | {t for t in _SCALAR_TYPES if t.startswith(("int", "uint"))}
_NOT_JSON_TYPES = {"binary", "large_binary"}
_FORBIDDEN_NAME = re.compile(r'[\\/*?"<>| ,#:A-Z]')
_TEXT_MAPPING = {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}


class BulkLoadError(SearchIndexError):
    """Elasticsearch rejected documents; `failures` lists the first ones (row, id, reason)."""

    def __init__(self, message: str, failures: list[dict[str, Any]]):
        super().__init__(message)
        self.failures = failures


def physical_name(index: str, version: str) -> str:
    """The physical index holding one version of the alias `index`.

    >>> physical_name("docs", "20250101t000000000000-1a2b3c4d")
    'docs__20250101t000000000000-1a2b3c4d'
    """
    _check_name(index, "index (alias) name")
    _check_name(version, "version")
    physical = f"{index}__{version}"
    if len(physical.encode()) > 255:
        raise SearchIndexError(
            f"index name {physical!r} is {len(physical.encode())} bytes; Elasticsearch allows 255"
        )
    return physical


def _check_name(name: str, what: str) -> None:
    # Elasticsearch's own rules for index names, checked before anything is sent.
    if not isinstance(name, str) or not name or name in {".", ".."}:
        raise SearchIndexError(f"{what} {name!r}: expected a non-empty lowercase name")
    bad = _FORBIDDEN_NAME.search(name)
    if bad or name.startswith(("-", "_", "+")):
        raise SearchIndexError(
            f"{what} {name!r}: Elasticsearch index names are lowercase, without "
            '\\ / * ? " < > | space , # : and do not start with - _ +'
            + (f"; found {bad.group()!r}" if bad else "")
        )


def infer_mappings(features: Features, text_columns: Sequence[str]) -> dict[str, Any]:
    """Elasticsearch mappings for a dataset's Features (see the module docstring for the rules).

    >>> from datasets import Features, Value, Image
    >>> features = Features({"title": Value("string"), "year": Value("int32"),
    ...                      "image": Image()})
    >>> infer_mappings(features, ["title"])["properties"]  # doctest: +NORMALIZE_WHITESPACE
    {'title': {'type': 'text', 'fields': {'keyword': {'type': 'keyword', 'ignore_above': 256}}},
     'year': {'type': 'integer'}, 'ds_assets_row': {'type': 'long'}}
    """
    _check_text_columns(features, text_columns)
    properties = {}
    for column, feature in features.items():
        field = _text_column_mapping(feature) if column in text_columns else None
        properties[column] = field or _scalar_mapping(feature)
    properties = {column: field for column, field in properties.items() if field is not None}
    return {"properties": {**properties, ROW_FIELD: {"type": "long"}}}


def _scalar_mapping(feature: Any) -> dict[str, Any] | None:
    dtype = _scalar_dtype(feature)
    if dtype is None:
        return None
    if dtype in _STRING_TYPES:
        return copy.deepcopy(_TEXT_MAPPING)
    if dtype.startswith("timestamp"):
        return {"type": "date"}
    return {"type": _SCALAR_TYPES[dtype]} if dtype in _SCALAR_TYPES else None


def _scalar_dtype(feature: Any) -> str | None:
    if isinstance(feature, ClassLabel):
        return "int64"
    return feature.dtype if isinstance(feature, Value) else None


def _text_column_mapping(feature: Any) -> dict[str, Any] | None:
    if isinstance(feature, (List, LargeList)):
        feature = feature.feature
    if _scalar_dtype(feature) in _STRING_TYPES:
        return copy.deepcopy(_TEXT_MAPPING)
    return None


def _check_text_columns(features: Features, text_columns: Sequence[str]) -> None:
    if not text_columns:
        raise SearchIndexError("text_columns is empty; expected at least one string column")
    for column in text_columns:
        if column not in features:
            raise SearchIndexError(f"text column {column!r} is not in the dataset {list(features)}")
        if _text_column_mapping(features[column]) is None:
            raise SearchIndexError(
                f"text column {column!r} holds {features[column]}; expected strings "
                "(Value('string') or a list of them)"
            )


def _document_columns(
    features: Features, text_columns: Sequence[str], mappings: Mapping[str, Any]
) -> list[str]:
    """The dataset columns sent in each document: those the mappings name, text columns first."""
    named = [c for c in mappings.get("properties", {}) if c in features and c != ROW_FIELD]
    columns = list(dict.fromkeys([*text_columns, *named]))
    for column in columns:
        if not _json_compatible(features[column]):
            raise SearchIndexError(
                f"column {column!r} holds {features[column]}, which has no JSON form to send to "
                "Elasticsearch; leave it out of the mappings (rows are read from the dataset)"
            )
    return columns


def _json_compatible(feature: Any) -> bool:
    if isinstance(feature, dict):
        return all(_json_compatible(value) for value in feature.values())
    if isinstance(feature, (List, LargeList)):
        return _json_compatible(feature.feature)
    if isinstance(feature, ClassLabel):
        return True
    if isinstance(feature, Value):
        return feature.dtype not in _NOT_JSON_TYPES and not feature.dtype.startswith(
            ("time32", "time64", "duration")
        )
    return type(feature).__name__.startswith("Array")  # ArrayND: nested lists of numbers


def _full_mappings(
    dataset: Dataset, text_columns: list[str], mappings: Mapping[str, Any] | None, meta: dict
) -> dict[str, Any]:
    if mappings is None:
        full = infer_mappings(dataset.features, text_columns)
    elif not isinstance(mappings, Mapping) or not isinstance(mappings.get("properties", {}), dict):
        raise SearchIndexError(
            f"mappings must be a dict like {{'properties': {{...}}}}, got {mappings!r}"
        )
    else:
        _check_text_columns(dataset.features, text_columns)
        full = copy.deepcopy(dict(mappings))
        properties = full.setdefault("properties", {})
        row_mapping = properties.setdefault(ROW_FIELD, {"type": "long"})
        if row_mapping != {"type": "long"}:
            raise SearchIndexError(
                f"mappings['properties'][{ROW_FIELD!r}] is {row_mapping!r}; that field holds the "
                "row position of each document and must be {'type': 'long'} (or left out)"
            )
    full["_meta"] = {**full.get("_meta", {}), "ds_assets": meta}
    return full


def _check_columns(dataset: Dataset, id_column: str | None) -> None:
    if ROW_FIELD in dataset.column_names:
        raise SearchIndexError(
            f"the dataset has a column {ROW_FIELD!r}, the field that holds each document's row "
            "position; rename it"
        )
    if id_column is None:
        return
    if id_column not in dataset.features:
        raise SearchIndexError(
            f"id_column {id_column!r} is not in the dataset {dataset.column_names}"
        )
    if _scalar_dtype(dataset.features[id_column]) not in _ID_TYPES:
        raise SearchIndexError(
            f"id_column {id_column!r} holds {dataset.features[id_column]}; expected integers or "
            "strings"
        )


def _refresh_interval_given(settings: Mapping[str, Any] | None) -> bool:
    if not settings:
        return False
    nested = settings.get("index", {})
    return (
        "refresh_interval" in settings
        or "index.refresh_interval" in settings
        or (isinstance(nested, Mapping) and "refresh_interval" in nested)
    )


def _api_reason(error: ApiError) -> str:
    body = error.body if isinstance(error.body, dict) else {}
    detail = body.get("error")
    if isinstance(detail, dict):
        return _error_text(detail)
    return str(detail or error.message)


def _error_text(error: Any) -> str:
    """`type: reason (caused by: …)` of an Elasticsearch error object."""
    if not isinstance(error, dict):
        return str(error)
    text = f"{error.get('type', 'error')}: {error.get('reason', '')}"
    cause = error.get("caused_by")
    if isinstance(cause, dict) and cause.get("reason"):
        text += f" (caused by {cause.get('type', 'error')}: {cause['reason']})"
    return text


def _indices_behind(client: Elasticsearch, alias: str) -> list[str]:
    """The physical indices the alias points at now; an error if `alias` is a concrete index."""
    try:
        return sorted(client.indices.get_alias(name=alias).body)
    except NotFoundError:
        pass
    if client.indices.exists(index=alias):
        raise SearchIndexError(
            f"{alias!r} is an Elasticsearch index, not an alias; build() keeps versions in "
            f"'{alias}__<version>' indices behind the alias {alias!r}: delete or rename that "
            "index, or pick another name"
        )
    return []


def _documents(
    dataset: Dataset,
    physical: str,
    columns: list[str],
    id_column: str | None,
    batch_size: int,
    start: int = 0,
) -> Iterator[dict[str, Any]]:
    """Bulk `create` actions, one per row, read batch by batch from the dataset; rows are
    numbered from `start`."""
    floats = [c for c in columns if _scalar_dtype(dataset.features[c]) in _FLOAT_TYPES]
    selected = list(dict.fromkeys([*columns, *([id_column] if id_column else [])]))
    for table in dataset.select_columns(selected).with_format("arrow").iter(batch_size):
        ids = _document_ids(table, id_column, start)
        sources = _finite_floats(table.select(columns), floats).to_pylist()
        for offset, (document_id, source) in enumerate(zip(ids, sources, strict=True)):
            source[ROW_FIELD] = start + offset
            yield {"_op_type": "create", "_index": physical, "_id": document_id, "_source": source}
        start += table.num_rows


def _document_ids(table: pa.Table, id_column: str | None, start: int) -> list[str]:
    if id_column is None:
        return [str(row) for row in range(start, start + table.num_rows)]
    values = table.column(id_column)
    if values.null_count:
        row = start + pc.index(pc.is_null(values), True).as_py()
        raise SearchIndexError(f"id_column {id_column!r}, row {row}: null id; expected a value")
    return [str(value) for value in values.to_pylist()]


def _finite_floats(table: pa.Table, columns: list[str]) -> pa.Table:
    # Elasticsearch rejects NaN and infinities; null is what a missing number is there.
    for column in columns:
        values = table.column(column)
        finite = pc.is_finite(values)
        if pc.all(pc.or_kleene(finite, pc.is_null(values))).as_py() is False:
            index = table.schema.get_field_index(column)
            table = table.set_column(index, column, pc.if_else(finite, values, None))
    return table


def _bulk_load(
    client: Elasticsearch,
    actions: Iterator[dict[str, Any]],
    physical: str,
    chunk_size: int,
    parallel: bool,
    aftermath: str,
) -> None:
    """Send `actions` in chunks of `chunk_size` (`BULK_THREADS` chunks at a time if `parallel`);
    the first chunk with rejected documents stops the load and raises `BulkLoadError` naming
    them."""
    chunks = _chunks(actions, chunk_size)
    try:
        failures = _load_in_parallel(client, chunks) if parallel else _load(client, chunks)
    except ApiError as error:
        raise SearchIndexError(
            f"bulk load into Elasticsearch index {physical!r} failed: {_api_reason(error)}"
        ) from error
    if failures:
        raise _rejected(failures, physical, aftermath)


def _chunks(actions: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    while chunk := list(itertools.islice(actions, size)):
        yield chunk


def _load(client: Elasticsearch, chunks: Iterator[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """`_load_chunk` of one chunk after the other, up to the first with rejections."""
    for chunk in chunks:
        failures = _load_chunk(client, chunk)
        if failures:
            return failures
    return []


def _load_in_parallel(
    client: Elasticsearch, chunks: Iterator[list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """`_load_chunk` in `BULK_THREADS` threads. A chunk is read only when a thread is about to
    be free, and none after the first with rejections: the chunks in flight then are finished,
    those not started dropped, and the failures of the first failing chunk returned.
    (`helpers.parallel_bulk` does not retry 429s, and sends every remaining chunk before its
    error surfaces.)"""
    pool = ThreadPoolExecutor(BULK_THREADS, thread_name_prefix="ds-assets-bulk")
    in_flight: deque[Future] = deque()
    failures: list[dict[str, Any]] = []
    try:
        for chunk in chunks:
            in_flight.append(pool.submit(_load_chunk, client, chunk))
            if len(in_flight) > BULK_THREADS:  # at most one chunk waits for a thread
                failures = in_flight.popleft().result()
                if failures:
                    return failures
        while in_flight and not failures:
            failures = in_flight.popleft().result()
        return failures
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _load_chunk(client: Elasticsearch, chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Send one chunk with `helpers.streaming_bulk` (in more requests if over `BULK_MAX_BYTES`);
    documents rejected with 429 (too many requests) are sent again up to `BULK_MAX_RETRIES`
    times with exponential backoff. The other rejections: row, id, status and reason of each."""
    results = helpers.streaming_bulk(
        client, chunk, chunk_size=len(chunk), max_chunk_bytes=BULK_MAX_BYTES,
        max_retries=BULK_MAX_RETRIES, raise_on_error=False, yield_ok=False,
    )  # fmt: skip
    # raise_on_error=False: with True, streaming_bulk raises at the first rejection without
    # retrying 429s (elastic/elasticsearch-py#864); its failures then name the id, not the row
    rejected = [info for _, item in results for info in item.values()]
    if not rejected:
        return []
    rows = {action["_id"]: action["_source"][ROW_FIELD] for action in chunk}
    return [_failure(info, rows.get(info.get("_id"))) for info in rejected]


def _failure(info: dict[str, Any], row: int | None) -> dict[str, Any]:
    error = info.get("error")
    return {
        "row": row,
        "id": info.get("_id"),
        "status": info.get("status"),
        "reason": _error_text(error) + _hint(error),
    }


def _rejected(failures: list[dict[str, Any]], physical: str, aftermath: str) -> BulkLoadError:
    failures = sorted(failures, key=lambda failure: (failure["row"] is None, failure["row"]))
    shown = failures[:MAX_FAILURES_SHOWN]
    lines = [f"  row {f['row']} (id {f['id']!r}): {f['reason']}" for f in shown]
    if len(failures) > len(shown):
        lines.append(f"  … and {len(failures) - len(shown)} more in the same chunk")
    message = (
        f"Elasticsearch rejected {len(failures)} document(s) of index {physical!r} (loading "
        f"stopped at the first chunk with rejections; {aftermath}):\n" + "\n".join(lines)
    )
    return BulkLoadError(message, failures)


def _hint(error: Any) -> str:
    if isinstance(error, dict) and error.get("type") == "version_conflict_engine_exception":
        return (
            " [a document with this id is in the index already: id_column values must be "
            "unique, and two appends to one index must not run at the same time]"
        )
    return ""


def _finish_load(
    client: Elasticsearch, physical: str, restore_refresh: bool, expected: int
) -> None:
    if restore_refresh:
        client.indices.put_settings(index=physical, settings={"index": {"refresh_interval": None}})
    count = _refreshed_count(client, physical)
    if count != expected:
        raise SearchIndexError(
            f"Elasticsearch index {physical!r} holds {count} documents after the load; expected "
            f"{expected} (one per row)"
        )


def _refreshed_count(client: Elasticsearch, physical: str) -> int:
    """The documents of `physical`, counted once every one indexed so far is searchable."""
    client.indices.refresh(index=physical)
    return int(client.count(index=physical)["count"])


def _swap_alias(client: Elasticsearch, alias: str, physical: str, old: list[str]) -> None:
    """Point `alias` at `physical` and away from `old` in one atomic `update_aliases` call."""
    actions: list[dict[str, Any]] = [
        {"remove": {"index": name, "alias": alias, "must_exist": True}} for name in old
    ]
    actions.append({"add": {"index": physical, "alias": alias}})
    try:
        response = client.indices.update_aliases(actions=actions)
    except NotFoundError as error:
        raise SearchIndexError(
            f"the alias {alias!r} no longer points at {old} (another build of the same index "
            f"swapped it meanwhile?): {_api_reason(error)}; the alias was not moved"
        ) from error
    if response.body.get("errors"):
        raise SearchIndexError(
            f"moving the alias {alias!r} to {physical!r} failed: {response.body}"
        )


def _discard(client: Elasticsearch, alias: str, physical: str) -> None:
    """Delete a new index that did not become live (unless the swap did happen after all)."""
    try:
        if physical in _indices_behind(client, alias):
            return
        client.options(ignore_status=404).indices.delete(index=physical)
    except (ApiError, TransportError, SearchIndexError) as error:
        logger.warning(
            "could not delete the unfinished Elasticsearch index %r: %s", physical, error
        )


def _delete_old(client: Elasticsearch, alias: str, old: list[str]) -> None:
    ours = [name for name in old if name.startswith(f"{alias}__")]
    others = sorted(set(old) - set(ours))
    if others:
        logger.warning("alias %r was moved away from %s, which are left in place", alias, others)
    if not ours:
        return
    try:
        client.options(ignore_status=404).indices.delete(index=",".join(ours))
    except (ApiError, TransportError) as error:
        logger.warning(
            "alias %r moved, but deleting the old index %s failed: %s", alias, ours, error
        )


def build(
    client: Elasticsearch,
    dataset: Dataset,
    index: str,
    text_columns: Sequence[str] | str,
    *,
    mappings: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    id_column: str | None = None,
    version: str,
    chunk_size: int = 500,
    parallel: bool = True,
    before_swap: Callable[[], None] | None = None,
    keep_previous: bool = False,
) -> ElasticsearchIndex:
    """Index `dataset` into a new `<index>__<version>` and move the alias `index` to it.

    Documents carry the columns the mappings name (inferred from Features when `mappings` is
    None; see the module docstring) and their row position (`ROW_FIELD`); their `_id` is the
    `id_column` value, else the row position. Any rejected document raises `BulkLoadError`
    naming the first ones (row, id, reason), deletes the new index and leaves the alias where it
    was. After the load the index is refreshed, the alias moved in one `update_aliases` call
    (remove the old, add the new) and the old `<index>__*` index deleted. `before_swap`, when
    given, runs just before the alias moves: an exception from it (say, the dataset was stored
    again meanwhile) deletes the new index and leaves the alias where it was. With
    `keep_previous`, the old indices stay (their names in the result's `replaced`) until
    `retire` deletes them, or `roll_back` moves the alias back to them.

    >>> from elasticsearch import Elasticsearch
    >>> docs = Dataset.from_dict({"title": ["a red fox", "a brown dog"]})
    >>> index = build(Elasticsearch("http://127.0.0.1:9200"), docs, "docs", ["title"],
    ...               version="v1")  # doctest: +SKIP
    >>> index.search("fox", k=1)  # doctest: +SKIP
    ([0.6931471824645996], [0])
    """
    text_columns = _as_columns(text_columns)
    check_count("chunk_size", chunk_size)
    physical = physical_name(index, version)
    _check_columns(dataset, id_column)
    meta = {"alias": index, "version": version, "num_rows": len(dataset),
            "text_columns": text_columns, "id_column": id_column, "row_field": ROW_FIELD,
            "dataset_fingerprint": getattr(dataset, "_fingerprint", None)}  # fmt: skip
    full_mappings = _full_mappings(dataset, text_columns, mappings, meta)
    columns = _document_columns(dataset.features, text_columns, full_mappings)
    old = _indices_behind(client, index)
    restore_refresh = not _refresh_interval_given(settings)
    _create_index(client, physical, full_mappings, settings, restore_refresh)
    try:
        actions = _documents(dataset, physical, columns, id_column, chunk_size)
        aftermath = f"the new index is deleted, the alias {index!r} stays on {old or 'nothing'}"
        _bulk_load(client, actions, physical, chunk_size, parallel, aftermath)
        _finish_load(client, physical, restore_refresh, len(dataset))
        if before_swap is not None:
            before_swap()
        _swap_alias(client, index, physical, old)
    except BaseException:
        _discard(client, index, physical)
        raise
    if not keep_previous:
        _delete_old(client, index, old)
    built = ElasticsearchIndex(client, index, text_columns, dataset=dataset)
    built.replaced = list(old)
    return built


def retire(client: Elasticsearch, index: str, old: Sequence[str]) -> None:
    """Delete the indices a `build(keep_previous=True)` moved the alias `index` away from, as
    `build` does by default (those not named `<index>__*` stay, with a warning)."""
    _delete_old(client, index, list(old))


def roll_back(client: Elasticsearch, index: str, physical: str, old: Sequence[str]) -> None:
    """Undo a `build(keep_previous=True)` whose result could not be kept (its index asset was
    not stored): the alias back on `old` (removed when there was none) in one call, `physical`
    deleted."""
    if physical in _indices_behind(client, index):
        actions: list[dict[str, Any]] = [{"remove": {"index": physical, "alias": index}}]
        actions += [{"add": {"index": name, "alias": index}} for name in old]
        client.indices.update_aliases(actions=actions)
    _discard(client, index, physical)


def append(
    client: Elasticsearch,
    dataset: Dataset,
    index: str,
    text_columns: Sequence[str] | str,
    *,
    id_column: str | None = None,
    row_offset: int,
    physical: str | None = None,
    chunk_size: int = 500,
    parallel: bool = True,
) -> ElasticsearchIndex:
    """Incremental mode of the index assets: add the rows of `dataset` to the live index behind
    the alias `index`, which holds rows `0..row_offset - 1`, as rows `row_offset` and up, with
    the mappings `build` gave it. All or nothing: a rejected document raises `BulkLoadError`
    once the documents this call added are deleted again.

    Documents are bulk `create`d, so an `id_column` value an earlier row has is rejected, never
    overwritten; an index that does not hold exactly `row_offset` documents (an append killed
    midway left some), that is not `physical` when given, or that `build` did not make, is
    refused with `StaleIndexError` before anything is written. Readers opened with
    `row_limit=row_offset` never see the new documents.

    >>> from elasticsearch import Elasticsearch
    >>> more = Dataset.from_dict({"title": ["a grey wolf"]})
    >>> append(Elasticsearch("http://127.0.0.1:9200"), more, "docs", ["title"],
    ...        row_offset=2).count()  # doctest: +SKIP
    3
    """
    text_columns = _as_columns(text_columns)
    check_count("row_offset", row_offset, minimum=0)
    check_count("chunk_size", chunk_size)
    _check_columns(dataset, id_column)
    _check_text_columns(dataset.features, text_columns)
    behind = _indices_behind(client, index)
    if len(behind) != 1 or (physical is not None and behind != [physical]):
        wanted = repr(physical) if physical else "one index made by build()"
        raise StaleIndexError(
            f"append() needs the alias {index!r} on {wanted}; it points at {behind or 'nothing'}"
        )
    physical = behind[0]
    mappings = client.indices.get_mapping(index=physical).body[physical]["mappings"]
    _check_built_for(index, physical, mappings)
    columns = _document_columns(dataset.features, text_columns, mappings)
    held = _refreshed_count(client, physical)
    if held != row_offset:
        raise StaleIndexError(
            f"Elasticsearch index {physical!r} holds {held} documents; "
            f"append(row_offset={row_offset}) expects one per row before it (an append killed "
            "midway leaves documents behind: build again)"
        )
    try:
        actions = _documents(dataset, physical, columns, id_column, chunk_size, row_offset)
        aftermath = f"the documents it added are deleted, {physical!r} holds what it held"
        _bulk_load(client, actions, physical, chunk_size, parallel, aftermath)
        _finish_load(client, physical, False, row_offset + len(dataset))
    except BaseException:
        _delete_rows_from(client, physical, row_offset)
        raise
    return ElasticsearchIndex(client, index, text_columns)


def _check_built_for(alias: str, physical: str, mappings: Mapping[str, Any]) -> None:
    """`append` writes into (and on failure deletes documents from) indices `build` made for
    `alias` only: named `<alias>__<version>`, their `_meta` recording that alias."""
    recorded = mappings.get("_meta", {}).get("ds_assets", {}).get("alias")
    if physical.startswith(f"{alias}__") and recorded == alias:
        return
    raise StaleIndexError(
        f"the alias {alias!r} points at {physical!r}, which build() did not make (its name is "
        f"not '{alias}__<version>' or its mappings' _meta has no ds_assets record of that "
        "alias); append() writes only into indices build() made: run build()"
    )


def _delete_rows_from(client: Elasticsearch, physical: str, first: int) -> None:
    """Delete the documents of rows `first` and up, and make that visible. The refresh comes
    first: `delete_by_query` only sees documents that a refresh has made searchable."""
    client.indices.refresh(index=physical)
    query = {"range": {ROW_FIELD: {"gte": first}}}
    client.delete_by_query(index=physical, query=query, refresh=True, conflicts="proceed")


def _create_index(
    client: Elasticsearch,
    physical: str,
    mappings: dict[str, Any],
    settings: Mapping[str, Any] | None,
    pause_refresh: bool,
) -> None:
    full_settings = copy.deepcopy(dict(settings or {}))
    if pause_refresh:  # no refresh during the load; the caller's interval is kept if given
        full_settings["refresh_interval"] = "-1"
    try:
        client.indices.create(index=physical, mappings=mappings, settings=full_settings)
    except ApiError as error:
        raise SearchIndexError(
            f"Elasticsearch refused to create index {physical!r}: {_api_reason(error)}"
        ) from error


def _as_columns(text_columns: Sequence[str] | str) -> list[str]:
    columns = [text_columns] if isinstance(text_columns, str) else list(text_columns)
    if not columns or not all(isinstance(column, str) for column in columns):
        raise SearchIndexError(f"text_columns must be column names, got {text_columns!r}")
    return columns


class ElasticsearchIndex(SearchIndex):
    """Full-text search on the alias `alias` over `text_columns` (BM25; best first).

    A query matches documents sharing any of its words in any text column (`multi_match`);
    documents holding it as an exact phrase get a boosted `match_phrase` should-clause, so they
    rank first. `filter` is passed through as the bool query's `filter` clause, in
    Elasticsearch's own syntax (a query dict or a list of them). Indices are the row positions
    of the version the alias points at when the query runs. With `row_limit` (the row count of
    the dataset version a reader indexes), only documents of rows below it are searched and
    counted: documents that `append` adds later stay out of that reader's answers.

    >>> from elasticsearch import Elasticsearch
    >>> index = ElasticsearchIndex(Elasticsearch("http://127.0.0.1:9200"), "docs", ["title"])
    >>> index.request("red fox", k=3)["query"]["bool"]["must"]
    [{'multi_match': {'query': 'red fox', 'fields': ['title']}}]
    >>> index.search("red fox", k=3, filter={"term": {"lang.keyword": "en"}})  # doctest: +SKIP
    ([2.05, 0.69], [0, 4])
    """

    engine = "elasticsearch"
    text_queries = True

    def __init__(
        self,
        client: Elasticsearch,
        alias: str,
        text_columns: Sequence[str] | str,
        *,
        dataset: Dataset | None = None,
        row_limit: int | None = None,
    ):
        super().__init__(dataset)
        if row_limit is not None:
            check_count("row_limit", row_limit, minimum=0)
        self.client = client
        self.alias = alias
        self.text_columns = _as_columns(text_columns)
        self.row_limit = row_limit
        self.replaced: list[str] = []  # set by build: the indices the alias left
        self._window: int | None = None  # the index's max_result_window, read on first need

    def __repr__(self) -> str:
        return f"ElasticsearchIndex(alias={self.alias!r}, text_columns={self.text_columns!r})"

    def count(self) -> int:
        """Number of documents behind the alias."""
        try:
            limit = self._row_range()
            query = {"query": {"bool": {"filter": limit}}} if limit else {}
            return int(self.client.count(index=self.alias, **query)["count"])
        except ApiError as error:
            raise self._error("count", error) from error

    def request(self, query: str, k: int = 10, filter: Any = None) -> dict[str, Any]:
        """The search request body sent for `query` (to inspect or adapt it); searches send it
        with `k` capped at the index's result window first (see `result_size`)."""
        match = {"multi_match": {"query": query, "fields": list(self.text_columns)}}
        # boost on the bool wrapper rather than inside match_phrase: same scores in
        # Elasticsearch, and the noida-db test server only honours this form
        phrases = [{"match_phrase": {column: query}} for column in self.text_columns]
        boolean: dict[str, Any] = {
            "must": [match],
            "should": [{"bool": {"should": phrases, "boost": PHRASE_BOOST}}],
        }
        checked = [] if filter is None else self._checked_filter(filter)
        clauses = [*(checked if isinstance(checked, list) else [checked]), *self._row_range()]
        if clauses:
            boolean["filter"] = clauses[0] if len(clauses) == 1 else clauses
        return {
            "query": {"bool": boolean},
            "size": k,
            "_source": False,
            "docvalue_fields": [ROW_FIELD],
            "track_total_hits": False,
        }

    def result_size(self, k: int) -> int:
        """The `size` a search for the `k` best hits sends: `k`, but at most the index's
        `index.max_result_window` (10,000 unless set) and its document count, as Elasticsearch
        refuses a larger `size` ("Result window is too large") even over fewer documents.

        The count is only asked for when `k` is above the window: below it, Elasticsearch
        bounds its work by the document count itself. When the index holds more documents than
        the window, only the best `window` hits can be had, and a warning says so.
        """
        window = self._result_window()
        if k <= window:
            return k
        count = self.count()
        if count > window:
            logger.warning(
                "k=%d is above the result window of the Elasticsearch index %r "
                "(index.max_result_window %d, %d documents): only the best %d hits are "
                "returned; raise that setting for more",
                k, self.alias, window, count, window,
            )  # fmt: skip
        return min(window, count)

    def _result_window(self) -> int:
        """`index.max_result_window` of the index behind the alias (the smallest, if several),
        read once per reader."""
        if self._window is None:
            key = "index.max_result_window"
            try:
                found = self.client.indices.get_settings(
                    index=self.alias, name=key, include_defaults=True, flat_settings=True
                ).body
            except ApiError as error:
                if error.meta.status != 403:
                    raise self._error("reading the settings", error) from error
                # a search-only API key may not read index settings: assume the default
                found = {}
            windows = [
                int(part.get("settings", {}).get(key) or part.get("defaults", {}).get(key) or
                    DEFAULT_RESULT_WINDOW)
                for part in found.values()
            ]  # fmt: skip
            self._window = min(windows, default=DEFAULT_RESULT_WINDOW)
        return self._window

    def _row_range(self) -> list[dict[str, Any]]:
        if self.row_limit is None:
            return []
        return [{"range": {ROW_FIELD: {"lt": self.row_limit}}}]

    @staticmethod
    def _checked_filter(filter: Any) -> Any:
        clauses = filter if isinstance(filter, list) else [filter]
        if not all(isinstance(clause, Mapping) for clause in clauses):
            raise SearchIndexError(
                "filter must be an Elasticsearch query dict or a list of them, e.g. "
                f"{{'term': {{'lang.keyword': 'en'}}}}; got {filter!r}"
            )
        return filter

    def _search_batch(
        self, queries: list[str], k: int, filter: Any
    ) -> tuple[list[list[float]], list[list[int]]]:
        if not queries:
            return [], []
        size = self.result_size(k)
        bodies = [self.request(query, size, filter) for query in queries]
        try:
            if len(bodies) == 1:
                responses = [self.client.search(index=self.alias, **bodies[0]).body]
            else:
                searches = [part for body in bodies for part in ({}, body)]
                responses = self.client.msearch(index=self.alias, searches=searches)["responses"]
        except ApiError as error:
            what = f"search for {queries[0]!r}" if len(queries) == 1 else "msearch"
            raise self._error(what, error) from error
        results = [
            self._hits(response, query) for response, query in zip(responses, queries, strict=True)
        ]
        return [scores for scores, _ in results], [rows for _, rows in results]

    def _hits(self, response: Mapping[str, Any], query: str) -> tuple[list[float], list[int]]:
        if "error" in response:
            raise SearchIndexError(
                f"Elasticsearch search for {query!r} on {self.alias!r} failed "
                f"({response.get('status')}): {_error_text(response['error'])}"
            )
        hits = response["hits"]["hits"]
        return [float(hit["_score"]) for hit in hits], [self._row(hit) for hit in hits]

    def _row(self, hit: Mapping[str, Any]) -> int:
        try:
            return int(hit["fields"][ROW_FIELD][0])
        except (KeyError, IndexError, TypeError):
            raise SearchIndexError(
                f"document {hit.get('_id')!r} of index {hit.get('_index')!r} behind the alias "
                f"{self.alias!r} has no {ROW_FIELD!r} field; expected an index made by "
                "ds_assets.index.elasticsearch.build"
            ) from None

    def _error(self, what: str, error: ApiError) -> SearchIndexError:
        return SearchIndexError(
            f"Elasticsearch {what} on {self.alias!r} failed ({error.meta.status}): "
            f"{_api_reason(error)}"
        )

    def describe(self) -> dict[str, Any]:
        """What the alias points at: physical index, document count, and the build's record
        (version, rows, text columns, id column, dataset fingerprint)."""
        try:
            found = self.client.indices.get_mapping(index=self.alias).body
        except ApiError as error:
            raise self._error("describe", error) from error
        physical = sorted(found)
        meta = {}
        if len(physical) == 1:
            meta = found[physical[0]]["mappings"].get("_meta", {}).get("ds_assets", {})
        return {
            "engine": self.engine,
            "alias": self.alias,
            "physical_name": ",".join(physical),
            "count": self.count(),
            "text_columns": list(self.text_columns),
            **{key: value for key, value in meta.items() if key not in {"alias", "text_columns"}},
        }
