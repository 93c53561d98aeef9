"""HDF5 files as `datasets` objects: every HDF5 dataset whose first dimension is the row count
becomes a column.

What does the work: `h5py` (the HDF5 library) reads the files, hyperslab by hyperslab, with its
chunk cache and compression filters; `pyarrow` turns each numpy batch into Arrow arrays without a
Python loop per row (numeric data without a copy); `ds_assets.formats.output.to_dataset` writes
the memory-mapped `Dataset` or drives the `IterableDataset`. Ours: which HDF5 datasets become
which columns, the type mapping, batch sizes that fit the chunk layout, the checks, safe defaults
for untrusted files, and error messages naming the file, dataset, field and row.

Type mapping. It follows `datasets`' own `hdf5` packaged builder (so `load_dataset("hdf5", ...)`
and `parse` give the same Features for the same file) except where marked *:

| HDF5 dataset (rows = first dimension)    | Feature                                           |
|------------------------------------------|---------------------------------------------------|
| int/uint 8..64, float 16/32/64, bool      | `Value` of that type                              |
| one value per row of shape (d,)           | `List(value, length=d)` (there is no `Array1D`)   |
| shape (d1, .., dk) per row, k = 2..5      | `Array2D` .. `Array5D` (numeric and bool values)   |
| k > 5, or non-numeric values with k >= 2  | nested `List(..., length=d)` *                    |
| a zero-length dimension in the row shape  | `List(value)`, every row empty                    |
| compound                                  | struct (dict of Features), fields mapped alike    |
| compound field with a shape (`('f4',(3,))`) | that field shaped as above * (the builder fails) |
| complex64 / complex128                    | struct `{"real", "imag"}` of float32 / float64    |
| variable-length string (utf-8 or ascii)   | `Value("string")`                                 |
| fixed-length string (`S10`)               | `Value("string")` * (builder: `binary`), trailing |
|                                           | NUL padding removed; `features=` with             |
|                                           | `Value("binary")` keeps the raw bytes             |
| variable-length sequence (`vlen_dtype`)   | `List(value)`                                     |
| enum with values 0..n-1                   | `ClassLabel(names=...)` ordered by value *        |
| other enums                               | `Value` of the base integer type                  |
| opaque (`V8` without fields)              | `Value("binary")` *                               |
| numpy datetime64 / timedelta64 (opaque)   | `Value("timestamp[unit]")` / `duration[unit]` *    |
| object/region references, long double     | error naming the dataset (no Arrow type holds it) |

Enums become `ClassLabel` when their values are exactly 0..n-1: then the stored integers are
the class indices and the names survive, which is what `ClassLabel` means in `datasets` (and what
`train_test_split(stratify_by_column=...)` needs); other enums cannot be one without renumbering.

Columns and groups: a dataset in a group becomes a field of a struct column named after the
group (`/train/x` is `ds["train"]["x"]`), as in the builder; `Dataset.flatten()` makes that
`train.x`. `group="train"` reads one group as the root instead. With `datasets=None` every
dataset under the root with at least one dimension is a column, in the file's link order; scalar
datasets (no rows) and attributes are metadata and are left out; datasets whose first dimension
differs from the others are an error naming every dataset with its length (select the columns
with `datasets=[...]`). `datasets=` names datasets or groups (all datasets under them) by path;
the columns come in that order. With `features=` and no `datasets=`, the features' keys choose
the columns. Several files are read one after another; all must hold the same columns with the
same types (or those cast to `features=`).

Untrusted files are read safely by default: external links, datasets stored in external raw
files and virtual datasets (which can read any file on the machine) are refused unless
`allow_external=True`; soft links are not followed when walking the file (an alias would
duplicate a column and a link can form a cycle), only when a path given in `datasets=` runs
through one; each object is visited once, so hard-link cycles end. A row larger than 1 GiB is
refused before anything is read (the HDF5 header alone sets the size of what a read allocates).
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import (
    Array2D,
    Array3D,
    Array4D,
    Array5D,
    ClassLabel,
    Dataset,
    Features,
    IterableDataset,
    List,
    Value,
)

from ds_assets.formats.output import to_dataset

PathLike = str | os.PathLike

TARGET_BATCH_BYTES = 32 * 2**20
MAX_ROW_BYTES = 2**30
SAMPLE_ROWS = 256  # rows read to measure the memory a row takes
MAX_SLICE_ROWS = 1024  # most rows of variable-length values read at once (see _bounded_read)
MAX_CHUNK_CACHE_BYTES = 64 * 2**20
ARRAY_FEATURES = {2: Array2D, 3: Array3D, 4: Array4D, 5: Array5D}


def parse(
    path: PathLike | Sequence[PathLike],
    datasets: str | Sequence[str] | None = None,
    streaming: bool = False,
    *,
    features: Features | None = None,
    batch_rows: int | None = None,
    group: str = "/",
    allow_external: bool = False,
) -> Dataset | IterableDataset:
    """The rows of one HDF5 file, or of several read one after another, as a memory-mapped
    `Dataset` (or an `IterableDataset` that rereads the files on every pass, `streaming=True`).

    `datasets`: the HDF5 datasets or groups to read (paths under `group`), default all that
    have rows; `features`: Features to cast the columns to (and, without `datasets`, the
    columns to read); `batch_rows`: rows read at once, default about 32 MB of rows (as Arrow
    arrays) in whole HDF5 chunks, fewer where variable-length values outgrow the first rows';
    `group`: the group read as the root; `allow_external`:
    follow external links, external storage and virtual datasets (only for trusted files).

    >>> import os, tempfile, h5py, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "points.h5")
    >>> with h5py.File(path, "w") as file:
    ...     file["xyz"] = np.arange(6, dtype="float32").reshape(2, 3)
    ...     file["meta/name"] = np.array([b"first", b"second"])
    >>> points = parse(path)
    >>> points.features
    {'meta': {'name': Value('string')}, 'xyz': List(Value('float32'), length=3)}
    >>> points[1]
    {'meta': {'name': 'second'}, 'xyz': [3.0, 4.0, 5.0]}
    >>> [row["xyz"][0] for row in parse(path, ["xyz"], streaming=True)]
    [0.0, 3.0]
    """
    paths = _paths(path)
    selection = [datasets] if isinstance(datasets, str) else datasets
    if features is not None and not isinstance(features, Features):
        features = Features(features)
    if batch_rows is not None and batch_rows < 1:
        raise ValueError(f"batch_rows must be a positive number of rows, got {batch_rows}")
    plan = _plan(paths, selection, features, group, allow_external)
    kwargs = {
        "paths": paths,
        "selection": plan.selection,
        "features": plan.features,
        "overridden": features is not None,
        "batch_rows": batch_rows or plan.batch_rows,
        "fixed_rows": batch_rows is not None,
        "group": group,
        "allow_external": allow_external,
        "cache_bytes": plan.cache_bytes,
    }
    description = f"HDF5: {paths[0]}" + (f" and {len(paths) - 1} more" if len(paths) > 1 else "")
    return to_dataset(
        _tables, kwargs, plan.features, streaming=streaming, shard_by="paths",
        description=description,
    )  # fmt: skip


# ── Type mapping ────────────────────────────────────────────────────────────────────────────


class _BadValue(ValueError):
    """A value that cannot be converted, at `index` of the array being converted."""

    def __init__(self, index: int, message: str):
        super().__init__(message)
        self.index = index
        self.message = message


class _Unsupported(ValueError):
    """An HDF5 type with no Feature; the caller adds the file and dataset."""


@dataclass(frozen=True)
class _Mapping:
    """The Feature of one HDF5 type and how to turn an array of it into Arrow: `convert` takes
    an array of shape (n, *shape) and returns an n-long Arrow array."""

    feature: Any
    convert: Callable[[np.ndarray], pa.Array]


def _map(dtype: np.dtype, shape: tuple[int, ...], keep_bytes: bool = False) -> _Mapping:
    """The mapping of values of `dtype` with `shape` (the row shape, without the row count)."""
    if dtype.subdtype is not None:  # an HDF5 array type: its shape comes after the row shape
        dtype, inner = dtype.subdtype
        shape = tuple(shape) + inner
    if dtype.kind == "c":
        return _complex(dtype, tuple(shape))
    return _shaped(_element(dtype, keep_bytes), tuple(shape))


def _element(dtype: np.dtype, keep_bytes: bool) -> _Mapping:
    """The mapping of single values of `dtype` (`convert` takes a 1-d array)."""
    string = h5py.check_string_dtype(dtype)
    if string is not None:
        return _fixed_string(dtype, keep_bytes) if string.length else _vlen_string(keep_bytes)
    vlen = h5py.check_vlen_dtype(dtype)
    if vlen is not None:
        if vlen in (str, bytes):
            return _vlen_string(keep_bytes)
        return _vlen_sequence(np.dtype(vlen))
    enum = h5py.check_enum_dtype(dtype)
    if enum is not None:
        return _enum(dtype, enum)
    if h5py.check_ref_dtype(dtype) is not None:
        raise _Unsupported("holds HDF5 references, which have no column type")
    if dtype.names:
        return _compound(dtype)
    if dtype.kind in "iub" or (dtype.kind == "f" and dtype.itemsize <= 8):
        return _Mapping(Value(dtype.name), _primitive)
    if dtype.kind in "Mm":
        unit = np.datetime_data(dtype)[0]
        kind = "timestamp" if dtype.kind == "M" else "duration"
        if unit not in ("s", "ms", "us", "ns"):
            raise _Unsupported(f"holds {dtype} values; Arrow keeps only s, ms, us or ns units")
        return _Mapping(Value(f"{kind}[{unit}]"), _primitive)
    if dtype.kind == "V":
        return _Mapping(Value("binary"), _opaque)
    raise _Unsupported(f"holds values of type {dtype}, which have no column type")


def _primitive(values: np.ndarray) -> pa.Array:
    # Arrow takes native byte order only; files written on big-endian machines keep theirs
    return pa.array(np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("=")))


def _opaque(values: np.ndarray) -> pa.Array:
    size = values.dtype.itemsize
    data = np.ascontiguousarray(values).view(np.uint8)
    offsets = np.arange(0, (len(values) + 1) * size, size, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.binary(), len(values), [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def _fixed_string(dtype: np.dtype, keep_bytes: bool) -> _Mapping:
    """Fixed-length strings come from h5py NUL-padded (HDF5 turns space padding and NUL
    termination into that on read); like numpy, only the trailing NULs are dropped."""
    width = dtype.itemsize

    def convert(values: np.ndarray) -> pa.Array:
        data = np.ascontiguousarray(values).view(np.uint8).reshape(len(values), width)
        filled = data != 0
        lengths = np.where(filled.any(axis=1), width - np.argmax(filled[:, ::-1], axis=1), 0)
        offsets = np.zeros(len(values) + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        kept = data[np.arange(width) < lengths[:, None]]
        array = pa.Array.from_buffers(
            pa.binary(), len(values), [None, pa.py_buffer(offsets), pa.py_buffer(kept)]
        )
        return array if keep_bytes else _decode(array)

    return _Mapping(Value("binary" if keep_bytes else "string"), convert)


def _vlen_string(keep_bytes: bool) -> _Mapping:
    def convert(values: np.ndarray) -> pa.Array:
        array = pa.array(values, type=pa.binary())
        return array if keep_bytes else _decode(array)

    return _Mapping(Value("binary" if keep_bytes else "string"), convert)


def _decode(array: pa.Array) -> pa.Array:
    """`array` (binary) as UTF-8 strings (ASCII is a subset), or the first row that is not."""
    try:
        return array.cast(pa.string())
    except pa.ArrowInvalid:
        for index, value in enumerate(array.to_numpy(zero_copy_only=False)):
            try:
                value.decode("utf-8")
            except UnicodeDecodeError as error:
                raise _BadValue(
                    index,
                    f"{bytes(value)[:40]!r} is not UTF-8 text ({error.reason}); pass "
                    "features= with Value('binary') for this column to keep the bytes",
                ) from None
        raise


def _vlen_sequence(dtype: np.dtype) -> _Mapping:
    inner = _map(dtype, ())
    relabel = dtype.byteorder == ">" and _big_endian_vlen_unconverted()

    def convert(values: np.ndarray) -> pa.Array:
        lengths = np.fromiter((len(value) for value in values), dtype=np.int64, count=len(values))
        if lengths.sum() >= 2**31:  # a List's 32-bit offsets would wrap around
            raise _BadValue(0, "more than 2**31 items in one batch: pass a smaller batch_rows")
        offsets = np.zeros(len(values) + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.concatenate(values) if offsets[-1] else np.empty(0, dtype=dtype)
        if relabel:  # the big-endian bytes as they are, under the dtype that says so
            flat = flat.view(dtype)
        try:
            items = inner.convert(flat)
        except _BadValue as error:
            row = int(np.searchsorted(offsets, error.index, side="right") - 1)
            raise _BadValue(row, error.message) from None
        return pa.ListArray.from_arrays(pa.array(offsets), items)

    return _Mapping(List(inner.feature), convert)


@functools.cache
def _big_endian_vlen_unconverted() -> bool:
    """Whether h5py hands back the items of a big-endian variable-length sequence with their
    bytes unconverted under a native dtype (h5py 3.16 does: 1 reads as 16777216). Found out
    once per process, on a file in memory, so that a fixed h5py is not "fixed" twice."""
    with h5py.File(io.BytesIO(), "w") as file:
        probe = file.create_dataset("probe", (1,), dtype=h5py.vlen_dtype(">i4"))
        probe[0] = np.array([1], dtype=">i4")
        item = probe[0]
    return item.dtype.byteorder != ">" and int(item[0]) != 1


def _enum(dtype: np.dtype, names: dict[str, int]) -> _Mapping:
    base = np.dtype(dtype.str)  # the integer type without h5py's enum metadata
    by_value = sorted(names, key=names.__getitem__)
    if sorted(names.values()) != list(range(len(names))):
        return _Mapping(Value(base.name), _primitive)

    def convert(values: np.ndarray) -> pa.Array:
        outside = (values < 0) | (values >= len(by_value))
        if outside.any():
            index = int(np.argmax(outside))
            raise _BadValue(index, f"enum value {values[index]} is not one of {names}")
        return pa.array(values.astype(np.int64))

    return _Mapping(ClassLabel(names=by_value), convert)


def _compound(dtype: np.dtype) -> _Mapping:
    fields = {}
    for name in dtype.names:
        try:
            fields[name] = _map(dtype.fields[name][0], ())
        except _Unsupported as error:
            raise _Unsupported(f"field '{name}' {error}") from None

    def convert(values: np.ndarray) -> pa.Array:
        arrays = []
        for name, mapping in fields.items():
            try:
                arrays.append(mapping.convert(values[name]))
            except _BadValue as error:
                raise _BadValue(error.index, f"field '{name}': {error.message}") from None
        return pa.StructArray.from_arrays(arrays, names=list(fields))

    return _Mapping({name: mapping.feature for name, mapping in fields.items()}, convert)


def _complex(dtype: np.dtype, shape: tuple[int, ...]) -> _Mapping:
    if dtype.itemsize > 16:
        raise _Unsupported(f"holds {dtype} values; only complex64 and complex128 are read")
    part = _shaped(_Mapping(Value(f"float{dtype.itemsize * 4}"), _primitive), shape)

    def convert(values: np.ndarray) -> pa.Array:
        arrays = [part.convert(values.real), part.convert(values.imag)]
        return pa.StructArray.from_arrays(arrays, names=["real", "imag"])

    return _Mapping({"real": part.feature, "imag": part.feature}, convert)


def _shaped(element: _Mapping, shape: tuple[int, ...]) -> _Mapping:
    """Rows of `shape` elements: fixed-shape Features (see the module docstring)."""
    if not shape:
        return element
    size = math.prod(shape)

    def flat(values: np.ndarray) -> pa.Array:
        try:
            return element.convert(values.reshape(-1))
        except _BadValue as error:
            raise _BadValue(error.index // size, error.message) from None

    if size == 0:
        item_type = _arrow_type(element.feature)

        def empty(values: np.ndarray) -> pa.Array:
            offsets = pa.array(np.zeros(len(values) + 1, dtype=np.int32))
            return pa.ListArray.from_arrays(offsets, pa.array([], type=item_type))

        return _Mapping(List(element.feature), empty)
    numeric = isinstance(element.feature, Value) and _is_numeric(element.feature.dtype)
    if numeric and len(shape) in ARRAY_FEATURES:
        feature = ARRAY_FEATURES[len(shape)](shape=shape, dtype=element.feature.dtype)
        extension = feature()
        steps: dict[int, pa.Array] = {}  # 0, n, 2n, ... by n: batches share their offsets

        def offsets(lists: int, length: int) -> pa.Array:
            if len(steps.get(length, ())) < lists + 1:
                stop = (lists + 1) * length
                steps[length] = pa.array(np.arange(0, stop, length, dtype=np.int32))
            return steps[length].slice(0, lists + 1)

        def array(values: np.ndarray) -> pa.Array:
            storage = flat(values)
            for length in reversed(shape):
                storage = pa.ListArray.from_arrays(offsets(len(storage) // length, length), storage)
            return pa.ExtensionArray.from_storage(extension, storage)

        return _Mapping(feature, array)
    feature = element.feature
    for length in reversed(shape):
        feature = List(feature, length=length)

    def lists(values: np.ndarray) -> pa.Array:
        array = flat(values)
        for length in reversed(shape):
            array = pa.FixedSizeListArray.from_arrays(array, length)
        return array

    return _Mapping(feature, lists)


def _is_numeric(dtype: str) -> bool:
    return dtype == "bool" or dtype.startswith(("int", "uint", "float"))


def _arrow_type(feature: Any) -> pa.DataType:
    return Features({"column": feature}).type.field("column").type


def _cast(array: pa.Array, feature: Any, target: pa.DataType, source: Any = None) -> pa.Array:
    """`array`, of Feature `source`, as `target`, the Arrow type of `feature` (given by
    `features=`). Enum classes keep their names: they are matched by name, not by number."""
    if isinstance(source, ClassLabel) and source != feature:
        if isinstance(feature, ClassLabel):
            return _relabeled(array, source, feature)
        if feature in (Value("string"), Value("large_string")):
            return pc.take(pa.array(source.names, target), array)
    if isinstance(feature, ClassLabel) and pa.types.is_integer(array.type):
        values = array.to_numpy(zero_copy_only=False)
        outside = (values < -1) | (values >= feature.num_classes)
        if outside.any():
            index = int(np.argmax(outside))
            raise _BadValue(index, f"class {values[index]} is not in -1..{feature.num_classes - 1}")
    if array.type == target:
        return array
    if isinstance(feature, ClassLabel) and pa.types.is_string(array.type):
        indices = pc.index_in(array, value_set=pa.array(feature.names))
        if indices.null_count:
            index = int(np.argmax(indices.is_null().to_numpy(zero_copy_only=False)))
            raise _BadValue(index, f"label {array[index].as_py()!r} is not one of {feature.names}")
        return indices.cast(pa.int64())
    if isinstance(array.type, pa.ExtensionType):
        array = array.storage
    if isinstance(target, pa.ExtensionType):
        return pa.ExtensionArray.from_storage(target, array.cast(target.storage_type))
    return array.cast(target)


def _relabeled(array: pa.Array, source: ClassLabel, feature: ClassLabel) -> pa.Array:
    missing = [name for name in source.names if name not in feature.names]
    if missing:
        raise _Relabel(f"its enum names {missing} are not among the ClassLabel's {feature.names}")
    positions = np.array([feature.names.index(name) for name in source.names], dtype=np.int64)
    return pa.array(positions[array.to_numpy(zero_copy_only=False)])


class _Relabel(ValueError):
    """Enum names that a declared ClassLabel lacks; the caller adds the file and dataset."""


# ── Choosing the columns ────────────────────────────────────────────────────────────────────


@dataclass
class _Column:
    """One HDF5 dataset read as one (possibly nested) column."""

    path: str  # relative to the root group, `/`-separated: the nesting of the column
    name: str  # the dataset's absolute path in the file, for messages
    dataset: h5py.Dataset
    mapping: _Mapping


@dataclass
class _Plan:
    selection: list[str]
    features: Features
    batch_rows: int
    cache_bytes: int


def _paths(path: PathLike | Sequence[PathLike]) -> list[str]:
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    if not paths:
        raise ValueError("parse needs at least one HDF5 file, got an empty list")
    for each in paths:
        if not os.path.isfile(each):
            raise FileNotFoundError(f"{each}: no such HDF5 file")
    return [os.fspath(each) for each in paths]


def _open(path: str, cache_bytes: int = 2**20) -> h5py.File:
    try:
        # w0=1: chunks read in full leave the cache first (each chunk is read once, in order)
        return h5py.File(path, "r", rdcc_nbytes=cache_bytes, rdcc_w0=1.0)
    except OSError as error:
        raise ValueError(f"{path}: not a readable HDF5 file ({error})") from error


def _plan(
    paths: list[str],
    datasets: Sequence[str] | None,
    features: Features | None,
    group: str,
    allow_external: bool,
) -> _Plan:
    """Columns, Features and batch size from the first file; the other files must agree."""
    with _open(paths[0]) as file, _damaged(paths[0]):
        root = _root(paths[0], file, group, allow_external)
        selection = _selection(paths[0], root, datasets, features, allow_external)
        columns = _columns(paths[0], root, selection, features, allow_external)
        tree = _tree(selection)
        _warn_flat_clashes(paths[0], selection)
        inferred = _features(tree, columns)
        if features is not None:
            _check_keys(paths[0], tree, features)
        batch_rows, cache_bytes = _batch_rows(paths[0], columns)
    for other in paths[1:]:
        with _open(other) as file, _damaged(other):
            root = _root(other, file, group, allow_external)
            if datasets is None and features is None:
                own = _selection(other, root, None, None, allow_external)
                _check_same_columns(paths[0], selection, other, own)
            others = _columns(other, root, selection, features, allow_external)
            if features is None:
                _check_same_features(paths[0], columns, other, others)
    return _Plan(selection, features or inferred, batch_rows, cache_bytes)


@contextlib.contextmanager
def _damaged(path: str) -> Iterator[None]:
    """h5py's errors on a damaged file (a B-tree or heap signature, a filter failing on the
    first chunk) as a `ValueError` naming the file."""
    try:
        yield
    except (RuntimeError, OSError) as error:
        raise ValueError(f"{path}: damaged HDF5 file ({error})") from error


def _root(path: str, file: h5py.File, group: str, allow_external: bool) -> h5py.Group:
    relative = _clean(path, group, allow_root=True)
    root = _find(path, file, relative, allow_external) if relative else file
    if not isinstance(root, h5py.Group):
        raise ValueError(f"{path}: group={group!r} is a dataset, expected a group")
    return root


def _clean(path: str, name: str, allow_root: bool = False) -> str:
    parts = [part for part in name.split("/") if part]
    if any(part in (".", "..") for part in parts) or not (parts or allow_root):
        raise ValueError(f"{path}: {name!r} is not a dataset path (expected names like 'g/x')")
    return "/".join(parts)


def _resolve(path: str, group: h5py.Group, name: str, allow_external: bool, depth: int = 0) -> Any:
    """The object at `name` under `group`, link by link: soft links are followed inside the
    file, external links only when allowed."""
    if depth > 16:  # HDF5's own limit of soft links in one path
        raise ValueError(f"{path}: too many soft links while resolving {name!r}")
    current: Any = group
    for part in name.split("/"):
        if not isinstance(current, h5py.Group) or part not in current:
            raise KeyError(part)
        link = current.get(part, getlink=True)
        if isinstance(link, h5py.SoftLink):
            start = current.file if link.path.startswith("/") else current
            current = _resolve(path, start, _clean(path, link.path), allow_external, depth + 1)
        elif isinstance(link, h5py.ExternalLink):
            _refuse_external(path, f"{current.name.rstrip('/')}/{part}", allow_external, link)
            current = current[part]
        else:
            current = current[part]
    return current


def _refuse_external(path: str, name: str, allow_external: bool, link: Any) -> None:
    if not allow_external:
        raise ValueError(
            f"{path}: '{name}' is an external link to {link.filename}:{link.path}; refused "
            "(it can read any file on this machine): pass allow_external=True for a trusted "
            "file, or leave it out with datasets=[...]"
        )


def _walk(
    path: str, group: h5py.Group, prefix: str, allow_external: bool, seen: dict
) -> Iterator[tuple[str, h5py.Dataset]]:
    """(relative path, dataset) of every dataset under `group`, each object once (`seen` maps
    the objects met to their names)."""
    for name in group:
        link = group.get(name, getlink=True)
        if isinstance(link, h5py.SoftLink):
            continue
        full = f"{group.name.rstrip('/')}/{name}"
        if isinstance(link, h5py.ExternalLink):
            _refuse_external(path, full, allow_external, link)
        item = group.get(name)
        if item is None:
            raise ValueError(
                f"{path}: '{full}' is a broken link (to {getattr(link, 'filename', '')}:"
                f"{getattr(link, 'path', '')}); leave it out with datasets=[...]"
            )
        if item.id in seen:
            if isinstance(item, h5py.Dataset):
                warnings.warn(
                    f"{path}: '{full}' is another name (a hard link) of '{seen[item.id]}', "
                    "which is read as a column once, under that name",
                    stacklevel=2,
                )
            continue
        seen[item.id] = full
        if isinstance(item, h5py.Group):
            yield from _walk(path, item, f"{prefix}{name}/", allow_external, seen)
        elif isinstance(item, h5py.Dataset):
            yield f"{prefix}{name}", item


def _selection(
    path: str,
    root: h5py.Group,
    datasets: Sequence[str] | None,
    features: Features | None,
    allow_external: bool,
) -> list[str]:
    """Relative paths of the datasets to read, in column order."""
    if datasets is None and features is not None:
        return _nonempty(path, root, _from_features(path, root, features, "", allow_external))
    if datasets is None:
        walked = _walk(path, root, "", allow_external, {})
        # scalar and empty-dataspace datasets have no rows
        return _nonempty(path, root, [name for name, dataset in walked if dataset.shape])
    chosen: dict[str, None] = {}
    for entry in datasets:
        name = _clean(path, entry)
        item = _find(path, root, name, allow_external)
        if isinstance(item, h5py.Group):
            prefix = f"{name}/"
            walked = _walk(path, item, "", allow_external, {})
            under = [prefix + rel for rel, dataset in walked if dataset.shape]
            if not under:
                raise ValueError(f"{path}: group '{item.name}' holds no HDF5 dataset with rows")
            chosen.update(dict.fromkeys(under))
        else:
            chosen[name] = None
    return _nonempty(path, root, list(chosen))


def _nonempty(path: str, root: h5py.Group, selection: list[str]) -> list[str]:
    if not selection:
        raise ValueError(f"{path}: no HDF5 dataset with rows under '{root.name}'")
    return selection


def _find(path: str, root: h5py.Group, name: str, allow_external: bool) -> Any:
    try:
        return _resolve(path, root, name, allow_external)
    except KeyError:
        names = _dataset_names(root)[:20]
        raise ValueError(
            f"{path}: no HDF5 dataset or group '{name}' under '{root.name}' "
            f"(datasets there: {', '.join(names) or 'none'})"
        ) from None


def _dataset_names(root: h5py.Group) -> list[str]:
    """Paths of the datasets under `root` reached by hard links (for messages: follows no link
    out of the file)."""
    names: list[str] = []

    def visit(name: str, link: Any) -> None:
        if isinstance(link, h5py.HardLink) and isinstance(root.get(name), h5py.Dataset):
            names.append(name)

    root.visititems_links(visit)
    return names


def _from_features(
    path: str, root: h5py.Group, features: dict, prefix: str, allow_external: bool
) -> list[str]:
    selection = []
    for key, feature in features.items():
        name = prefix + key
        item = _find(path, root, name, allow_external)
        if isinstance(item, h5py.Group):
            if not isinstance(feature, dict):
                raise ValueError(
                    f"{path}: features= gives column '{name}' as {feature}, but it is an HDF5 "
                    "group: expected a dict of its datasets"
                )
            selection += _from_features(path, root, feature, f"{name}/", allow_external)
        else:
            selection.append(name)
    return selection


def _columns(
    path: str,
    root: h5py.Group,
    selection: list[str],
    features: Features | None,
    allow_external: bool,
) -> list[_Column]:
    """The columns of `selection` in this file, checked: types, storage, filters, row counts."""
    columns = []
    for name in selection:
        dataset = _find(path, root, name, allow_external)
        full = f"{root.name.rstrip('/')}/{name}"
        if not isinstance(dataset, h5py.Dataset):
            raise ValueError(f"{path}: '{full}' is not an HDF5 dataset in this file")
        _check_dataset(path, full, dataset, allow_external)
        target = _nested(features, name) if features is not None else None
        keep_bytes = isinstance(target, Value) and target.dtype in ("binary", "large_binary")
        try:
            mapping = _map(dataset.dtype, dataset.shape[1:], keep_bytes)
        except _Unsupported as error:
            raise ValueError(
                f"{path}: dataset '{full}' {error}; leave it out with datasets=[...]"
            ) from None
        shape = getattr(target, "shape", None)
        if shape is not None and tuple(shape) != tuple(dataset.shape[1:]):
            raise ValueError(
                f"{path}: dataset '{full}' has rows of shape {tuple(dataset.shape[1:])}, not "
                f"{tuple(shape)} as features= declares ({target}); an array is not reshaped"
            )
        if target is not None:
            _check_declared(f"{path}: dataset '{full}'", dataset.dtype, mapping.feature, target)
        columns.append(_Column(name, full, dataset, mapping))
    _check_row_counts(path, columns)
    return columns


def _check_declared(where: str, dtype: np.dtype, source: Any, target: Any, depth: int = 0) -> None:
    """Refuse declared Features that would be filled by number where the file means a name or
    a shape: enum classes inside lists and structs (only a column's own enum is matched by
    name), enums whose values are not 0..n-1, and array shapes inside structs."""
    enum = h5py.check_enum_dtype(dtype) if depth == 0 else None
    named = isinstance(target, ClassLabel) or target in (Value("string"), Value("large_string"))
    if enum is not None and named and not isinstance(source, ClassLabel):
        raise ValueError(
            f"{where}: its enum values {enum} are not 0..n-1, so they are read as integers; "
            f"{target} would take them as class numbers: declare the integer type"
        )
    if depth and isinstance(source, ClassLabel) and named and source != target:
        raise ValueError(
            f"{where}: an enum inside a list or struct is read by class number, and {target} "
            f"would give its numbers other names; declare {source}"
        )
    source_shape, target_shape = getattr(source, "shape", None), getattr(target, "shape", None)
    if depth and source_shape and target_shape and tuple(source_shape) != tuple(target_shape):
        raise ValueError(
            f"{where}: a field of shape {tuple(source_shape)} declared as {target}; an array "
            "is not reshaped"
        )
    if isinstance(source, dict) and isinstance(target, dict):
        for key in target.keys() & source.keys():
            _check_declared(where, dtype, source[key], target[key], depth + 1)
    elif hasattr(source, "feature") and hasattr(target, "feature"):
        _check_declared(where, dtype, source.feature, target.feature, depth + 1)


def _nested(features: dict, name: str) -> Any:
    feature: Any = features
    for part in name.split("/"):
        feature = feature.get(part) if isinstance(feature, dict) else None
    return feature


def _check_dataset(path: str, name: str, dataset: h5py.Dataset, allow_external: bool) -> None:
    if not dataset.shape:
        raise ValueError(f"{path}: dataset '{name}' is scalar: it has no rows to read")
    if not allow_external and (dataset.external or dataset.is_virtual):
        kind = "a virtual dataset" if dataset.is_virtual else "stored in external files"
        raise ValueError(
            f"{path}: dataset '{name}' is {kind}, refused (it can read any file on this "
            "machine): pass allow_external=True for a trusted file"
        )
    for code, filter_name in zip(dataset.filter_ids, dataset.filter_names, strict=True):
        if not h5py.h5z.filter_avail(code):
            raise ValueError(
                f"{path}: dataset '{name}' is compressed with HDF5 filter {code}"
                f"{f' ({filter_name})' if filter_name else ''}, which is not installed here: "
                "`pip install hdf5plugin` and `import hdf5plugin` before reading"
            )
    row_bytes = dataset.dtype.itemsize * math.prod(dataset.shape[1:])
    if row_bytes > MAX_ROW_BYTES:
        raise ValueError(
            f"{path}: dataset '{name}' has rows of {row_bytes:,} bytes (shape "
            f"{dataset.shape[1:]}); rows over {MAX_ROW_BYTES:,} bytes are refused"
        )


def _check_row_counts(path: str, columns: list[_Column]) -> None:
    lengths: dict[int, list[str]] = {}
    for column in columns:
        lengths.setdefault(column.dataset.shape[0], []).append(column.name)
    if len(lengths) > 1:
        listing = "; ".join(
            f"{rows} rows: {', '.join(names)}" for rows, names in sorted(lengths.items())
        )
        raise ValueError(
            f"{path}: the datasets do not share one row count (first dimension): {listing}. "
            "Choose datasets with the same row count with datasets=[...]"
        )


def _warn_flat_clashes(path: str, selection: list[str]) -> None:
    """Warn of columns that `Dataset.flatten()` would give one name: `a/b` (field `b` of
    column `a`) and a dataset named `a.b`."""
    flat: dict[str, str] = {}
    for name in selection:
        other = flat.setdefault(name.replace("/", "."), name)
        if other != name:
            warnings.warn(
                f"{path}: datasets '{other}' and '{name}' both become column "
                f"'{name.replace('/', '.')}' in Dataset.flatten(); select one with datasets=",
                stacklevel=3,
            )


def _tree(selection: list[str]) -> dict:
    """The column nesting of dataset paths: group names map to dicts, dataset names to paths."""
    tree: dict = {}
    for name in selection:
        *groups, leaf = name.split("/")
        node = tree
        for part in groups:
            node = node.setdefault(part, {})
        node[leaf] = name
    return tree


def _features(tree: dict, columns: list[_Column]) -> Features:
    by_path = {column.path: column.mapping.feature for column in columns}
    return Features(_fill(tree, by_path))


def _fill(tree: dict, leaves: dict[str, Any]) -> dict:
    """`tree` with each dataset path replaced by `leaves[path]`."""
    return {
        key: _fill(child, leaves) if isinstance(child, dict) else leaves[child]
        for key, child in tree.items()
    }


def _check_keys(path: str, tree: dict, features: dict, prefix: str = "") -> None:
    """`features=` names exactly the columns read, group by group."""
    for key in tree:
        if key not in features:
            raise ValueError(f"{path}: features= has no feature for column '{prefix}{key}'")
    for key, feature in features.items():
        if key not in tree:
            raise ValueError(
                f"{path}: features= names column '{prefix}{key}', which is not read "
                f"(columns: {', '.join(prefix + name for name in tree)})"
            )
        if isinstance(tree[key], dict):
            if not isinstance(feature, dict):
                raise ValueError(
                    f"{path}: features= gives column '{prefix}{key}' as {feature}, but it is "
                    "an HDF5 group: expected a dict of its datasets"
                )
            _check_keys(path, tree[key], feature, f"{prefix}{key}/")


def _check_same_columns(first: str, mine: list[str], other: str, theirs: list[str]) -> None:
    for name in mine:
        if name not in theirs:
            raise ValueError(f"{other} and {first} differ: column '{name}' is in {first} only")
    for name in theirs:
        if name not in mine:
            raise ValueError(f"{other} and {first} differ: column '{name}' is in {other} only")


def _check_same_features(
    first: str, mine: list[_Column], other: str, theirs: list[_Column]
) -> None:
    for column, their in zip(mine, theirs, strict=True):
        if column.mapping.feature != their.mapping.feature:
            raise ValueError(
                f"{other} and {first} differ in column '{column.path}': "
                f"{their.mapping.feature} in {other}, {column.mapping.feature} in {first}; "
                "pass features= to cast both to one type"
            )


def _batch_rows(path: str, columns: list[_Column]) -> tuple[int, int]:
    """Rows per batch (about TARGET_BATCH_BYTES) and the chunk cache size to read them with.

    A chunk is decompressed whole: batches are rounded to the chunk rows of the dataset with
    the biggest chunks, so each is read once; when a chunk holds more rows than a batch, the
    cache keeps it (up to MAX_CHUNK_CACHE_BYTES) while the batches walk through it.
    """
    row_bytes = sum(_row_bytes(column) for column in columns)
    rows = max(1, TARGET_BATCH_BYTES // max(1, row_bytes))
    chunked = [column.dataset for column in columns if column.dataset.chunks]
    if not chunked:
        return rows, 2**20
    chunk_rows = max(chunked, key=_chunk_bytes).chunks[0]
    if chunk_rows <= rows:
        rows = rows // chunk_rows * chunk_rows
    spanning = [_chunk_bytes(dataset) for dataset in chunked if dataset.chunks[0] > rows]
    # two chunks: a batch can end inside one chunk and the next batch start in it
    cache = 2 * max(spanning, default=0)
    return rows, int(min(MAX_CHUNK_CACHE_BYTES, max(2**20, cache)))


def _chunk_bytes(dataset: h5py.Dataset) -> int:
    return math.prod(dataset.chunks) * dataset.dtype.itemsize


def _row_bytes(column: _Column) -> int:
    """Bytes one row takes in memory, measured on a sample: the Arrow arrays can be bigger than
    the HDF5 values (an `Array3D` of 32x32x3 bytes adds 4 bytes of offsets per innermost
    list), and variable-length values have no fixed size."""
    dataset = column.dataset
    fixed = dataset.dtype.itemsize * math.prod(dataset.shape[1:])
    sample = min(len(dataset), SAMPLE_ROWS, max(1, TARGET_BATCH_BYTES // max(1, fixed)))
    if not sample:
        return max(1, fixed)
    try:
        converted = column.mapping.convert(dataset[:sample]).nbytes // sample
    except _BadValue:  # reported with its row when the batch is read
        converted = 64
    return max(1, fixed, converted)


# ── Reading ─────────────────────────────────────────────────────────────────────────────────


def _tables(
    paths: list[str],
    selection: list[str],
    features: Features,
    overridden: bool,
    batch_rows: int,
    group: str,
    allow_external: bool,
    cache_bytes: int,
    fixed_rows: bool = False,
) -> Iterator[pa.Table]:
    """The files' rows, `batch_rows` at a time (fewer where variable-length values make them
    bigger than about TARGET_BATCH_BYTES, unless the caller gave `batch_rows`: `fixed_rows`)."""
    tree = _tree(selection)
    leaves = {name: _nested(features, name) for name in selection}
    targets = {name: (feature, _arrow_type(feature)) for name, feature in leaves.items()}
    for path in paths:
        with _open(path, cache_bytes) as file:
            with _damaged(path):
                root = _root(path, file, group, allow_external)
                override = features if overridden else None
                columns = _columns(path, root, selection, override, allow_external)
            if not overridden:
                _check_agrees(path, columns, leaves)
            rows = columns[0].dataset.shape[0]
            variable = [column for column in columns if column.dataset.dtype.hasobject]
            start, row_bytes = 0, 1
            while start < rows:
                stop = min(start + batch_rows, rows)
                read: dict[str, np.ndarray] = {}
                if variable and not fixed_rows:
                    stop, read, row_bytes = _bounded_read(path, variable, start, stop, row_bytes)
                arrays = {
                    column.path: _read(
                        path, column, start, stop, *targets[column.path], read.get(column.path)
                    )
                    for column in columns
                }
                yield _table(tree, arrays)
                start = stop


def _bounded_read(
    path: str, columns: list[_Column], start: int, stop: int, row_bytes: int
) -> tuple[int, dict[str, np.ndarray], int]:
    """The variable-length columns' values from row `start` on, the row where the batch ends
    (at `stop`, or sooner once about TARGET_BATCH_BYTES are read), and the bytes a row took in
    the last slice read (`row_bytes`: in the previous batch's, 1 at first).

    The batch size measured on a file's first rows says nothing of later ones (a file sorted
    by length has short sequences first, long ones later), and HDF5 tells a variable-length
    value's size only by reading it. So these columns are read in slices: the first of
    SAMPLE_ROWS rows, each next one at most twice as many rows (up to MAX_SLICE_ROWS), and no
    more than the previous slice's rows, at their size, leave room for. Row sizes that grow
    gradually keep batches near the target; a jump from tiny to huge rows costs at most one
    slice (MAX_SLICE_ROWS rows) of huge rows."""
    parts: dict[str, list[np.ndarray]] = {column.path: [] for column in columns}
    position, used, limit = start, 0, SAMPLE_ROWS
    while position < stop and used < TARGET_BATCH_BYTES:
        rows = max(1, min(limit, (TARGET_BATCH_BYTES - used) // row_bytes))
        end = min(position + rows, stop)
        read = 0
        for column in columns:
            values = _values(path, column, position, end)
            parts[column.path].append(values)
            read += _nbytes(values)
        used += read
        row_bytes, limit = max(1, read // (end - position)), min(2 * rows, MAX_SLICE_ROWS)
        position = end
    return position, {name: np.concatenate(values) for name, values in parts.items()}, row_bytes


def _nbytes(values: np.ndarray) -> int:
    """Bytes of a batch of HDF5 values, the variable-length ones (h5py's objects) included."""
    if values.dtype.names:
        objects = [name for name in values.dtype.names if values.dtype[name].hasobject]
        return values.nbytes + sum(_nbytes(values[name]) for name in objects)
    if not values.dtype.hasobject or not values.size:
        return values.nbytes
    items = values.flat
    first = values.flat[0]
    # strings, bytes or 1-d arrays of one dtype: their lengths, in items of that size
    return sum(map(len, items)) * (first.itemsize if isinstance(first, np.ndarray) else 1)


def _check_agrees(path: str, columns: list[_Column], leaves: dict[str, Any]) -> None:
    for column in columns:
        if column.mapping.feature != leaves[column.path]:
            raise ValueError(
                f"{path}: column '{column.path}' is {column.mapping.feature} here, expected "
                f"{leaves[column.path]} as in the first file; pass features= to cast"
            )


def _values(path: str, column: _Column, start: int, stop: int) -> np.ndarray:
    try:
        return column.dataset[start:stop]
    except OSError as error:
        raise ValueError(
            f"{path}: dataset '{column.name}' rows {start}..{stop - 1}: cannot be read ({error})"
        ) from error


def _read(
    path: str,
    column: _Column,
    start: int,
    stop: int,
    feature: Any,
    target: pa.DataType,
    values: np.ndarray | None = None,
) -> pa.Array:
    """Rows `start`..`stop` of the column as Arrow (`values`: those rows, read already)."""
    if values is None:
        values = _values(path, column, start, stop)
    try:
        return _cast(column.mapping.convert(values), feature, target, column.mapping.feature)
    except _BadValue as error:
        raise ValueError(
            f"{path}: dataset '{column.name}' row {start + error.index}: {error.message}"
        ) from None
    except _Relabel as error:
        raise ValueError(f"{path}: dataset '{column.name}': {error}") from None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as error:
        raise ValueError(
            f"{path}: dataset '{column.name}' rows {start}..{stop - 1}: cannot be cast to "
            f"{feature} ({error})"
        ) from None


def _table(tree: dict, arrays: dict[str, pa.Array]) -> pa.Table:
    """One table of the columns' arrays, datasets in groups as struct fields.

    (Module-level recursion: a recursive closure is a reference cycle, which would keep every
    batch alive until the garbage collector happens to run.)
    """
    return pa.Table.from_arrays(_group_arrays(tree, arrays), names=list(tree))


def _group_arrays(tree: dict, arrays: dict[str, pa.Array]) -> list[pa.Array]:
    return [
        pa.StructArray.from_arrays(_group_arrays(child, arrays), names=list(child))
        if isinstance(child, dict)
        else arrays[child]
        for child in tree.values()
    ]
