"""Qdrant index over one column of a `datasets.Dataset`, behind an alias that is swapped atomically.

    >>> from qdrant_client import QdrantClient
    >>> from ds_assets.index import qdrant
    >>> client = QdrantClient(location=":memory:")
    >>> ds = Dataset.from_dict({"v": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], "tag": ["a", "b", "a"]})
    >>> index = qdrant.build(client, ds, "docs", column="v", payload_columns=["tag"], version="1")
    >>> index.search([1.0, 0.1], k=2)[1]
    [0, 2]
    >>> index.search([1.0, 0.1], k=2, filter={"must": [{"key": "tag", "match": {"value": "b"}}]})[1]
    [1]

What does the work: `qdrant-client` (collections, `upload_collection` with its batching and
retries, payload filters, batch queries, `update_collection_aliases`, exact search). What is
ours: vectors streamed batch by batch from the memory-mapped dataset (`base.vector_batches`),
ids stable per row, the row position in every point's payload (`ROW_KEY`) so hits map back to
rows of the indexed version, the build-beside-then-swap life cycle, and checks that name the
column, row and value at fault before anything reaches Qdrant.

Life cycle of `build(client, dataset, "docs", version="v7")`: points go into a new physical
collection `docs__v7`; once all are in (and counted), one `update_collection_aliases` call
points the alias `docs` at it; then the previous physical collection is deleted if a build
made it (a collection made otherwise is left in place, with a warning). Readers that query
`docs` see the old version until that call, the new one after, never a half-filled one.
If anything fails before the swap, `docs__v7` is deleted and `docs` is left as it was. Physical
collections of builds killed before they could clean up are deleted by a later build once a day
old (recognised by the `ds_assets` entry of their collection metadata, so nothing else is ever
touched). `append` is the incremental mode of the index assets: new rows after the last, into
the live collection, all or nothing; `upsert` writes rows into it in place. Both refuse a
collection that `build` did not make.

Embedded local mode (`QdrantClient(path=...)` or `":memory:"`) and a server behave the same
here; the differences, and how this module copes:
- Local mode always searches exactly (brute force); on a server, search is approximate (HNSW)
  unless the index is opened with `exact=True`, which sends `SearchParams(exact=True)`. Local
  mode ignores search parameters with a warning, so they are sent to servers only.
- Local mode runs `query_batch_points` as a loop of single queries; a server takes it as one
  request. Aliases, payload filters, collection metadata and exact counts work in both.
- Local mode keeps every point in memory (and is meant for up to ~20,000 points, it warns past
  that) and locks its folder to one client per process: use a server for large collections and
  for several processes (`resources.qdrant.QdrantResource` caches one client per folder).
- Servers older than 1.16 have no collection metadata; this module needs 1.16 or later.

Pick the `Qdrant` engine over FAISS when payload filters, updates in place (`upsert`) or a
shared server matter; FAISS is faster for a read-only index held in one process.
"""

from __future__ import annotations

import atexit
import datetime
import itertools
import os
import re
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset
from qdrant_client import QdrantClient, models

from ds_assets.index.base import (
    Embedder,
    SearchIndex,
    SearchIndexError,
    StaleIndexError,
    check_count,
    check_vector_column,
    load_embedder,
    optional_embedder_path,
    vector_batches,
)

ROW_KEY = "_row"  # payload key holding the point's row position in the indexed dataset version
METADATA_KEY = "ds_assets"  # collection metadata entry written by this module
ORPHAN_AGE_SECONDS = 24 * 3600  # unfinished physical collections older than this are deleted

