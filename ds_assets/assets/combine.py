"""interleave and concatenate as assets over several upstreams.

`datasets.interleave_datasets` and `concatenate_datasets` do the work; this module validates
the parameters when the asset is defined and the inputs when it runs, with errors that name
the offending input and value, and applies the op split by split when the inputs are dicts.
Lazily transformed inputs keep their chain (`ds_assets.ops.lazy.combine_transformed`).
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Sequence
from typing import Any

import datasets
from dagster import AssetIn, AssetKey, AssetsDefinition, DagsterInvalidDefinitionError, asset
from datasets import Dataset, DatasetDict, Features, IterableDataset, IterableDatasetDict

from ds_assets.assets.common import (
    Upstream,
    code_version,
    describe,
    input_name,
    split_options,
    upstream_key,
)
from ds_assets.assets.transforms import DatasetOpError
from ds_assets.ops.interleave import interleave_streams
from ds_assets.ops.lazy import combine_transformed
from ds_assets.storage.batches import head_features

STOPPING_STRATEGIES = typing.get_args(
    typing.get_type_hints(datasets.interleave_datasets)["stopping_strategy"]
)


def validate_probabilities(
    name: str, keys: Sequence[AssetKey], probabilities: Sequence[float] | None
) -> list[float] | None:
    """Probabilities: one per input, non-negative, summing to 1 within 1e-6."""
    if probabilities is None:
        return None
    probabilities = list(probabilities)
    if len(probabilities) != len(keys):
        raise DagsterInvalidDefinitionError(
            f"interleave_asset {name}: {len(probabilities)} probabilities for {len(keys)} inputs "
            f"{[k.to_user_string() for k in keys]}; give one per input"
        )
    for key, probability in zip(keys, probabilities, strict=True):
        if not isinstance(probability, (int, float)) or not math.isfinite(probability):
            raise DagsterInvalidDefinitionError(
                f"interleave_asset {name}: probability of input {key.to_user_string()} is "
                f"{probability!r}; expected a finite number"
            )
        if probability < 0:
            raise DagsterInvalidDefinitionError(
                f"interleave_asset {name}: probability of input {key.to_user_string()} is "
                f"{probability}; probabilities must be non-negative"
            )
    if abs(sum(probabilities) - 1) > 1e-6:
        raise DagsterInvalidDefinitionError(
            f"interleave_asset {name}: probabilities {probabilities} sum to {sum(probabilities)}; "
            "they must sum to 1 (within 1e-6)"
        )
    return [float(p) for p in probabilities]


def feature_differences(first: Any, other: Any) -> list[str]:
    """Columns whose features differ between two datasets (or two `Features`), as
    'column: a vs b' lines."""
    a = (first if isinstance(first, Features) else first.features) or {}
    b = (other if isinstance(other, Features) else other.features) or {}
    lines = [f"{c}: missing" for c in a if c not in b]
    lines += [f"{c}: unexpected" for c in b if c not in a]
    lines += [f"{c}: {a[c]} vs {b[c]}" for c in a if c in b and a[c] != b[c]]
    return lines


def check_compatible(name: str, op: str, inputs: dict[str, Any]) -> None:
    """Every input has the first input's Features. A stream that forgot its features (after
    `map`, e.g. a lazy transform) is compared on those its first rows give; an empty one is
    skipped."""
    features = {key: _features(value) for key, value in inputs.items()}
    (first_key, first), *others = features.items()
    for key, value in others:
        if first is None or value is None:
            continue
        differences = feature_differences(first, value)
        if differences:
            raise DatasetOpError(
                f"{op} {name}: input {key} does not match the Features of input {first_key}: "
                + "; ".join(differences)
            )


def _features(value: Any) -> Features | None:
    """The Features of an input; of a stream that forgot them, those of its first rows."""
    if isinstance(value, IterableDataset):
        return head_features(value)
    return value.features


def _multi_input_asset(
    op: str,
    name: str,
    upstreams: Sequence[Upstream],
    combine: Callable[[list[Any]], Any],
    check: Callable[[dict[str, Any]], None],
    arguments: dict[str, Any],
    options: dict[str, Any],
) -> AssetsDefinition:
    keys = [upstream_key(u) for u in upstreams]
    if len(keys) < 2:
        raise DagsterInvalidDefinitionError(f"{op}_asset {name}: give at least two upstreams")
    taken: set[str] = set()
    names = [input_name(key, taken) for key in keys]
    asset_options = split_options(options, f"{op}_asset")
    description = asset_options.pop("description", None) or describe(op, arguments)
    inputs_text = ", ".join(f"`{k.to_user_string()}`" for k in keys)

    @asset(
        name=name,
        ins={input_name: AssetIn(key=key) for input_name, key in zip(names, keys, strict=True)},
        description=f"{description}\n\nupstreams, in order: {inputs_text}",
        code_version=code_version(op, arguments),
        **asset_options,
    )
    def _asset(**loaded):
        values = {key.to_user_string(): loaded[n] for n, key in zip(names, keys, strict=True)}
        kinds = {type(v) for v in values.values()}
        if kinds <= {DatasetDict, IterableDatasetDict}:
            split_names = list(next(iter(values.values())))  # the first input's order
            for key, value in values.items():
                if sorted(value) != sorted(split_names):  # stored dicts list splits sorted
                    raise DatasetOpError(
                        f"{op} {name}: input {key} has splits {list(value)}, expected "
                        f"{split_names} like the first input"
                    )
            joined = {}
            for split in split_names:
                per_split = {k: v[split] for k, v in values.items()}
                check(per_split)
                joined[split] = combine_transformed(
                    per_split, combine, f"{op} {name}, split {split!r}"
                )
            return type(next(iter(values.values())))(joined)
        if len(kinds) != 1 or not kinds <= {Dataset, IterableDataset}:
            described = {k: type(v).__name__ for k, v in values.items()}
            raise DatasetOpError(
                f"{op} {name}: inputs must all be Dataset, all IterableDataset, or all dicts "
                f"of either, got {described}"
            )
        check(values)
        return combine_transformed(values, combine, f"{op} {name}")

    return _asset


def interleave_asset(
    name: str,
    upstreams: Sequence[Upstream],
    probabilities: Sequence[float] | None = None,
    seed: int | None = None,
    stopping_strategy: str = "first_exhausted",
    **options: Any,
) -> AssetsDefinition:
    """An asset equal, row for row, to `datasets.interleave_datasets(upstreams, ...)`.

    >>> mixed = interleave_asset("mixed", ["web", "books"], probabilities=[0.7, 0.3], seed=0)
    >>> mixed.key.path
    ['mixed']
    """
    keys = [upstream_key(u) for u in upstreams]
    probabilities = validate_probabilities(name, keys, probabilities)
    if stopping_strategy not in STOPPING_STRATEGIES:
        raise DagsterInvalidDefinitionError(
            f"interleave_asset {name}: stopping_strategy {stopping_strategy!r} is not one of "
            f"{list(STOPPING_STRATEGIES)}"
        )
    never = [key for key, p in zip(keys, probabilities or (), strict=False) if p == 0]
    if never and stopping_strategy != "first_exhausted":
        # an upstream never sampled is never exhausted: on streams the run would never end
        raise DagsterInvalidDefinitionError(
            f"interleave_asset {name}: probability 0 for {[k.to_user_string() for k in never]} "
            f"with stopping_strategy {stopping_strategy!r}, which waits for every upstream to "
            "be exhausted: it never is; drop that upstream or give it a probability"
        )
    arguments = {
        "probabilities": probabilities, "seed": seed, "stopping_strategy": stopping_strategy,
    }  # fmt: skip

    def combine(values: list[Any]) -> Any:
        if all(isinstance(v, IterableDataset) and v.features for v in values):
            # same rows as datasets.interleave_datasets, on Arrow tables (docs/performance.md)
            return interleave_streams(
                values, values[0].features, probabilities, seed, stopping_strategy
            )
        return datasets.interleave_datasets(
            values, probabilities=probabilities, seed=seed, stopping_strategy=stopping_strategy
        )

    def check(values: dict[str, Any]) -> None:
        check_compatible(name, "interleave", values)

    return _multi_input_asset("interleave", name, upstreams, combine, check, arguments, options)


def concatenate_asset(
    name: str, upstreams: Sequence[Upstream], axis: int = 0, **options: Any
) -> AssetsDefinition:
    """An asset equal to `datasets.concatenate_datasets(upstreams, axis=axis)`.

    With `axis=0` the inputs must share Features (an error lists the columns and types that
    differ); with `axis=1` they must have the same number of rows and distinct columns.
    The info (description, Features) comes from the first input.

    >>> concatenate_asset("all_reviews", ["reviews_2023", "reviews_2024"]).key.path
    ['all_reviews']
    """
    if axis not in (0, 1):
        raise DagsterInvalidDefinitionError(
            f"concatenate_asset {name}: axis must be 0 (rows) or 1 (columns), got {axis!r}"
        )

    def combine(values: list[Any]) -> Any:
        # rows: the first input's info; columns: `datasets` merges the infos of all inputs
        info = values[0].info if axis == 0 else None
        if axis == 0:
            values = [values[0], *(_columns_like(values[0], value) for value in values[1:])]
        return datasets.concatenate_datasets(values, info=info, axis=axis)

    def check(values: dict[str, Any]) -> None:
        if axis == 0:
            check_compatible(name, "concatenate", values)
            return
        (first_key, first), *others = values.items()
        seen = {column: first_key for column in _features(first) or {}}
        for key, value in others:
            if isinstance(value, Dataset) and len(value) != len(first):
                raise DatasetOpError(
                    f"concatenate {name}: axis=1 needs equal row counts; input {key} has "
                    f"{len(value)} rows, input {first_key} has {len(first)}"
                )
            for column in _features(value) or {}:  # a lazy stream's from its first rows
                if column in seen:
                    raise DatasetOpError(
                        f"concatenate {name}: axis=1 needs distinct columns; column {column!r} "
                        f"is in inputs {seen[column]} and {key}"
                    )
                seen[column] = key

    return _multi_input_asset(
        "concatenate", name, upstreams, combine, check, {"axis": axis}, options
    )


def _columns_like(first: Any, value: Any) -> Any:
    """`value` with its columns in the order of `first`: a stream of the same columns in
    another order fails in Arrow while its batches are joined (`datasets` aligns map-style
    datasets itself)."""
    order = first.column_names
    if isinstance(value, IterableDataset) and order and value.column_names != order:
        return value.select_columns(order)
    return value
