"""Lazy transforms: a dataset stored as its upstream's data plus transforms applied on access.

A transform is named by import path (`"package.module:function"`), so any process can apply it:
the manifest holds the path and its keyword arguments, never pickled code. Loading applies the
chain with `Dataset.set_transform`, composed in order, so stacked lazy assets run every
transform on every access (data augmentation per epoch).
"""

from __future__ import annotations

import functools
import importlib
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


def _compose(transforms: Sequence[Mapping[str, Any]], select_first: bool) -> Callable:
    """One batch function running `transforms` in order, each on the columns it names.

    `Dataset.set_transform` selects the first transform's columns itself (and decodes only
    those), so `select_first=False` leaves that step to it; a stream has no such option.
    The composed function carries the chain (`CHAIN_ATTRIBUTE`), so that a dataset derived
    from a lazily transformed one can be stored with the same chain instead of the function.
    """
    steps = [
        _selecting(
            functools.partial(resolve(t["transform"]), **t.get("kwargs", {})),
            t["transform"],
            t.get("columns") if select_first or position else None,
            t.get("output_all_columns", False),
        )
        for position, t in enumerate(transforms)
    ]

    def composed(batch):
        for step in steps:
            batch = step(batch)
        return batch

    setattr(composed, CHAIN_ATTRIBUTE, [dict(t) for t in transforms])
    return composed


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
            _compose(transforms, select_first=False),
            columns=first.get("columns"),
            output_all_columns=first.get("output_all_columns", False),
        )
        return value
    if isinstance(value, IterableDataset):
        # map() merges what the function returns into the input row: removing every input
        # column first keeps only what the chain returns, as a Dataset's transform does
        return value.map(
            _compose(transforms, select_first=True),
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
