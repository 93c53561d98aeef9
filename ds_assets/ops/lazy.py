"""Lazy transforms: a dataset stored as its upstream's data plus transforms applied on access.

A transform is named by import path (`"package.module:function"`), so any process can apply it:
the manifest holds the path and its keyword arguments, never pickled code. Loading applies the
chain with `Dataset.set_transform`, composed in order, so stacked lazy assets run every
transform on every access (data augmentation per epoch).
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict


class LazyTransformError(ValueError):
    """A transform cannot be named by import path, or its path no longer imports."""


@dataclass(frozen=True)
class LazyTransform:
    """What a lazy transform asset returns: store no data, only this transform over `upstream`.

    `upstream` is the upstream asset's store key; the IO manager links its stored version.
    """

    upstream: tuple[str, ...]
    transform: str
    columns: Sequence[str] | None = None
    output_all_columns: bool = False
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def link_options(self) -> dict[str, Any]:
        """Keyword arguments of `DatasetStore.save_linked` that store this marker."""
        return {
            "transform": {
                "transform": self.transform,
                "columns": list(self.columns) if self.columns is not None else None,
                "output_all_columns": self.output_all_columns,
                "kwargs": dict(self.kwargs),
            }
        }


@dataclass(frozen=True)
class Repeated:
    """What a repeat asset returns: the stored `upstream`, `num_times` over, shards reused."""

    upstream: tuple[str, ...]
    num_times: int

    def link_options(self) -> dict[str, Any]:
        return {"repeat": self.num_times}


@dataclass(frozen=True)
class SplitOf:
    """What a split asset returns for a split of a stored dict: that split, shards reused."""

    upstream: tuple[str, ...]
    split: str

    def link_options(self) -> dict[str, Any]:
        return {"split": self.split}


LINKED_MARKERS = (LazyTransform, Repeated, SplitOf)

# attribute of the function `apply_transforms` sets on a dataset: the chain it runs, as stored
CHAIN_ATTRIBUTE = "ds_assets_transforms"


def import_path(transform: Callable | str) -> str:
    """The `"module:qualname"` that imports `transform`; lambdas and closures are refused.

    >>> import_path(import_path)
    'ds_assets.ops.lazy:import_path'
    """
    if isinstance(transform, str):
        resolve(transform)
        return transform
    module = getattr(transform, "__module__", None)
    qualname = getattr(transform, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        raise LazyTransformError(
            f"transform {transform!r} has no import path: lazy transforms are re-imported by "
            "every process that loads the data, so use a module-level function"
        )
    path = f"{module}:{qualname}"
    if resolve(path) is not transform:
        raise LazyTransformError(f"transform {transform!r} does not import back from {path!r}")
    return path


def resolve(path: str) -> Callable:
    """Import the callable a `"module:qualname"` path names."""
    module_name, _, qualname = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError, ValueError) as error:
        raise LazyTransformError(f"lazy transform {path!r} does not import: {error}") from error
    if not callable(target):
        raise LazyTransformError(f"lazy transform {path!r} is not callable")
    return target


class ChainTransform:
    """The one batch function a chain of lazy transforms composes to: `transforms` in order,
    each on the columns it names.

    `Dataset.set_transform` selects the first transform's columns itself (and decodes only
    those), so `select_first=False` leaves that step to it; a stream has no such option.
    Two instances of the same chain are equal (and hash, pickle and fingerprint alike), so
    `datasets`, which keeps a format only when every part's format is equal
    (`concatenate_datasets`, `interleave_datasets`), keeps it for datasets loaded apart.
    The instance carries its chain (`CHAIN_ATTRIBUTE`), so that a dataset derived from a
    lazily transformed one can be stored with the same chain instead of the function.

    >>> ChainTransform([{"transform": "builtins:dict"}]) == ChainTransform(
    ...     [{"transform": "builtins:dict"}])
    True
    """

    def __init__(self, transforms: Sequence[Mapping[str, Any]], select_first: bool = False):
        chain = [dict(t) for t in transforms]
        setattr(self, CHAIN_ATTRIBUTE, chain)
        self.select_first = select_first
        self._identity = (json.dumps(chain, sort_keys=True, default=repr), select_first)
        self._steps = [
            _selecting(
                functools.partial(resolve(t["transform"]), **t.get("kwargs", {})),
                t["transform"],
                t.get("columns") if select_first or position else None,
                t.get("output_all_columns", False),
            )
            for position, t in enumerate(chain)
        ]

    def __call__(self, batch):
        for step in self._steps:
            batch = step(batch)
        return batch

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChainTransform) and other._identity == self._identity

    def __hash__(self) -> int:
        return hash(self._identity)

    def __reduce__(self):
        # the chain, not the resolved functions: another process imports them again
        return ChainTransform, (getattr(self, CHAIN_ATTRIBUTE), self.select_first)

    def __repr__(self) -> str:
        return f"ChainTransform({describe_chain(getattr(self, CHAIN_ATTRIBUTE))})"


def describe_chain(transforms: Sequence[Mapping[str, Any]]) -> str:
    """A chain in a few words, for error messages.

    >>> describe_chain([{"transform": "m:f", "columns": ["a"]}, {"transform": "m:g"}])
    "m:f(columns=['a']) then m:g"
    >>> describe_chain([])
    'no lazy transform'
    """
    if not transforms:
        return "no lazy transform"
    parts = []
    for t in transforms:
        options = {k: t[k] for k in ("columns", "kwargs") if t.get(k)}
        if t.get("output_all_columns"):
            options["output_all_columns"] = True
        shown = ", ".join(f"{k}={v!r}" for k, v in options.items())
        parts.append(f"{t['transform']}({shown})" if shown else t["transform"])
    return " then ".join(parts)


def _selecting(
    function: Callable, path: str, columns: Sequence[str] | None, output_all_columns: bool
) -> Callable:
    """`function` called on `columns` of the batch only, as `Dataset.set_transform(columns=...)`
    does; with `output_all_columns` the other columns are added to its output."""
    if columns is None:
        return function

    def step(batch):
        missing = [column for column in columns if column not in batch]
        if missing:
            raise LazyTransformError(
                f"lazy transform {path!r} reads columns {list(columns)}, but {missing} are not "
                f"among the columns it is given {list(batch)}"
            )
        output = function({column: batch[column] for column in columns})
        if output_all_columns:
            output = dict(output)
            output.update({k: v for k, v in batch.items() if k not in columns})
        return output

    return step


def apply_transforms(value: Any, transforms: Sequence[Mapping[str, Any]]) -> Any:
    """Set the composed transforms on a dataset, every split of a dict, or map a stream.

    Each transform receives the `columns` it names (all the columns its predecessor gave when
    None), plus, with `output_all_columns`, the other columns are added to what it returns.
    A stream gives exactly what a `Dataset` with the same transforms gives.

    >>> ds = apply_transforms(Dataset.from_dict({"n": [1, 2]}), [{"transform": "builtins:dict"}])
    >>> ds[0], ds.format["type"]
    ({'n': 1}, 'custom')
    """
    if not transforms:
        return value
    if isinstance(value, (DatasetDict, IterableDatasetDict)):
        return type(value)(
            {name: apply_transforms(split, transforms) for name, split in value.items()}
        )
    first = transforms[0]
    if isinstance(value, Dataset):
        value.set_transform(
            ChainTransform(transforms, select_first=False),
            columns=first.get("columns"),
            output_all_columns=first.get("output_all_columns", False),
        )
        return value
    if isinstance(value, IterableDataset):
        # map() merges what the function returns into the input row: removing every input
        # column first keeps only what the chain returns, as a Dataset's transform does
        return value.map(
            ChainTransform(transforms, select_first=True),
            batched=True,
            remove_columns=value.column_names,
        )
    raise LazyTransformError(f"cannot apply a lazy transform to {type(value).__name__}")


def stored_chain(dataset: Dataset) -> list[dict]:
    """The lazy transforms to store with `dataset`: those `apply_transforms` set on it (a
    dataset derived from a lazily transformed one by `map`, `filter`, `select`... carries them
    over, as `datasets` does), with the columns it now formats; [] when it has no transform.

    A transform set by other code is a function, which cannot be stored: `LazyTransformError`.

    >>> ds = apply_transforms(Dataset.from_dict({"n": [1]}), [{"transform": "builtins:dict"}])
    >>> stored_chain(ds.filter(lambda row: True))
    [{'transform': 'builtins:dict', 'columns': None, 'output_all_columns': False}]
    """
    if dataset.format["type"] != "custom":
        return []
    function = dataset.format["format_kwargs"].get("transform")
    chain = getattr(function, CHAIN_ATTRIBUTE, None)
    if chain is None:
        raise LazyTransformError(
            f"the dataset has a transform set by set_transform/with_transform ({function!r}): "
            "a function cannot be stored; return the dataset without it (reset_format()) and "
            "use lazy_transform_asset, whose transform is stored by import path"
        )
    first = {
        **chain[0],
        "columns": dataset.format["columns"] if chain[0].get("columns") is not None else None,
        "output_all_columns": dataset.format["output_all_columns"],
    }
    return [first, *chain[1:]]


def combine_transformed(parts: Mapping[str, Any], combine: Callable[[list], Any], what: str) -> Any:
    """`combine(list of parts)` (a concatenation or interleave) keeping the parts' lazy chain.

    `datasets` drops the transform of map-style datasets whose formats differ in any way
    (even only in the order of their columns); so the chain is taken off every `Dataset`
    part, the plain data combined, and the chain set again on the result. Parts with
    different chains cannot be one dataset with one transform: `LazyTransformError` naming
    each part (key of `parts`) and its chain, never the untransformed rows. Streams carry
    their chain in their own `map`, so each part keeps its own and they combine as they are.

    >>> from datasets import concatenate_datasets as concat
    >>> plain = Dataset.from_dict({"n": [1]})
    >>> lazy = apply_transforms(Dataset.from_dict({"n": [2]}), [{"transform": "builtins:dict"}])
    >>> both = combine_transformed({"a": lazy, "b": lazy}, concat, "demo")
    >>> both[:], both.format["type"]
    ({'n': [2, 2]}, 'custom')
    >>> combine_transformed({"a": lazy, "b": plain}, concat, "demo")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ds_assets.ops.lazy.LazyTransformError: demo: ... (a: builtins:dict; b: no lazy transform); ...
    """
    values = list(parts.values())
    if not all(isinstance(value, Dataset) for value in values):
        return combine(values)
    chains = {name: stored_chain(value) for name, value in parts.items()}
    if not any(chains.values()):
        return combine(values)
    # an empty part gives no row to transform (and `datasets` ignores its format)
    counted = {name: chain for name, chain in chains.items() if len(parts[name])}
    first = next(iter(counted.values()), next(iter(chains.values())))
    if any(chain != first for chain in counted.values()):
        described = "; ".join(f"{name}: {describe_chain(c)}" for name, c in chains.items())
        raise LazyTransformError(
            f"{what}: the inputs carry different lazy transforms, which one dataset cannot "
            f"apply ({described}); give every input the same chain, or apply the transforms "
            "with map_asset before combining"
        )
    plain = [value.with_format(None) if chains[n] else value for n, value in parts.items()]
    return apply_transforms(combine(plain), first)
