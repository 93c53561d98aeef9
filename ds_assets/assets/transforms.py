"""map, filter and repeat as assets, on a Dataset, a stream, or chosen splits of a dict.

`datasets` does the work (`Dataset.map`, `filter`, `repeat` and their `IterableDataset` twins);
this module makes each call an asset with a description, a code version and clear errors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from dagster import AssetIn, AssetsDefinition, DagsterInvalidDefinitionError, asset
from datasets import Dataset, DatasetDict, Features, IterableDataset, IterableDatasetDict

from ds_assets.assets.common import Upstream, code_version, describe, split_options, upstream_key
from ds_assets.ops.lazy import LazyTransform, Repeated, import_path

DICTS = (DatasetDict, IterableDatasetDict)
SINGLES = (Dataset, IterableDataset)


class DatasetOpError(ValueError):
    """An op's input or parameters do not fit (the message names the asset and the value)."""


def apply_to_splits(
    value: Any, operation: Callable[[Any], Any], splits: Sequence[str] | None, asset_name: str
) -> Any:
    """Apply `operation` to a single dataset, or to the chosen splits of a dict.

    Splits that are not chosen pass through unchanged; split names and order are kept.
    """
    if isinstance(value, DICTS):
        chosen = list(value) if splits is None else list(splits)
        unknown = [s for s in chosen if s not in value]
        if unknown:
            raise DatasetOpError(
                f"{asset_name}: splits {unknown} are not in the upstream, which has {list(value)}"
            )
        return type(value)(
            {name: operation(split) if name in chosen else split for name, split in value.items()}
        )
    if isinstance(value, SINGLES):
        if splits is not None:
            raise DatasetOpError(
                f"{asset_name}: splits={list(splits)} selects splits of a DatasetDict, but the "
                f"upstream is a single {type(value).__name__}"
            )
        return operation(value)
    raise DatasetOpError(
        f"{asset_name}: expected a Dataset, IterableDataset, DatasetDict or IterableDatasetDict "
        f"upstream, got {type(value).__name__}"
    )


def _single_input_asset(
    op: str,
    name: str,
    upstream: Upstream,
    operation: Callable[[Any], Any],
    arguments: dict[str, Any],
    function: Callable | None,
    splits: Sequence[str] | None,
    options: dict[str, Any],
) -> AssetsDefinition:
    key = upstream_key(upstream)
    asset_options = split_options(options, f"{op}_asset")
    shown = {**arguments, "splits": list(splits) if splits is not None else None}
    description = asset_options.pop("description", None) or describe(op, shown, function)
    functions = (function,) if function is not None else ()

    @asset(
        name=name,
        ins={"dataset": AssetIn(key=key)},
        description=f"{description}\n\nupstream: `{key.to_user_string()}`",
        code_version=code_version(op, shown, *functions),
        **asset_options,
    )
    def _asset(dataset):
        return apply_to_splits(dataset, operation, splits, name)

    return _asset


def _method_asset(
    method: str,
    name: str,
    upstream: Upstream,
    function: Callable,
    splits: Sequence[str] | None,
    call_options: dict[str, Any],
    num_proc: int | None,
    options: dict[str, Any],
) -> AssetsDefinition:
    """An asset calling `dataset.<method>(function, **call_options)` on every chosen split.

    `num_proc` only goes to map-style datasets (streams have no such option); the description
    and code version show the options that differ from their defaults.
    """
    if not callable(function):
        raise DagsterInvalidDefinitionError(
            f"{method}_asset {name}: the function must be callable, got {function!r}"
        )
    if num_proc is not None and (
        isinstance(num_proc, bool) or not isinstance(num_proc, int) or num_proc < 0
    ):
        raise DagsterInvalidDefinitionError(
            f"{method}_asset {name}: num_proc must be a number of processes (0 or None: no "
            f"worker processes), got {num_proc!r}"
        )

    def operation(dataset):
        extra = {"num_proc": num_proc} if isinstance(dataset, Dataset) else {}
        return getattr(dataset, method)(function, **call_options, **extra)

    shown = {**call_options, "num_proc": num_proc}
    if not shown["batched"]:
        shown["batch_size"] = None
    shown = {key: value for key, value in shown.items() if value not in (None, False)}
    return _single_input_asset(method, name, upstream, operation, shown, function, splits, options)