DISTANCES = {
    "cosine": models.Distance.COSINE,
    "dot": models.Distance.DOT,
    "ip": models.Distance.DOT,
    "euclid": models.Distance.EUCLID,
    "l2": models.Distance.EUCLID,
    "manhattan": models.Distance.MANHATTAN,
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_ID_TYPES = "non-negative integers or UUID strings"


class QdrantIndex(SearchIndex):
    """A Qdrant collection (or alias) to query with the `datasets`-like search API.

    `filter` takes a Qdrant `models.Filter` or its dict form, passed through as it is. Scores
    are Qdrant's: similarity for Cosine and Dot (larger is better), distance for Euclid and
    Manhattan (smaller is better); hits are always best first. `exact=True` asks a server for
    exact (brute-force) search instead of HNSW; local mode is always exact. With `row_limit`
    (the row count of the dataset version a reader indexes), only points of rows below it are
    searched and counted: points that `append` adds later stay out of that reader's answers.

    >>> from qdrant_client import QdrantClient
    >>> client = QdrantClient(location=":memory:")
    >>> ds = Dataset.from_dict({"v": [[1.0, 0.0], [0.0, 1.0]]})
    >>> _ = build(client, ds, "points", column="v", version="1")
    >>> index = QdrantIndex(client, "points", dataset=ds)
    >>> scores, rows = index.nearest_examples([0.0, 2.0], k=1)
    >>> rows
    {'v': [[0.0, 1.0]]}
    """

    engine = "qdrant"

    def __init__(
        self,
        client: QdrantClient,
        collection_alias: str,
        *,
        dataset: Dataset | None = None,
        embed: str | Callable | None = None,
        exact: bool = False,
        row_limit: int | None = None,
    ):
        super().__init__(dataset, embed)
        if row_limit is not None:
            check_count("row_limit", row_limit, minimum=0)
        self.client = client
        self.collection = collection_alias
        self.exact = exact
        self.row_limit = row_limit
        self.replaced: str | None = None  # set by build: the collection the alias left

    def count(self) -> int:
        """Number of points in the collection (an exact count).

        >>> from qdrant_client import QdrantClient
        >>> client = QdrantClient(location=":memory:")
        >>> build(client, Dataset.from_dict({"v": [[1.0], [2.0]]}), "c", column="v",
        ...       version="1").count()
        2
        """
        limit = self._limited(None)
        try:
            return _once_more(
                lambda: self.client.count(self.collection, count_filter=limit, exact=True).count
            )
        except Exception:
            self._collection_info()  # a clearer error when the collection is not there
            raise

    def describe(self) -> dict[str, Any]:
        """Count, dimension, distance, physical name and alias, and what `build` recorded
        (its version, column, embedder, payload columns, id column).

        >>> from qdrant_client import QdrantClient
        >>> client = QdrantClient(location=":memory:")
        >>> info = build(client, Dataset.from_dict({"v": [[1.0, 2.0]]}), "c", column="v",
        ...              version="7").describe()
        >>> info["physical"], info["alias"], info["dimension"], info["distance"], info["count"]
        ('c__7', 'c', 2, 'Cosine', 1)
        """
        physical, info = self._collection_info()
        vectors = _single_vector_params(info, self.collection)
        recorded = (info.config.metadata or {}).get(METADATA_KEY, {})
        return {
            "engine": self.engine,
            "alias": self.collection,
            "physical": physical,
            "count": self.client.count(physical, exact=True).count,
            "dimension": vectors.size,
            "distance": models.Distance(vectors.distance).value,
            "version": recorded.get("version"),
            "column": recorded.get("column"),
            "embed": recorded.get("embed"),
            "payload_columns": recorded.get("payload_columns", []),
            "id_column": recorded.get("id_column"),
        }

    def _search_batch(
        self, queries: np.ndarray, k: int, filter: Any
    ) -> tuple[list[list[float]], list[list[int]]]:
        query_filter = self._limited(as_filter(filter))
        try:
            responses = _once_more(lambda: self._query(queries, k, query_filter))
        except Exception as error:
            self._collection_info()  # a clearer error when the collection is not there
            mismatch = self._dimension_mismatch(queries)
            if mismatch:  # a clearer message when that is what went wrong
                raise SearchIndexError(mismatch) from error
            raise
        scores = [[point.score for point in response.points] for response in responses]
        indices = [[self._row_of(point) for point in response.points] for response in responses]
        return scores, indices

    def _query(
        self, queries: np.ndarray, k: int, query_filter: models.Filter | None
    ) -> list[models.QueryResponse]:
        """One request: `query_points` for one query (the lighter call), else a batch."""
        params = self._search_params()
        if len(queries) == 1:
            response = self.client.query_points(
                self.collection,
                queries[0].tolist(),
                query_filter=query_filter,
                limit=k,
                with_payload=[ROW_KEY],
                search_params=params,
            )
            return [response]
        requests = [
            models.QueryRequest(
                query=vector.tolist(),
                filter=query_filter,
                limit=k,
                with_payload=[ROW_KEY],
                params=params,
            )
            for vector in queries
        ]
        return self.client.query_batch_points(self.collection, requests=requests)

    def _prepare(self, queries: Sequence[Any]) -> Any:
        if len(queries) and all(isinstance(q, str) for q in queries) and self.embed is None:
            recorded = self._recorded_embedder()
            hint = f"; it was built with embed={recorded!r}, pass that" if recorded else ""
            raise SearchIndexError(
                f"text queries need an embedder; this qdrant index {self.collection!r} "
                f"was opened without one{hint}"
            )
        return super()._prepare(queries)

    def _limited(self, query_filter: models.Filter | None) -> models.Filter | None:
        """`query_filter`, and only rows below `row_limit` if it is set."""
        if self.row_limit is None:
            return query_filter
        below = _rows_from(0, below=self.row_limit)
        return below if query_filter is None else models.Filter(must=[below, query_filter])

    def _search_params(self) -> models.SearchParams | None:
        if self.exact and not is_local(self.client):
            return models.SearchParams(exact=True)
        return None

    def _row_of(self, point: models.ScoredPoint) -> int:
        row = (point.payload or {}).get(ROW_KEY)
        if not isinstance(row, int):
            raise SearchIndexError(
                f"qdrant collection {self.collection!r}, point {point.id!r}: no integer "
                f"{ROW_KEY!r} in its payload; was it written by ds_assets.index.qdrant?"
            )
        if self.dataset is not None and row >= len(self.dataset):
            raise SearchIndexError(
                f"qdrant collection {self.collection!r}, point {point.id!r}: row {row} is "
                f"past the end of the dataset given ({len(self.dataset)} rows); open the index "
                "with the dataset version it indexes"
            )
        return row

    def _collection_info(self) -> tuple[str, models.CollectionInfo]:
        """The physical name behind the alias (or the name itself) and its collection info."""
        physical = _alias_target(self.client, self.collection) or self.collection
        try:
            return physical, self.client.get_collection(physical)
        except ValueError as error:  # local mode: "Collection ... not found"
            raise SearchIndexError(
                f"qdrant collection or alias {self.collection!r} not found ({error})"
            ) from None

    def _dimension_mismatch(self, queries: np.ndarray) -> str | None:
        try:
            size = _single_vector_params(self._collection_info()[1], self.collection).size
        except Exception:
            return None  # the lookup failed too: the original error says more
        if queries.shape[1] == size:
            return None
        return (
            f"queries have {queries.shape[1]} dimensions; qdrant collection "
            f"{self.collection!r} holds vectors of {size}"
        )

    def _recorded_embedder(self) -> str | None:
        try:
            metadata = self._collection_info()[1].config.metadata or {}
        except Exception:
            return None
        return metadata.get(METADATA_KEY, {}).get("embed")


def _once_more(call: Callable[[], Any]) -> Any:
    """`call()`, retried once: a read that resolved the alias just before a build swapped it
    and deleted the old collection fails, and the retry reads the new one."""
    try:
        return call()
    except Exception:
        return call()


def build(
    client: QdrantClient,
    dataset: Dataset,
    collection: str,
    *,
    column: str | None = None,
    embed: str | Callable | None = None,
    distance: str | models.Distance = "Cosine",
    payload_columns: Sequence[str] = (),
    id_column: str | None = None,
    version: str,
    batch_size: int = 1_000,
    before_swap: Callable[[], None] | None = None,
    keep_previous: bool = False,
) -> QdrantIndex:
    """Index `column` of `dataset` into a new collection `<collection>__<version>`, then point
    the alias `collection` at it and delete the collection it pointed at before (if a build of
    `collection` made it; any other is left in place, with a warning). `before_swap`, when
    given, runs once the collection is filled: an exception from it (say, the dataset was
    stored again meanwhile) deletes the new collection and leaves the alias where it was. With
    `keep_previous`, the previous collection stays (its name in the result's `replaced`) until
    `retire` deletes it, or `roll_back` moves the alias back to it.

    `column` holds vectors, or texts when `embed` (a callable or `"module:function"`, a list
    of strings to a float32 matrix) is given. Point ids are `id_column`'s values
    (non-negative integers or UUID strings, unique) or else row positions; every payload holds
    the row position under `ROW_KEY` and the `payload_columns`. `distance` is a Qdrant distance
    ("Cosine", "Dot", "Euclid", "Manhattan"; "ip" and "l2" are accepted too). `version` must be
    new for each build (the dataset version, plus a run id when the same version is rebuilt).

    >>> from qdrant_client import QdrantClient
    >>> client = QdrantClient(location=":memory:")
    >>> ds = Dataset.from_dict({"v": [[1.0, 0.0], [0.0, 1.0]], "id": [10, 20]})
    >>> index = build(client, ds, "docs", column="v", id_column="id", version="1")
    >>> index = build(client, ds, "docs", column="v", distance="Dot", version="2")
    >>> index.describe()["physical"], [c.name for c in client.get_collections().collections]
    ('docs__2', ['docs__2'])
    """
    plan = _Plan.check(dataset, column, embed, payload_columns, id_column, batch_size)
    metric = _distance(distance)
    physical = physical_name(collection, version)
    previous = _check_names(client, collection, physical)
    batches = plan.batches()
    first = next(batches, None)
    if first is None:
        raise SearchIndexError(f"the dataset has no rows: nothing gives {column!r} a dimension")
    dimension = first[1].shape[1]
    if dimension == 0:
        raise SearchIndexError(f"column {column!r}, row {first[0]}: empty vector")
    client.create_collection(
        physical,
        vectors_config=models.VectorParams(size=dimension, distance=metric),
        metadata={METADATA_KEY: plan.record(collection, version)},
    )
    try:
        if not is_local(client):  # the row filters of appends and of their readers use it
            client.create_payload_index(physical, ROW_KEY, models.PayloadSchemaType.INTEGER)
        _upload(client, physical, plan, itertools.chain([first], batches), dimension)
        _check_count(client, physical, plan)
        if before_swap is not None:
            before_swap()
        _swap_alias(client, collection, physical, previous)
    except BaseException:
        _delete_unless_live(client, collection, physical)
        raise
    if not keep_previous:
        retire(client, collection, previous)
    try:
        _delete_orphans(client, collection, keep=previous)
    except Exception as error:  # the build itself is done and live
        warnings.warn(f"could not look for leftover qdrant collections: {error}", stacklevel=2)
    index = QdrantIndex(client, collection, dataset=dataset, embed=plan.embed)
    index.replaced = previous
    return index


def retire(client: QdrantClient, collection: str, previous: str | None) -> None:
    """Delete the collection a `build(keep_previous=True)` moved the alias away from, as `build`
    does by default (one it did not make stays, with a warning).

    >>> from qdrant_client import QdrantClient
    >>> client = QdrantClient(location=":memory:")
    >>> ds = Dataset.from_dict({"v": [[1.0, 0.0]]})
    >>> _ = build(client, ds, "docs", column="v", version="1")
    >>> index = build(client, ds, "docs", column="v", version="2", keep_previous=True)
    >>> retire(client, "docs", index.replaced)
    >>> [c.name for c in client.get_collections().collections]
    ['docs__2']
    """
    if previous is not None:
        _delete_previous(client, collection, previous)


def roll_back(client: QdrantClient, collection: str, physical: str, previous: str | None) -> None:
    """Undo a `build(keep_previous=True)` whose result could not be kept (its index asset was
    not stored): the alias back on `previous` (removed when there was none), `physical` deleted.

    >>> from qdrant_client import QdrantClient
    >>> client = QdrantClient(location=":memory:")
    >>> ds = Dataset.from_dict({"v": [[1.0, 0.0]]})
    >>> _ = build(client, ds, "docs", column="v", version="1")
    >>> index = build(client, ds, "docs", column="v", version="2", keep_previous=True)
    >>> roll_back(client, "docs", "docs__2", index.replaced)
    >>> [a.collection_name for a in client.get_aliases().aliases]
    ['docs__1']
    """
    if _alias_target(client, collection) == physical:
        if previous is not None:
            _swap_alias(client, collection, previous, physical)
        else:
            delete = models.DeleteAlias(alias_name=collection)
            client.update_collection_aliases(
                change_aliases_operations=[models.DeleteAliasOperation(delete_alias=delete)]
            )
    _delete_quietly(client, physical)


def upsert(
    client: QdrantClient,
    dataset: Dataset,
    collection: str,
    *,
    column: str | None = None,
    embed: str | Callable | None = None,
    payload_columns: Sequence[str] = (),
    id_column: str | None = None,
    row_offset: int = 0,
    batch_size: int = 1_000,
) -> QdrantIndex:
    """Incremental mode: write the rows of `dataset` into the live collection behind the alias
    `collection` (which `build` made), in place. Readers see the new points as they arrive.

    Row positions are `row_offset` + the position in `dataset` (the new partition's place in
    the whole indexed dataset); ids come from `id_column`, or else are those row positions, so
    upserting a row again overwrites its point, and a failed upsert can simply be run again.

    >>> from qdrant_client import QdrantClient
    >>> client = QdrantClient(location=":memory:")
    >>> first = Dataset.from_dict({"v": [[1.0, 0.0], [0.0, 1.0]]})
    >>> index = build(client, first, "docs", column="v", version="1")
    >>> new = Dataset.from_dict({"v": [[1.0, 1.0]]})
    >>> upsert(client, new, "docs", column="v", row_offset=2).search([1.0, 1.0], k=1)[1]
    [2]
    """
    plan = _Plan.check(dataset, column, embed, payload_columns, id_column, batch_size, row_offset)
    live = _live_collection(client, collection, "upsert")
    size = _single_vector_params(client.get_collection(live), live).size
    _upload(client, live, plan, plan.batches(), size)
    return QdrantIndex(client, collection, dataset=None, embed=plan.embed)


def append(
    client: QdrantClient,
    dataset: Dataset,
    collection: str,
    *,
    column: str | None = None,
    embed: str | Callable | None = None,
    payload_columns: Sequence[str] = (),
    id_column: str | None = None,
    row_offset: int,
    physical: str | None = None,
    batch_size: int = 1_000,
) -> QdrantIndex:
    """Incremental mode of the index assets: add the rows of `dataset` to the live collection
    behind the alias `collection`, which holds rows `0..row_offset - 1`, as rows `row_offset`
    and up. All or nothing: if anything fails, the points this call added are deleted again.

    Unlike `upsert`, no existing row is touched: an `id_column` value that an earlier row
    already has raises before anything is written, and a collection that does not hold exactly
    `row_offset` points (an append killed midway left some), or that is not `physical` when
    given, is refused with `StaleIndexError` before anything is written. Readers opened with
    `row_limit=row_offset` never see the new points; readers opened after with the longer
    dataset see them all.

    >>> from qdrant_client import QdrantClient
    >>> client = QdrantClient(location=":memory:")
    >>> _ = build(client, Dataset.from_dict({"v": [[1.0, 0.0]]}), "docs", column="v", version="1")
    >>> old = QdrantIndex(client, "docs", row_limit=1)
    >>> new = append(client, Dataset.from_dict({"v": [[0.0, 1.0]]}), "docs", column="v",
    ...              row_offset=1)
    >>> old.count(), new.count(), new.search([0.0, 1.0], k=1)[1]
    (1, 2, [1])
    """
    plan = _Plan.check(dataset, column, embed, payload_columns, id_column, batch_size, row_offset)
    live = _live_collection(client, collection, "append")
    if physical is not None and live != physical:
        raise StaleIndexError(
            f"qdrant alias {collection!r} points at {live!r}, not at {physical!r}: another "
            "build moved it"
        )
    size = _single_vector_params(client.get_collection(live), live).size
    held = client.count(live, exact=True).count
    if held != row_offset:
        raise StaleIndexError(
            f"qdrant collection {live!r} holds {held} points; append(row_offset={row_offset}) "
            "expects one per row before it (an append killed midway leaves points behind: "
            "build again)"
        )
    try:
        if id_column is not None:
            _check_new_ids(client, live, plan)
        _upload(client, live, plan, plan.batches(), size)
        count = client.count(live, exact=True).count
        if count != row_offset + len(dataset):
            reason = "did another append run at the same time?"
            if id_column:
                reason = f"id_column {id_column!r} must be unique; or {reason}"
            raise SearchIndexError(
                f"{len(dataset)} rows appended but qdrant collection {live!r} grew by "
                f"{count - row_offset} points: {reason}"
            )
    except BaseException:
        _delete_rows_from(client, live, row_offset)
        raise
    return QdrantIndex(client, collection, dataset=None, embed=plan.embed)


def _live_collection(client: QdrantClient, collection: str, caller: str) -> str:
    """The physical collection behind the alias `collection`, which `build` must have made:
    writing into (and, on failure, deleting points from) a collection made by hand is refused."""
    live = _alias_target(client, collection)
    if live is None:
        raise StaleIndexError(
            f"qdrant alias {collection!r} does not exist: run build() before {caller}()"
        )
    if not _built_for(client, collection, live):
        raise StaleIndexError(
            f"qdrant alias {collection!r} points at {live!r}, which build() did not make (its "
            f"name is not '{collection}__<version>' or its metadata has no {METADATA_KEY!r} "
            f"record of that alias); {caller}() writes only into collections build() made: "
            "run build()"
        )
    return live


def _rows_from(first: int, below: int | None = None) -> models.Filter:
    """A filter on the row position: `first <= row` (and `row < below`)."""
    bounds = models.Range(gte=first if first else None, lt=below)
    return models.Filter(must=[models.FieldCondition(key=ROW_KEY, range=bounds)])


def _delete_rows_from(client: QdrantClient, name: str, first: int) -> None:
    client.delete(name, points_selector=models.FilterSelector(filter=_rows_from(first)), wait=True)


def _check_new_ids(client: QdrantClient, name: str, plan: _Plan) -> None:
    """No appended row may take the id of a row already in the collection."""
    start = 0
    for side in plan.side_columns():  # the id column alone: nothing embedded twice
        rows = range(start, start + side.num_rows)
        ids = _ids(rows, side, plan.id_column, start)
        start += side.num_rows
        found = client.retrieve(name, ids=ids, with_payload=[ROW_KEY], with_vectors=False)
        taken = {point.id: (point.payload or {}).get(ROW_KEY) for point in found}
        for row, point_id in zip(rows, ids, strict=True):
            if point_id in taken:
                raise SearchIndexError(
                    f"id_column {plan.id_column!r}, row {row} of the rows appended: id "
                    f"{point_id!r} is already the id of row {taken[point_id]} in qdrant "
                    f"collection {name!r}; ids must be unique"
                )


def as_filter(filter: models.Filter | dict | None) -> models.Filter | None:
    """A Qdrant `Filter` from itself or its dict form (None for no filter).

    >>> as_filter({"must": [{"key": "tag", "match": {"value": "a"}}]}).must[0].key
    'tag'
    """
    if filter is None or isinstance(filter, models.Filter):
        return filter
    if not isinstance(filter, dict):
        raise SearchIndexError(
            f"filter must be a qdrant_client.models.Filter or its dict form, got {filter!r}"
        )
    try:
        return models.Filter(**filter)
    except Exception as error:  # pydantic's ValidationError, whatever its version
        raise SearchIndexError(f"filter {filter!r} is not a Qdrant Filter: {error}") from error


def is_local(client: QdrantClient) -> bool:
    """Whether `client` runs Qdrant's embedded local mode (in memory or in a folder).

    >>> is_local(QdrantClient(location=":memory:"))
    True
    """
    options = client.init_options
    return options.get("path") is not None or options.get("location") == ":memory:"


@dataclass
class _Plan:
    """What to read from the dataset, checked before anything is written to Qdrant."""

    dataset: Dataset
    column: str
    embed: Embedder | None
    embed_path: str | None
    payload_columns: tuple[str, ...]
    id_column: str | None
    batch_size: int
    row_offset: int = 0

    @classmethod
    def check(
        cls,
        dataset: Dataset,
        column: str | None,
        embed: str | Callable | None,
        payload_columns: Sequence[str],
        id_column: str | None,
        batch_size: int,
        row_offset: int = 0,
    ) -> _Plan:
        if not isinstance(dataset, Dataset):
            raise SearchIndexError(f"expected a datasets.Dataset, got {type(dataset).__name__}")
        check_count("batch_size", batch_size)
        check_count("row_offset", row_offset, minimum=0)
        if column is None:
            raise SearchIndexError(
                "column is required: the vector column, or the text column to embed"
            )
        if isinstance(payload_columns, str):
            raise SearchIndexError(f"payload_columns is a list of names, got {payload_columns!r}")
        names = [column, *payload_columns, *([id_column] if id_column else [])]
        missing = [name for name in names if name not in dataset.column_names]
        if missing:
            raise SearchIndexError(
                f"columns {missing} are not in the dataset; it has {dataset.column_names}"
            )
        check_vector_column(dataset, column, embed)
        if ROW_KEY in payload_columns:
            raise SearchIndexError(
                f"payload column {ROW_KEY!r} would overwrite the row position stored under "
                "that key; rename the column"
            )
        schema = dataset.data.schema
        for name in payload_columns:
            _check_payload_type(name, schema.field(name).type)
        if id_column is not None:
            _check_id_type(id_column, schema.field(id_column).type)
        return cls(
            dataset=dataset,
            column=column,
            embed=load_embedder(embed),
            embed_path=optional_embedder_path(embed),
            payload_columns=tuple(payload_columns),
            id_column=id_column,
            batch_size=batch_size,
            row_offset=row_offset,
        )

    def batches(self) -> Iterator[tuple[int, np.ndarray]]:
        return vector_batches(
            self.dataset, self.column, embed=self.embed, batch_size=self.batch_size
        )

    def side_columns(self) -> Iterator[pa.Table | None]:
        """Payload and id columns, batch by batch, aligned with `batches()`."""
        wanted = [*self.payload_columns, self.id_column]
        names = list(dict.fromkeys(name for name in wanted if name is not None))  # no repeats
        if not names:
            return itertools.repeat(None)
        selected = self.dataset.select_columns(names).with_format("arrow")
        return selected.iter(batch_size=self.batch_size)

    def record(self, collection: str, version: str) -> dict[str, Any]:
        """What the collection metadata keeps of this build."""
        return {
            "alias": collection,
            "version": version,
            "column": self.column,
            "embed": self.embed_path,
            "payload_columns": list(self.payload_columns),
            "id_column": self.id_column,
            "rows": len(self.dataset),
            "started": time.time(),
        }


def _upload(
    client: QdrantClient,
    name: str,
    plan: _Plan,
    batches: Iterable[tuple[int, np.ndarray]],
    dimension: int,
) -> None:
    """One `upload_collection` call per dataset batch: local mode turns each call into points
    all at once, so a call for the whole dataset would hold it all in memory."""
    for (start, matrix), side in zip(batches, plan.side_columns(), strict=False):
        where = f"column {plan.column!r}, rows {start}..{start + len(matrix) - 1}"
        _check_vectors(matrix, dimension, where, start)
        rows = range(plan.row_offset + start, plan.row_offset + start + len(matrix))
        client.upload_collection(
            name,
            vectors=matrix,
            payload=_payloads(rows, side, plan.payload_columns),
            ids=_ids(rows, side, plan.id_column, start),
            batch_size=plan.batch_size,
            wait=True,
        )


def _check_vectors(matrix: np.ndarray, dimension: int, where: str, start: int) -> None:
    if matrix.shape[1] != dimension:
        raise SearchIndexError(
            f"{where}: vectors of dimension {matrix.shape[1]}; expected {dimension}, the "
            "dimension of the collection (set by the first row)"
        )
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        bad = start + int(np.argmin(finite))
        raise SearchIndexError(f"{where}: row {bad} has a NaN or infinite value")


def _payloads(
    rows: range, side: pa.Table | None, payload_columns: Sequence[str]
) -> list[dict[str, Any]]:
    if not payload_columns:
        return [{ROW_KEY: row} for row in rows]
    columns = [_payload_values(side.column(name)) for name in payload_columns]
    keys = (ROW_KEY, *payload_columns)
    return [dict(zip(keys, values, strict=True)) for values in zip(rows, *columns, strict=True)]


def _payload_values(values: pa.ChunkedArray) -> list[Any]:
    if pa.types.is_floating(values.type):
        # JSON has no NaN or infinity (a Qdrant server refuses the request); null is what a
        # missing number is in a payload, as in Elasticsearch documents
        values = pc.if_else(pc.is_finite(values), values, None)
    python = values.to_pylist()  # one batch
    if _has_temporal(values.type):
        return [_jsonable(value) for value in python]
    return python


def _jsonable(value: Any) -> Any:
    """Dates and times as ISO 8601 strings, which Qdrant's datetime filters read."""
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    return value


def _ids(rows: range, side: pa.Table | None, id_column: str | None, start: int) -> list:
    if id_column is None:
        return list(rows)
    values = side.column(id_column).to_pylist()
    ids = []
    for position, value in enumerate(values, start):
        ids.append(_point_id(value, id_column, position))
    return ids


def _point_id(value: Any, id_column: str, row: int) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64:
        return value
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    raise SearchIndexError(
        f"id_column {id_column!r}, row {row}: {value!r} is not a valid point id; "
        f"expected {_ID_TYPES}"
    )


def _check_count(client: QdrantClient, name: str, plan: _Plan) -> None:
    """Every row became a point; otherwise two rows had the same id."""
    count = client.count(name, exact=True).count
    if count == len(plan.dataset):
        return
    duplicate = _first_duplicate(plan.dataset, plan.id_column) if plan.id_column else None
    detail = f": {duplicate}" if duplicate else ""
    raise SearchIndexError(
        f"{len(plan.dataset)} rows but {count} points in qdrant collection {name!r}; "
        f"id_column {plan.id_column!r} must be unique{detail}"
    )


def _first_duplicate(dataset: Dataset, id_column: str) -> str | None:
    seen: dict[Any, int] = {}
    for start, table in _enumerate_batches(dataset.select_columns([id_column])):
        for row, value in enumerate(table.column(id_column).to_pylist(), start):
            key = _point_id(value, id_column, row)
            if key in seen:
                return f"rows {seen[key]} and {row} both have id {value!r}"
            seen[key] = row
    return None


def _enumerate_batches(dataset: Dataset, batch_size: int = 10_000) -> Iterator[tuple[int, Any]]:
    start = 0
    for table in dataset.with_format("arrow").iter(batch_size=batch_size):
        yield start, table
        start += table.num_rows


def _check_payload_type(name: str, arrow_type: pa.DataType) -> None:
    bad = _unsupported_payload_type(arrow_type)
    if bad is not None:
        raise SearchIndexError(
            f"payload column {name!r} has type {arrow_type}, and {bad} cannot go into a Qdrant "
            "payload (JSON); expected numbers, strings, booleans, dates and times, and lists "
            "or structs of those"
        )


def _unsupported_payload_type(arrow_type: pa.DataType) -> pa.DataType | None:
    if pa.types.is_struct(arrow_type):
        for index in range(arrow_type.num_fields):
            bad = _unsupported_payload_type(arrow_type.field(index).type)
            if bad is not None:
                return bad
        return None
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return _unsupported_payload_type(arrow_type.value_type)
    if pa.types.is_fixed_size_list(arrow_type):
        return _unsupported_payload_type(arrow_type.value_type)
    simple = (
        pa.types.is_null,
        pa.types.is_boolean,
        pa.types.is_integer,
        pa.types.is_floating,
        pa.types.is_string,
        pa.types.is_large_string,
        pa.types.is_temporal,
    )
    if any(is_type(arrow_type) for is_type in simple) and not pa.types.is_duration(arrow_type):
        return None
    return arrow_type


def _has_temporal(arrow_type: pa.DataType) -> bool:
    if pa.types.is_temporal(arrow_type):
        return True
    if pa.types.is_struct(arrow_type):
        return any(_has_temporal(arrow_type.field(i).type) for i in range(arrow_type.num_fields))
    if hasattr(arrow_type, "value_type"):
        return _has_temporal(arrow_type.value_type)
    return False


def _check_id_type(name: str, arrow_type: pa.DataType) -> None:
    if not (
        pa.types.is_integer(arrow_type)
        or pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
    ):
        raise SearchIndexError(f"id_column {name!r} has type {arrow_type}; expected {_ID_TYPES}")


def _distance(distance: str | models.Distance) -> models.Distance:
    if isinstance(distance, models.Distance):
        return distance
    metric = DISTANCES.get(str(distance).lower())
    if metric is None:
        raise SearchIndexError(
            f"distance {distance!r} is not one of Cosine, Dot, Euclid, Manhattan (or ip, l2)"
        )
    return metric


def physical_name(collection: str, version: str) -> str:
    """The physical collection holding one version of the alias `collection`.

    >>> physical_name("docs", "20250101t000000000000-1a2b3c4d")
    'docs__20250101t000000000000-1a2b3c4d'
    """
    for what, name in (("collection", collection), ("version", version)):
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise SearchIndexError(
                f"{what} {name!r}: expected letters, digits, '_', '.' or '-', starting with a "
                "letter or digit"
            )
    physical = f"{collection}__{version}"
    if len(physical) > 255:
        raise SearchIndexError(f"collection name {physical!r} is longer than 255 characters")
    return physical


def _check_names(client: QdrantClient, collection: str, physical: str) -> str | None:
    """The physical collection the alias points at now (None on a first build), after
    checking that neither name is taken by something else."""
    existing = {description.name for description in client.get_collections().collections}
    if collection in existing:
        raise SearchIndexError(
            f"{collection!r} is a qdrant collection, not an alias; build() needs that name for "
            "the alias of its versions: delete or rename that collection, or pick another name"
        )
    previous = _alias_target(client, collection)
    if physical in existing:
        state = "is live behind the alias" if physical == previous else "already exists"
        raise SearchIndexError(
            f"qdrant collection {physical!r} {state}: give each build a new version "
            f"(delete it with client.delete_collection({physical!r}) if a failed build left it)"
        )
    return previous


def _alias_target(client: QdrantClient, alias: str) -> str | None:
    for description in client.get_aliases().aliases:
        if description.alias_name == alias:
            return description.collection_name
    return None


def _swap_alias(client: QdrantClient, alias: str, physical: str, previous: str | None) -> None:
    """One request: the server applies the list atomically, so readers switch at once."""
    operations: list[Any] = []
    if previous is not None:
        operations.append(
            models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
        )
    operations.append(
        models.CreateAliasOperation(
            create_alias=models.CreateAlias(collection_name=physical, alias_name=alias)
        )
    )
    client.update_collection_aliases(change_aliases_operations=operations)


def _delete_unless_live(client: QdrantClient, alias: str, physical: str) -> None:
    """Clean up after a failed build; a swap that went through before its answer was lost has
    made `physical` live, and deleting it then would take the alias with it."""
    try:
        if _alias_target(client, alias) == physical:
            return
    except Exception:
        return  # unreachable server: leave it to the next build's orphan sweep
    _delete_quietly(client, physical)


def _delete_quietly(client: QdrantClient, name: str) -> None:
    try:
        client.delete_collection(name)
    except Exception as error:
        warnings.warn(
            f"could not delete qdrant collection {name!r} ({error}); a later build deletes it "
            "once it is a day old",
            stacklevel=3,
        )


def _delete_previous(client: QdrantClient, alias: str, previous: str) -> None:
    """After the swap, delete the collection the alias pointed at before if a build of this
    alias made it; one made otherwise (by hand, by another tool) is left in place."""
    try:
        ours = _built_for(client, alias, previous)
    except Exception as error:
        warnings.warn(
            f"could not read qdrant collection {previous!r} ({error}); it is left in place",
            stacklevel=3,
        )
        return
    if ours:
        _delete_quietly(client, previous)
        return
    warnings.warn(
        f"qdrant alias {alias!r} was moved away from {previous!r}, which build() did not make; "
        "it is left in place",
        stacklevel=3,
    )


def _delete_orphans(client: QdrantClient, alias: str, keep: str | None = None) -> None:
    """Physical collections of this alias left by builds killed before their cleanup, once
    old enough that no build can still be filling them (`keep` aside)."""
    live = _alias_target(client, alias)
    cutoff = time.time() - ORPHAN_AGE_SECONDS
    for description in client.get_collections().collections:
        name = description.name
        if name in (live, keep) or not name.startswith(f"{alias}__"):
            continue
        record = _record(client, name)
        if record.get("alias") == alias and record.get("started", cutoff) < cutoff:
            _delete_quietly(client, name)


def _built_for(client: QdrantClient, alias: str, name: str) -> bool:
    """Whether `build` made the collection `name` for `alias`: named `<alias>__<version>` and
    recorded as such in its metadata (both, so a hand-made `<alias>__x` is not taken)."""
    return name.startswith(f"{alias}__") and _record(client, name).get("alias") == alias


def _record(client: QdrantClient, name: str) -> dict[str, Any]:
    """What `build` recorded in the metadata of the collection `name` ({} if nothing)."""
    metadata = client.get_collection(name).config.metadata or {}
    return metadata.get(METADATA_KEY) or {}


def _single_vector_params(info: models.CollectionInfo, name: str) -> models.VectorParams:
    vectors = info.config.params.vectors
    if not isinstance(vectors, models.VectorParams):
        raise SearchIndexError(
            f"qdrant collection {name!r} has named vectors {sorted(vectors or {})}; "
            "ds_assets indexes hold one unnamed vector per point"
        )
    return vectors


# -- local mode: one client per folder and process -----------------------------------------------
_LOCAL_CLIENTS: dict[str, QdrantClient] = {}
_LOCAL_LOCK = threading.Lock()


def local_client(path: str) -> QdrantClient:
    """The one local-mode client of this process for the folder `path`.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     client = local_client(folder)
    ...     print(client is local_client(folder + "/."))
    ...     client.close()
    True
    """
    key = os.path.realpath(path)
    with _LOCAL_LOCK:
        client = _LOCAL_CLIENTS.get(key)
        if client is None or getattr(client._client, "closed", False):  # closed by a user
            client = _open_local(key)
            _LOCAL_CLIENTS[key] = client
        return client


@atexit.register
def _close_local_clients() -> None:
    """Release the folder locks while the interpreter can still run qdrant-client's close()."""
    with _LOCAL_LOCK:
        for client in _LOCAL_CLIENTS.values():
            client.close()
        _LOCAL_CLIENTS.clear()


def _open_local(folder: str) -> QdrantClient:
    try:
        return QdrantClient(path=folder)
    except RuntimeError as error:
        raise RuntimeError(
            f"Qdrant local mode folder {folder} is open in another process ({error}); local "
            "mode allows one process per folder: set QdrantResource(url=...) to use a server"
        ) from error
