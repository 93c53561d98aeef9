"""What every index shares: the search API, vectors and texts streamed from a dataset, the
embedder named by import path.

The API follows `datasets`' `Dataset.search` / `get_nearest_examples`: `search(query, k)` gives
`(scores, indices)`, best first, indices being row positions in the indexed dataset version;
`search_batch(queries, k)` gives lists of those; `nearest_examples(query, k)` gives the scores
and the rows themselves (a dict of columns, like `get_nearest_examples`). Scores are the
engine's own (FAISS L2: distances, smaller is better; inner product, cosine, BM25: larger is
better); the order is always best first.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from datasets import Dataset

from ds_assets.ops.lazy import LazyTransformError, import_path, resolve

Embedder = Callable[[list[str]], np.ndarray]


class SearchIndexError(ValueError):
    """An index cannot be built or queried as asked (the message names column, row or value)."""


class StaleIndexError(SearchIndexError):
    """The live collection or index is not the one an append expects (another build moved the
    alias, or an append killed midway left rows behind): nothing was written; build again."""


def check_count(name: str, value: Any, minimum: int = 1) -> None:
    """Raise `SearchIndexError` unless `value` is an integer (not a bool) of at least `minimum`
    (1: a positive integer, 0: a non-negative one).

    >>> check_count("k", 0)
    Traceback (most recent call last):
    ...
    ds_assets.index.base.SearchIndexError: k must be a positive integer, got 0
    """
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive" if minimum == 1 else "a non-negative" if minimum == 0 else "an"
        at_least = f" of at least {minimum}" if minimum > 1 else ""
        raise SearchIndexError(f"{name} must be {kind} integer{at_least}, got {value!r}")


def optional_embedder_path(embed: str | Callable | None) -> str | None:
    """`embedder_path`, or None for an embedder with no import path (a lambda, a function
    defined in a notebook): the index still works; whoever opens it again passes `embed=`."""
    try:
        return embedder_path(embed)
    except LazyTransformError:
        return None


def embedder_path(embed: str | Callable | None) -> str | None:
    """The `"module:function"` of an embedder (stored in manifests), or None."""
    return None if embed is None else import_path(embed)


def load_embedder(embed: str | Callable | None) -> Embedder | None:
    """The embedder itself, from a callable or its import path."""
    if embed is None or callable(embed):
        return embed
    return resolve(embed)


def embed_texts(embed: Embedder, texts: Sequence[str], where: str) -> np.ndarray:
    """`embed(texts)` checked: a float32 C-contiguous matrix with one row per text."""
    matrix = np.ascontiguousarray(np.asarray(embed(list(texts)), dtype=np.float32))
    if matrix.ndim != 2 or matrix.shape[0] != len(texts):
        raise SearchIndexError(
            f"{where}: the embedder returned shape {matrix.shape} for {len(texts)} texts; "
            "expected (number of texts, dimension)"
        )
    return matrix


def vector_batches(
    dataset: Dataset,
    column: str,
    *,
    embed: Embedder | None = None,
    batch_size: int = 10_000,
    exact_size: bool = True,
) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, float32 matrix) per batch of `column`: vectors read from Arrow, or texts
    embedded batch by batch.

    Batches hold `batch_size` rows (the last one fewer). With `exact_size=False` a batch may
    hold fewer, ending where a stored Arrow chunk ends, so that a float32 vector column comes
    as read-only views of the memory map with no copy at all (FAISS `add` copies what it
    keeps anyway); with `True`, batches spanning chunks are copied into one matrix.

    >>> ds = Dataset.from_dict({"v": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]})
    >>> [(start, m.shape) for start, m in vector_batches(ds, "v", batch_size=2)]
    [(0, (2, 2)), (2, (1, 2))]
    """
    if column not in dataset.column_names:
        raise SearchIndexError(f"column {column!r} is not in the dataset {dataset.column_names}")
    start = 0
    for chunks in _column_batches(dataset, column, batch_size, exact_size):
        rows = sum(len(chunk) for chunk in chunks)
        where = f"column {column!r}, rows {start}..{start + rows - 1}"
        if embed is not None:
            texts = [text for chunk in chunks for text in chunk.to_pylist()]  # what embed takes
            if any(text is None for text in texts):
                row = start + texts.index(None)
                raise SearchIndexError(f"column {column!r}, row {row}: null text to embed")
            matrix = embed_texts(embed, texts, where)
        else:
            views = [_matrix(chunk, where) for chunk in chunks]
            _check_same_dimension(views, where)
            matrix = views[0] if len(views) == 1 else np.concatenate(views)
        yield start, matrix
        start += rows


