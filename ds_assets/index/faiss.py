"""FAISS vector index over one column of a `datasets.Dataset`, embedded in the process.

FAISS (`faiss-cpu`) does the indexing, training, search, filtering and file format; this module
only streams the vectors to it: `build` reads the column batch by batch from the memory-mapped
dataset (`base.vector_batches`), so memory holds one batch plus what FAISS itself keeps (all
vectors for "Flat", codes for compressed indexes), and a training sample when the factory
string needs training. Row `i` of the dataset is FAISS id `i`, so hits are row positions.

- Metrics: "l2" (FAISS L2: scores are squared distances, smaller is better), "ip" (inner
  product, larger is better), "cosine" (vectors and queries L2-normalized, then inner product;
  a zero vector stays zero and scores 0 against everything).
- Training: on `train_size` rows drawn at random (seed 0, so a build is reproducible), copied
  into one sample matrix batch by batch, never the whole column (a dense sample of a vector
  column is picked during one sequential scan, a sparse one or texts read by `Dataset.select`).
  The default is what FAISS's k-means uses (256 points per centroid: nlist for IVF, 2**nbits
  for PQ; 256 centroids assumed for other trained parts such as SQ, PCA, RQ), capped at
  512 MiB of float32 but never below FAISS's minimum of 39 points per centroid.
- Filters (`filter=`): FAISS's own `IDSelector` (e.g. `faiss.IDSelectorRange(0, 100)`), or a
  sequence of allowed row positions. Flat, SQ, IVF and HNSW indexes take them (IVF and HNSW
  filter the candidates they visit, so a very selective filter may return fewer than k hits);
  index types without selector support (PQ, Refine) raise a SearchIndexError saying so.
- Factory strings are FAISS's own; note that a bare "PQ<m>" also runs FAISS's polysemous
  training, which takes minutes: "PQ<m>np" skips it.
- Search-time knobs stay FAISS's: `faiss.ParameterSpace().set_index_parameters(built.index,
  "nprobe=16")` on the raw index (`FaissIndex.index`). An approximate index may return fewer
  than k hits: HNSW when k approaches its `efSearch` (16 by default; set it to at least k),
  IVF when the `nprobe` lists probed hold fewer than k vectors.
- `FaissIndex.load` memory-maps the file (`faiss.IO_FLAG_MMAP_IFC`: flat codes and inverted
  lists stay in the page cache, shared by processes). FAISS cannot add to such an index (its
  `add` aborts the process): extend `FaissIndex.writable()`, or load with `mmap=False`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from itertools import compress
from typing import Any

import faiss
import numpy as np
from datasets import Dataset

from ds_assets.index.base import (
    SearchIndex,
    SearchIndexError,
    check_count,
    check_vector_column,
    load_embedder,
    optional_embedder_path,
    stored_float32_vectors,
    vector_batches,
    vector_dimension,
)

METRICS = {
    "l2": faiss.METRIC_L2,
    "ip": faiss.METRIC_INNER_PRODUCT,
    "cosine": faiss.METRIC_INNER_PRODUCT,  # on normalized vectors
}
POINTS_PER_CENTROID_MIN = 39  # below this FAISS's k-means warns
POINTS_PER_CENTROID_MAX = 256  # above this FAISS's k-means subsamples
TRAIN_BYTES_MAX = 512 * 1024**2
TRAIN_SEED = 0
SCAN_SAMPLE_RATIO = 50  # gather a training sample by a full scan when it holds >= 1/50 rows


class FaissIndex(SearchIndex):
    """A FAISS index whose ids are the row positions of the indexed dataset version.

    `index` is the raw `faiss.Index` (for FAISS's own tuning); `metric` is "l2", "ip" or
    "cosine"; `dataset` (optional) gives `nearest_examples` its rows; `embed` turns text
    queries into vectors.

    >>> ds = Dataset.from_dict({"v": [[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]]})
    >>> built = build(ds, "v")
    >>> built.search([1.0, 0.0], k=2)
    ([0.0, 1.0], [1, 0])
    >>> built.nearest_examples([4.0, 4.0], k=1)
    ([2.0], {'v': [[5.0, 5.0]]})
    """

    engine = "faiss"

    def __init__(
        self,
        index: faiss.Index,
        metric: str = "l2",
        *,
        dataset: Dataset | None = None,
        embed: str | Callable | None = None,
        index_factory: str | None = None,
    ):
        super().__init__(dataset, embed)
        _check_metric(metric)
        if index.metric_type != METRICS[metric]:
            raise SearchIndexError(
                f"the FAISS index uses {_metric_name(index.metric_type)}, not metric {metric!r}"
            )
        self.index = index
        self.metric = metric
        self.index_factory = index_factory
        self._dimension = int(index.d)  # fixed for the life of a FAISS index
        self.embed_path = optional_embedder_path(embed)
        if dataset is not None and dataset.num_rows != self.count():
            raise SearchIndexError(
                f"the index holds {self.count()} vectors but the dataset has {dataset.num_rows} "
                "rows; pass the dataset version it indexes"
            )

    def count(self) -> int:
        """Number of vectors in the index."""
        return int(self.index.ntotal)

    @property
    def dimension(self) -> int:
        """Length of the indexed vectors (and of the queries)."""
        return self._dimension

    def describe(self) -> dict[str, Any]:
        """What a manifest records of this index (JSON-ready).

        >>> build(Dataset.from_dict({"v": [[1.0, 2.0]]}), "v", metric="ip").describe()["metric"]
        'ip'
        """
        return {
            "engine": self.engine,
            "count": self.count(),
            "dimension": self.dimension,
            "metric": self.metric,
            "index_factory": self.index_factory,
            "index_type": type(faiss.downcast_index(self.index)).__name__,
            "embed": self.embed_path,
        }

    def writable(self) -> FaissIndex:
        """A copy of this index holding its own vectors in memory, which FAISS can extend.

        An index opened memory-mapped (`load`, and so every index a Dagster input receives) is
        read-only: FAISS's `add` on it aborts the whole process, with no Python exception to
        catch. The copy is a serialization round trip (the index's bytes twice, briefly).

        >>> ds = Dataset.from_dict({"v": [[1.0, 0.0], [0.0, 1.0]]})
        >>> built = build(ds, "v")
        >>> copy = built.writable()
        >>> copy.index.add(np.ones((1, 2), dtype=np.float32))
        >>> copy.count(), built.count()
        (3, 2)
        """
        copy = faiss.deserialize_index(faiss.serialize_index(self.index))
        embed = self.embed_path or self.embed
        return FaissIndex(
            copy, self.metric, dataset=self.dataset, embed=embed, index_factory=self.index_factory
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the `.faiss` file (`faiss.write_index`), atomically: a reader of `path` sees
        the previous file or the new one, never a partial one.

        >>> import tempfile, os
        >>> built = build(Dataset.from_dict({"v": [[1.0, 2.0]]}), "v")
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     built.save(os.path.join(folder, "v.faiss"))
        ...     FaissIndex.load(os.path.join(folder, "v.faiss"), mmap=False).count()
        1
        """
        path = os.fspath(path)
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise FileNotFoundError(f"{path}: its folder does not exist")
        temporary = os.path.join(
            os.path.dirname(os.path.abspath(path)),
            f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex}",
        )
        try:
            faiss.write_index(self.index, temporary)
            os.replace(temporary, path)
        except BaseException:
            if os.path.exists(temporary):
                os.remove(temporary)
            raise

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        dataset: Dataset | None = None,
        embed: str | Callable | None = None,
        metric: str | None = None,
        index_factory: str | None = None,
        mmap: bool = True,
    ) -> FaissIndex:
        """Open a `.faiss` file, memory-mapped unless `mmap=False` (see the module docstring).

        The file does not say whether inner-product vectors were normalized: `metric` is
        required for those ("ip" or "cosine", as `describe()` recorded it); an L2 file needs
        none. `index_factory` is only carried into `describe()`.

        >>> import tempfile, os
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = os.path.join(folder.name, "v.faiss")
        >>> build(Dataset.from_dict({"v": [[3.0, 4.0]]}), "v", metric="cosine").save(path)
        >>> FaissIndex.load(path, metric="cosine").search([6.0, 8.0], k=1)
        ([1.0], [0])
        >>> folder.cleanup()
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise SearchIndexError(f"{path}: no such FAISS index file")
        index = _read_index(path, mmap)
        if metric is None:
            if index.metric_type != faiss.METRIC_L2:
                raise SearchIndexError(
                    f"{path}: the index uses {_metric_name(index.metric_type)}; pass "
                    "metric='ip' or metric='cosine' (as it was built; describe() records it)"
                )
            metric = "l2"
        try:
            return cls(index, metric, dataset=dataset, embed=embed, index_factory=index_factory)
        except SearchIndexError as error:
            raise SearchIndexError(f"{path}: {error}") from None

    def _search_batch(
        self, queries: np.ndarray, k: int, filter: Any
    ) -> tuple[list[list[float]], list[list[int]]]:
        if queries.shape[1] != self.dimension:
            raise SearchIndexError(
                f"queries have dimension {queries.shape[1]}; this index holds vectors of "
                f"dimension {self.dimension}"
            )
        if self.metric == "cosine":
            queries = _normalized(queries)
        params = None if filter is None else _search_parameters(self.index, filter)
        k = min(k, max(1, self.count()))  # FAISS allocates k results per query up front
        try:
            scores, ids = self.index.search(queries, k, params=params)
        except RuntimeError as error:
            kind = type(faiss.downcast_index(self.index)).__name__
            hint = (
                "" if filter is None else " (filters need an index type that takes an IDSelector)"
            )
            raise SearchIndexError(
                f"FAISS search failed on {kind}{hint}: {_faiss_message(error)}"
            ) from None
        scores, ids = scores.tolist(), ids.tolist()
        if all(-1 not in row for row in ids):  # the usual case: k hits, no padding to drop
            return scores, ids
        found = [[row >= 0 for row in hits] for hits in ids]  # FAISS pads with -1
        return (
            [list(compress(row, keep)) for row, keep in zip(scores, found, strict=True)],
            [list(compress(row, keep)) for row, keep in zip(ids, found, strict=True)],
        )


def build(
    dataset: Dataset,
    column: str,
    *,
    embed: str | Callable | None = None,
    index_factory: str = "Flat",
    metric: str = "l2",
    batch_size: int = 10_000,
    train_size: int | None = None,
) -> FaissIndex:
    """Index `column` of `dataset` with FAISS: a vector column, or a text column with `embed`
    (a `"module:function"` or callable turning a list of strings into a float32 matrix).

    `index_factory` is FAISS's factory string ("Flat", "IVF1024,Flat", "HNSW32", "IVF256,PQ16",
    ...); indexes that need training are trained on `train_size` sampled rows (default: see the
    module docstring). Vectors are added at most `batch_size` rows at a time (a plain flat
    index is filled in place, see `_fill_flat`).

    >>> ds = Dataset.from_dict({"text": ["red apple", "green apple", "blue whale"]})
    >>> built = build(ds, "text", embed="ds_assets.index.embedders:hashing_embedder",
    ...               metric="cosine")
    >>> built.search("whale", k=1)[1]
    [2]
    """
    _check_metric(metric)
    check_count("batch_size", batch_size)
    if train_size is not None:
        check_count("train_size", train_size)
    _check_column(dataset, column, embed)
    embedder = load_embedder(embed)
    index = _new_index(index_factory, vector_dimension(dataset, column, embedder), metric)
    if not index.is_trained:
        _train(index, dataset, column, embedder, metric, train_size, batch_size, index_factory)
    if _is_plain_flat(index):
        _fill_flat(index, dataset, column, embedder, metric, batch_size)
    else:
        _reserve(index, dataset.num_rows)
        vectors = vector_batches(dataset, column, embed=embedder, batch_size=batch_size)
        for start, matrix in _checked_batches(vectors, column, metric == "cosine"):
            _add(index, start, matrix, column)
    return FaissIndex(index, metric, dataset=dataset, embed=embed, index_factory=index_factory)


def default_train_size(index: faiss.Index, rows: int, dimension: int) -> int:
    """Training rows `build` uses when `train_size` is not given (see the module docstring).

    >>> default_train_size(faiss.index_factory(8, "IVF100,Flat"), 1_000_000, 8)
    25600
    """
    centroids = _centroid_count(index)
    bounded = max(POINTS_PER_CENTROID_MIN * centroids, TRAIN_BYTES_MAX // (4 * dimension))
    return min(rows, POINTS_PER_CENTROID_MAX * centroids, bounded)


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise SearchIndexError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")


def _check_column(dataset: Dataset, column: str, embed: Any) -> None:
    if column not in dataset.column_names:
        raise SearchIndexError(f"column {column!r} is not in the dataset {dataset.column_names}")
    if dataset.num_rows == 0:
        raise SearchIndexError(f"the dataset is empty: no rows to index in column {column!r}")
    check_vector_column(dataset, column, embed)


def _checked_batches(
    batches: Iterator[tuple[int, np.ndarray]], column: str, normalize: bool
) -> Iterator[tuple[int, np.ndarray]]:
    """`_checked` over (first row, matrix) batches."""
    for start, matrix in batches:
        yield start, _checked(matrix, range(start, start + len(matrix)), column, normalize)


def _checked(matrix: np.ndarray, rows: Sequence[int], column: str, normalize: bool) -> np.ndarray:
    """`matrix` with finite values (a NaN would silently poison the distances), L2-normalized
    (a copy) when `normalize`; `rows` are the dataset rows of its rows, to name a bad one."""
    _check_finite(matrix, rows, column)
    return _normalized(matrix) if normalize else matrix


def _check_finite(matrix: np.ndarray, rows: Sequence[int], column: str) -> None:
    if matrix.shape[1] == 0:
        raise SearchIndexError(f"column {column!r}, row {rows[0]}: empty vector")
    # Squared norms carry any NaN or infinity. FAISS computes them in one SIMD pass, twice as
    # fast as numpy's sum; numpy's own matrix product would start OpenBLAS threads, which spin
    # against FAISS's OpenMP threads. A row whose norm is not finite is refused: a bad value,
    # or finite values overflowing float32 (then its distances overflow too).
    for suspect in np.flatnonzero(~np.isfinite(_squared_norms(matrix))):
        row = int(rows[int(suspect)])
        if not np.isfinite(matrix[suspect]).all():
            raise SearchIndexError(f"column {column!r}, row {row}: NaN or infinite value")
        # finite, but distances to it overflow float32: searches would silently skip the row
        raise SearchIndexError(
            f"column {column!r}, row {row}: values so large that the vector's squared length "
            "overflows float32 (FAISS's distances to it would be infinite and searches would "
            "never return it); scale the vectors"
        )


def _squared_norms(matrix: np.ndarray) -> np.ndarray:
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    norms = np.empty(len(matrix), dtype=np.float32)
    faiss.fvec_norms_L2sqr(faiss.swig_ptr(norms), faiss.swig_ptr(matrix), *matrix.shape[::-1])
    return norms


def _normalized(matrix: np.ndarray) -> np.ndarray:
    copy = np.array(matrix, dtype=np.float32, order="C")  # may be a read-only memory map
    faiss.normalize_L2(copy)
    return copy


def _new_index(index_factory: str, dimension: int, metric: str) -> faiss.Index:
    try:
        index = faiss.index_factory(dimension, index_factory, METRICS[metric])
    except RuntimeError as error:
        raise SearchIndexError(
            f"FAISS cannot make index_factory {index_factory!r} for dimension {dimension}, "
            f"metric {metric!r}: {_faiss_message(error)}"
        ) from None
    if index.metric_type != METRICS[metric]:
        raise SearchIndexError(
            f"index_factory {index_factory!r} does not support metric {metric!r} "
            f"(FAISS made a {_metric_name(index.metric_type)} index)"
        )
    return index


def _train(
    index: faiss.Index,
    dataset: Dataset,
    column: str,
    embed: Callable | None,
    metric: str,
    train_size: int | None,
    batch_size: int,
    index_factory: str,
) -> None:
    rows = dataset.num_rows
    size = min(rows, train_size or default_train_size(index, rows, index.d))
    positions = None if size == rows else _sample_positions(rows, size)
    sample = np.empty((size, index.d), dtype=np.float32)
    for offset, matrix in _sample_batches(dataset, column, embed, positions, batch_size):
        end = offset + len(matrix)
        rows_here = range(offset, end) if positions is None else positions[offset:end]
        _check_dimension(index, matrix, rows_here, column)
        sample[offset:end] = _checked(matrix, rows_here, column, metric == "cosine")
    # FAISS's k-means aborts the whole process ("invalid cluster assignment") when a squared
    # norm overflows float32, so such rows are refused here with their name.
    overflowing = np.flatnonzero(~np.isfinite(_squared_norms(sample)))
    if len(overflowing):
        first = int(overflowing[0])
        row = first if positions is None else int(positions[first])
        raise SearchIndexError(
            f"column {column!r}, row {row}: values too large to train FAISS index "
            f"{index_factory!r} on (the squared length overflows float32); scale the vectors"
        )
    try:
        index.train(sample)
    except RuntimeError as error:
        raise SearchIndexError(
            f"training FAISS index {index_factory!r} on {size} vectors of column {column!r} "
            f"failed: {_faiss_message(error)}"
        ) from None


def _sample_batches(
    dataset: Dataset,
    column: str,
    embed: Callable | None,
    positions: np.ndarray | None,
    batch_size: int,
) -> Iterator[tuple[int, np.ndarray]]:
    """(offset in the sample, matrix) of the rows at the sorted `positions` (None: all rows).

    A stored vector column is scanned in order and the sampled rows picked from each batch
    when the sample is dense enough (a sequential read of the memory map is far faster than
    one random read per row); sparse samples, and texts (embedding is the cost), are read
    through `Dataset.select`, row by row."""
    if positions is None:
        yield from vector_batches(dataset, column, embed=embed, batch_size=batch_size)
        return
    if embed is not None or len(positions) * SCAN_SAMPLE_RATIO < dataset.num_rows:
        picked = dataset.select(positions)
        yield from vector_batches(picked, column, embed=embed, batch_size=batch_size)
        return
    for start, matrix in vector_batches(dataset, column, batch_size=batch_size, exact_size=False):
        low, high = np.searchsorted(positions, [start, start + len(matrix)])
        if high > low:
            yield int(low), matrix[positions[low:high] - start]


def _sample_positions(rows: int, size: int) -> np.ndarray:
    positions = np.random.default_rng(TRAIN_SEED).choice(rows, size=size, replace=False)
    return np.sort(positions)  # ascending: the memory map is read front to back


def _check_dimension(
    index: faiss.Index, matrix: np.ndarray, rows: Sequence[int], column: str
) -> None:
    if matrix.shape[1] != index.d:
        raise SearchIndexError(
            f"column {column!r}, rows {rows[0]}..{rows[-1]}: vectors of length "
            f"{matrix.shape[1]}, expected {index.d} like the first rows"
        )


def _add(index: faiss.Index, start: int, matrix: np.ndarray, column: str) -> None:
    _check_dimension(index, matrix, range(start, start + len(matrix)), column)
    if isinstance(faiss.downcast_index(index), (faiss.IndexIDMap, faiss.IndexIDMap2)):
        index.add_with_ids(matrix, np.arange(start, start + len(matrix), dtype=np.int64))
    else:
        index.add(matrix)


def _is_plain_flat(index: faiss.Index) -> bool:
    """Whether `index` is an exact flat index (L2 or inner product), storing vectors as they are."""
    flat_types = (faiss.IndexFlat, faiss.IndexFlatL2, faiss.IndexFlatIP)
    return type(faiss.downcast_index(index)) in flat_types


def _fill_flat(
    index: faiss.Index,
    dataset: Dataset,
    column: str,
    embed: Callable | None,
    metric: str,
    batch_size: int,
) -> None:
    """Copy the vectors straight into the storage of a plain flat index, sized once.

    `IndexFlat.add` grows its storage on every call, zero-filling the new part, before copying
    into it: a loop of `add` over batches pays that again and again. Here the storage is sized
    once, then each batch is copied into a numpy view of it and checked and normalized there,
    while it is in the CPU cache: the work of one `add` of an in-memory matrix, with no such
    matrix held. Stored float32 vectors are read as views of the memory map (no copy on the
    way). The storage of a flat index is its float32 vectors row after row (what
    `index.get_xb()` exposes), so the index is the one `add` would have built.
    """
    rows = dataset.num_rows
    views = embed is None and stored_float32_vectors(dataset, column)
    vectors = vector_batches(
        dataset, column, embed=embed, batch_size=batch_size, exact_size=not views
    )
    size = rows * index.code_size
    index.codes.resize(size)
    storage = faiss.rev_swig_ptr(index.codes.data(), size).view(np.float32)
    storage = storage.reshape(rows, index.d)
    filled = 0
    for start, matrix in vectors:
        rows_here = range(start, start + len(matrix))
        _check_dimension(index, matrix, rows_here, column)
        target = storage[start : start + len(matrix)]
        np.copyto(target, matrix)
        _check_finite(target, rows_here, column)
        if metric == "cosine":
            faiss.normalize_L2(target)
        filled += len(matrix)
    if filled != rows:
        raise SearchIndexError(f"column {column!r}: read {filled} vectors of {rows} rows")
    index.ntotal = rows


def _reserve(index: faiss.Index, rows: int) -> None:
    """Give flat code arrays their final capacity at once: growing them batch by batch would
    copy them again and again (std::vector keeps its capacity when shrunk back to 0)."""
    for part in _parts(index):
        if isinstance(part, faiss.IndexFlatCodes) and part.ntotal == 0:
            part.codes.resize(rows * part.code_size)
            part.codes.resize(0)


def _centroid_count(index: faiss.Index) -> int:
    """Largest k-means the index trains: IVF nlist, PQ 2**nbits; 256 when neither is found."""
    counts = []
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        counts.append(int(ivf.nlist))
    for part in _parts(index):
        quantizer = getattr(part, "pq", None)
        if quantizer is not None:
            counts.append(int(quantizer.ksub))
    return max(counts, default=256)


def _parts(index: faiss.Index) -> Iterator[Any]:
    """The index and the indexes it wraps (pre-transform, id map, HNSW storage, refine)."""
    pending = [index]
    while pending:
        part = faiss.downcast_index(pending.pop())
        yield part
        for attribute in ("index", "storage", "base_index"):
            inner = getattr(part, attribute, None)
            if isinstance(inner, faiss.Index):
                pending.append(inner)


def _search_parameters(index: faiss.Index, filter: Any) -> faiss.SearchParameters:
    if isinstance(filter, faiss.IDSelector):
        selector = filter
    else:
        selector = _row_selector(filter, index.ntotal)
    ivf = faiss.try_extract_index_ivf(index)
    hnsw = next((part.hnsw for part in _parts(index) if hasattr(part, "hnsw")), None)
    if ivf is not None:
        params = faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nprobe)
    elif hnsw is not None:
        params = faiss.SearchParametersHNSW(sel=selector, efSearch=hnsw.efSearch)
    else:
        params = faiss.SearchParameters(sel=selector)
    params.keep_alive = selector  # the SWIG object does not own the selector
    return params


def _row_selector(filter: Any, rows_indexed: int) -> faiss.IDSelector:
    if isinstance(filter, (set, frozenset)):
        filter = sorted(filter)
    if isinstance(filter, (str, bytes)) or not isinstance(filter, (Sequence, np.ndarray)):
        raise SearchIndexError(
            "a FAISS filter is a faiss.IDSelector or a sequence of allowed row positions, "
            f"got {type(filter).__name__}"
        )
    if any(isinstance(row, int) and not -(2**63) <= row < 2**63 for row in filter):
        raise SearchIndexError(f"filter row positions must be below {rows_indexed}")
    rows = np.asarray(filter)
    if rows.size and not np.issubdtype(rows.dtype, np.integer):
        raise SearchIndexError(f"filter row positions must be integers, got {rows.dtype}")
    rows = np.ascontiguousarray(rows, dtype=np.int64).ravel()
    outside = rows[(rows < 0) | (rows >= rows_indexed)]
    if outside.size:  # FAISS would just never match them: a caller's mistake, said here
        raise SearchIndexError(
            f"filter row position {int(outside[0])} is not a row of this index "
            f"(0..{rows_indexed - 1})"
        )
    selector = faiss.IDSelectorBatch(len(rows), faiss.swig_ptr(rows))
    selector.keep_alive = rows
    return selector


def _read_index(path: str, mmap: bool) -> faiss.Index:
    try:
        if mmap:
            try:
                return faiss.read_index(path, faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
            except RuntimeError:
                pass  # an index type FAISS cannot map: read it into memory below
        return faiss.read_index(path)
    except RuntimeError as error:
        raise SearchIndexError(
            f"{path}: not a readable FAISS index file: {_faiss_message(error)}"
        ) from None


def _metric_name(metric_type: int) -> str:
    names = {faiss.METRIC_L2: "L2 distance", faiss.METRIC_INNER_PRODUCT: "inner product"}
    return names.get(metric_type, f"FAISS metric {metric_type}")


def _faiss_message(error: RuntimeError) -> str:
    """The reason in a FAISS error, without the C++ location it starts with."""
    text = str(error).strip()
    for marker in ("Error: ", "details: "):
        if marker in text:
            text = text.rsplit(marker, 1)[1]
    return text.splitlines()[-1] if text else "unknown FAISS error"