def map_asset(
    name: str,
    upstream: Upstream,
    fn: Callable,
    *,
    splits: Sequence[str] | None = None,
    batched: bool = False,
    batch_size: int | None = 1000,
    with_indices: bool = False,
    input_columns: str | list[str] | None = None,
    remove_columns: str | list[str] | None = None,
    fn_kwargs: dict | None = None,
    features: Features | None = None,
    num_proc: int | None = None,
    **options: Any,
) -> AssetsDefinition:
    """An asset that is `upstream.map(fn, ...)`, split by split for a DatasetDict.

    Any callable works, lambdas included; its source and the arguments make the asset's
    `code_version`, so editing the function marks the asset stale. `features` declares the
    output's Features, as in `Dataset.map` (on streams, it saves inferring them).

    >>> lowered = map_asset("lowered", "reviews", lambda row: {"text": row["text"].lower()})
    >>> lowered.key.path
    ['lowered']
    """
    call_options = {
        "batched": batched, "batch_size": batch_size, "with_indices": with_indices,
        "input_columns": input_columns, "remove_columns": remove_columns, "fn_kwargs": fn_kwargs,
        "features": features,
    }  # fmt: skip
    return _method_asset("map", name, upstream, fn, splits, call_options, num_proc, options)


def filter_asset(
    name: str,
    upstream: Upstream,
    predicate: Callable,
    *,
    splits: Sequence[str] | None = None,
    batched: bool = False,
    batch_size: int | None = 1000,
    with_indices: bool = False,
    input_columns: str | list[str] | None = None,
    fn_kwargs: dict | None = None,
    num_proc: int | None = None,
    **options: Any,
) -> AssetsDefinition:
    """An asset that is `upstream.filter(predicate, ...)`, split by split for a DatasetDict.

    >>> positive = filter_asset("positive", "reviews", lambda row: row["label"] == 1)
    >>> positive.key.path
    ['positive']
    """
    call_options = {
        "batched": batched, "batch_size": batch_size, "with_indices": with_indices,
        "input_columns": input_columns, "fn_kwargs": fn_kwargs,
    }  # fmt: skip
    return _method_asset(
        "filter", name, upstream, predicate, splits, call_options, num_proc, options
    )


def _linked_asset(
    op: str,
    name: str,
    upstream: Upstream,
    arguments: dict[str, Any],
    make_marker: Callable[[tuple[str, ...]], Any],
    options: dict[str, Any],
) -> AssetsDefinition:
    """An asset that returns a marker the IO manager stores by linking the upstream's data."""
    key = upstream_key(upstream)
    asset_options = split_options(options, f"{op}_asset")
    description = asset_options.pop("description", None) or describe(op, arguments)

    @asset(
        name=name,
        deps=[key],
        description=f"{description}\n\nupstream: `{key.to_user_string()}` (data reused)",
        code_version=code_version(op, arguments),
        **asset_options,
    )
    def _asset():
        return make_marker(tuple(key.path))

    return _asset


def repeat_asset(
    name: str,
    upstream: Upstream,
    num_times: int,
    *,
    splits: Sequence[str] | None = None,
    **options: Any,
) -> AssetsDefinition:
    """An asset equal to `upstream.repeat(num_times)`.

    The result reuses the upstream version's shards, each listed `num_times` in `state.json`:
    no data is copied (locally hard links; on S3 a version of JSON documents that pins the
    upstream version). With `splits=` only those splits repeat,
    through `Dataset.repeat`.

    >>> repeat_asset("twice", "reviews", 2).key.path
    ['twice']
    """
    if isinstance(num_times, bool) or not isinstance(num_times, int) or num_times < 1:
        raise DagsterInvalidDefinitionError(
            f"repeat_asset {name}: num_times must be a positive integer, got {num_times!r}"
        )
    if splits is not None:
        return _single_input_asset(
            "repeat", name, upstream, lambda d: d.repeat(num_times), {"num_times": num_times},
            None, splits, options,
        )  # fmt: skip
    return _linked_asset(
        "repeat", name, upstream, {"num_times": num_times},
        lambda key: Repeated(upstream=key, num_times=num_times), options,
    )  # fmt: skip


def lazy_transform_asset(
    name: str,
    upstream: Upstream,
    transform: Callable | str,
    columns: Sequence[str] | None = None,
    output_all_columns: bool = False,
    transform_kwargs: dict | None = None,
    **options: Any,
) -> AssetsDefinition:
    """An asset that stores no data: loading it gives `upstream` with `set_transform` applied.

    `transform` is a module-level function (or its `"module:function"` path) that takes a batch
    dict and returns one; it runs on every access, so random augmentations differ per epoch.
    Stacked lazy assets apply their transforms in order. The stored version reuses the upstream
    version's shards (locally hard links, so `datasets.load_from_disk` opens the folder without
    the transform; on S3 the manifest names the reused version prefix).

    >>> from ds_assets.ops.lazy import import_path
    >>> lazy_transform_asset("augmented", "images", import_path).key.path
    ['augmented']
    """
    path = import_path(transform)
    arguments = {
        "transform": path, "columns": list(columns) if columns is not None else None,
        "output_all_columns": output_all_columns or None, "transform_kwargs": transform_kwargs,
    }  # fmt: skip

    def make_marker(key: tuple[str, ...]) -> LazyTransform:
        return LazyTransform(key, path, columns, output_all_columns, transform_kwargs or {})

    return _linked_asset("lazy_transform", name, upstream, arguments, make_marker, options)