def check_vector_column(dataset: Dataset, column: str, embed: Any) -> None:
    """Raise `SearchIndexError` unless `column` holds vectors (lists of numbers), or text when
    `embed` is given.

    >>> check_vector_column(Dataset.from_dict({"v": [[True]]}), "v", None)
    Traceback (most recent call last):
    ...
    ds_assets.index.base.SearchIndexError: column 'v' is not a vector column: it is \
List(Value('bool')); expected a list of numbers per row (e.g. List(Value('float32'))), or pass \
embed= for a text column
    """
    arrow_type = dataset.data.schema.field(column).type
    feature = dataset.features[column]
    if embed is not None:
        if not (pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)):
            raise SearchIndexError(
                f"column {column!r} is {feature}, not text: embed= needs a string column"
            )
        return
    if not any(is_type(arrow_type) for is_type in _LIST_TYPES) or not (
        pa.types.is_floating(arrow_type.value_type) or pa.types.is_integer(arrow_type.value_type)
    ):
        raise SearchIndexError(
            f"column {column!r} is not a vector column: it is {feature}; expected a list of "
            "numbers per row (e.g. List(Value('float32'))), or pass embed= for a text column"
        )


def vector_dimension(dataset: Dataset, column: str, embed: Embedder | None = None) -> int:
    """Length of the vectors of `column` as its first row has them (embedded when `embed`).

    >>> vector_dimension(Dataset.from_dict({"v": [[1.0, 0.0, 2.0]]}), "v")
    3
    """
    first = dataset.select(range(1)) if len(dataset) else dataset
    return next(vector_batches(first, column, embed=embed))[1].shape[1]


def stored_float32_vectors(dataset: Dataset, column: str) -> bool:
    """Whether `vector_batches(..., exact_size=False)` gives views of the memory map, copying
    nothing: float32 vectors, rows in stored order (no `select`/`shuffle` indices mapping).

    >>> stored_float32_vectors(Dataset.from_dict({"v": np.ones((2, 3), dtype=np.float32)}), "v")
    True
    >>> stored_float32_vectors(Dataset.from_dict({"v": [[1.0, 2.0]]}), "v")  # float64
    False
    """
    arrow_type = dataset.data.schema.field(column).type
    return (
        dataset._indices is None
        and any(is_type(arrow_type) for is_type in _LIST_TYPES)
        and arrow_type.value_type == pa.float32()
    )


def _column_batches(
    dataset: Dataset, column: str, batch_size: int, exact_size: bool
) -> Iterator[list[pa.Array]]:
    """The Arrow chunks of each batch of `column` (zero-copy slices of the stored table)."""
    if dataset._indices is not None:  # rows picked by select/shuffle: datasets gathers them
        for table in dataset.with_format("arrow").iter(batch_size=batch_size):
            yield table.column(column).chunks
        return
    values = dataset.data.table.column(column)
    if not exact_size:
        for chunk in values.chunks:
            for offset in range(0, len(chunk), batch_size):
                yield [chunk.slice(offset, batch_size)]
        return
    for offset in range(0, len(values), batch_size):
        yield values.slice(offset, batch_size).chunks


_LIST_TYPES = (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list)


def _matrix(array: pa.Array, where: str) -> np.ndarray:
    """One chunk of vectors as a (rows, dimension) float32 matrix: a view of the Arrow buffer
    when it already holds float32, a converted copy otherwise. The lengths come from the
    offsets buffer itself (a few microseconds a chunk, where Arrow compute kernels take tens).
    """
    if not any(is_type(array.type) for is_type in _LIST_TYPES):
        raise SearchIndexError(f"{where}: expected a list of numbers per row, got {array.type}")
    if array.null_count:
        raise SearchIndexError(f"{where}: {array.null_count} rows have no vector")
    if pa.types.is_fixed_size_list(array.type):
        dimension, values = array.type.list_size, array.flatten()
    else:
        offsets = _offsets(array)
        lengths = offsets[1:] - offsets[:-1]
        if len(lengths) and (lengths != lengths[0]).any():
            spread = [int(lengths.min()), int(lengths.max())]
            raise SearchIndexError(f"{where}: vectors of different lengths {spread}")
        dimension = int(lengths[0]) if len(lengths) else 0
        values = array.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    flat = values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return flat.reshape(len(array), dimension)


