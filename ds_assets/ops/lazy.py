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


def _compose(functions: Sequence[Callable]) -> Callable:
    def composed(batch):
        for function in functions:
            batch = function(batch)
        return batch

    return composed


def apply_transforms(value: Any, transforms: Sequence[Mapping[str, Any]]) -> Any:
    """Set the composed transforms on a dataset, every split of a dict, or map a stream.

    The first transform's `columns` / `output_all_columns` choose what the chain receives.
    """
    if not transforms:
        return value
    functions = [
        functools.partial(resolve(t["transform"]), **t.get("kwargs", {})) for t in transforms
    ]
    composed = _compose(functions)
    first = transforms[0]
    if isinstance(value, (DatasetDict, IterableDatasetDict)):
        return type(value)(
            {name: apply_transforms(split, transforms) for name, split in value.items()}
        )
    if isinstance(value, Dataset):
        value.set_transform(
            composed,
            columns=first.get("columns"),
            output_all_columns=first.get("output_all_columns", False),
        )
        return value
    if isinstance(value, IterableDataset):
        return value.map(composed, batched=True)
    raise LazyTransformError(f"cannot apply a lazy transform to {type(value).__name__}")