def _offsets(array: pa.Array) -> np.ndarray:
    """The list offsets of `array` (a view of its buffer, the slice's own rows only)."""
    dtype = np.int64 if pa.types.is_large_list(array.type) else np.int32
    everything = np.frombuffer(array.buffers()[1], dtype=dtype)
    return everything[array.offset : array.offset + len(array) + 1]


def _check_same_dimension(views: list[np.ndarray], where: str) -> None:
    dimensions = sorted({view.shape[1] for view in views if len(view)})
    if len(dimensions) > 1:
        raise SearchIndexError(f"{where}: vectors of different lengths {dimensions}")


def _query_matrix(queries: Sequence[Any]) -> np.ndarray:
    """Vector queries as a float32 matrix, or `SearchIndexError` naming the first bad query."""
    if isinstance(queries, np.ndarray) and queries.ndim == 2 and queries.dtype.kind in "fiu":
        with np.errstate(over="ignore"):
            return queries.astype(np.float32, copy=False)
    for number, query in enumerate(queries):
        vector = np.asarray(query)
        if vector.ndim != 1 or not (
            np.issubdtype(vector.dtype, np.floating) or np.issubdtype(vector.dtype, np.integer)
        ):
            raise SearchIndexError(
                f"query {number} is {_shown(query)}; expected a vector (a list or 1-d array) of "
                "numbers"
            )
    lengths = sorted({len(query) for query in queries})
    if len(lengths) > 1:
        raise SearchIndexError(f"queries must be vectors of one length, got lengths {lengths}")
    with np.errstate(over="ignore"):  # a float64 beyond float32 becomes inf: refused next
        return np.asarray(queries, dtype=np.float32).reshape(len(queries), -1)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class SearchIndex(ABC):
    """A built index, ready to query. `dataset` is the indexed dataset version (rows for
    `nearest_examples`); `embed` turns text queries into vectors for vector indexes."""

    engine: ClassVar[str]
    text_queries: ClassVar[bool] = False  # full-text engines take strings as they are

    def __init__(self, dataset: Dataset | None = None, embed: str | Callable | None = None):
        self.dataset = dataset
        self.embed = load_embedder(embed)

    @abstractmethod
    def count(self) -> int:
        """Number of vectors / documents in the index."""

    @abstractmethod
    def _search_batch(
        self, queries: Any, k: int, filter: Any
    ) -> tuple[list[list[float]], list[list[int]]]:
        """Engine part of `search_batch`: queries are a float32 matrix (vector engines) or a
        list of strings (full-text engines)."""

    def search(self, query: Any, k: int = 10, filter: Any = None) -> tuple[list[float], list[int]]:
        """(scores, row indices) of the `k` best matches, best first."""
        scores, indices = self.search_batch([query], k, filter)
        return scores[0], indices[0]

    def search_batch(
        self, queries: Sequence[Any], k: int = 10, filter: Any = None
    ) -> tuple[list[list[float]], list[list[int]]]:
        """`search` for many queries at once (one engine call where the engine allows)."""
        check_count("k", k)
        if not len(queries):
            return [], []
        return self._search_batch(self._prepare(queries), int(k), filter)

    def nearest_examples(
        self, query: Any, k: int = 10, filter: Any = None
    ) -> tuple[list[float], dict[str, list]]:
        """(scores, rows as a dict of columns) of the `k` best matches, best first."""
        if self.dataset is None:
            raise SearchIndexError(f"this {self.engine} index was opened without its dataset")
        scores, indices = self.search(query, k, filter)
        beyond = [row for row in indices if row >= len(self.dataset)]
        if beyond:
            raise SearchIndexError(
                f"this {self.engine} index returned row {beyond[0]}, but the dataset it was "
                f"opened with has {len(self.dataset)} rows: open it with the dataset version "
                "it indexes"
            )
        return scores, self.dataset.select(indices)[:]  # no hits: each column an empty list

    def _prepare(self, queries: Sequence[Any]) -> Any:
        if self.text_queries:
            if not all(isinstance(q, str) for q in queries):
                raise SearchIndexError(f"{self.engine} queries are strings")
            return list(queries)
        if len(queries) and all(isinstance(q, str) for q in queries):
            if self.embed is None:
                raise SearchIndexError(
                    f"text queries need an embedder; this {self.engine} index has none"
                )
            matrix = embed_texts(self.embed, list(queries), "queries")
        else:
            matrix = _query_matrix(queries)
        bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
        if len(bad):  # FAISS finds nothing for such a query, without a word
            raise SearchIndexError(
                f"query {int(bad[0])} has a NaN or infinite value (or one beyond float32's "
                "range); expected finite numbers"
            )
        return np.ascontiguousarray(matrix)
