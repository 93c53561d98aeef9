"""Split one dataset into train/test/... assets, keys `[name, split]`.

Two splits are exactly `Dataset.train_test_split(train_size, test_size, seed, stratify_by_column)`;
more are cut off one after the other with the same call (seed + 1, + 2, ... for each cut), so
stratification holds for every split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from dagster import (
    AssetIn,
    AssetOut,
    AssetsDefinition,
    DagsterInvalidDefinitionError,
    Output,
    multi_asset,
)
from datasets import Dataset, DatasetDict

from ds_assets.assets.common import (
    Upstream,
    code_version,
    describe,
    key_prefix_parts,
    split_options,
    upstream_key,
)
from ds_assets.assets.transforms import DatasetOpError
from ds_assets.ops.lazy import SplitOf
from ds_assets.storage.layout import check_split_name

SPLIT_METADATA_KEY = "ds_assets/split"


def validate_splits(
    name: str, splits: Mapping[str, float | int] | Sequence[str]
) -> dict[str, float | int] | list[str]:
    """Check split sizes: all fractions in (0, 1] summing to at most 1, or all positive counts;
    or split names alone (to fan out a `DatasetDict`): distinct, each a valid folder name."""
    if not isinstance(splits, Mapping):
        return _validate_names(name, splits)
    for split in splits:
        _check_name(name, split)
    if len(splits) < 2:
        raise DagsterInvalidDefinitionError(f"split_assets {name}: give at least two splits")
    values = list(splits.values())
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        bad = {s: v for s, v in splits.items() if v <= 0}
        if bad:
            raise DagsterInvalidDefinitionError(
                f"split_assets {name}: split counts must be positive, got {bad}"
            )
        return dict(splits)
    if all(isinstance(v, float) for v in values):
        bad = {s: v for s, v in splits.items() if not 0 < v <= 1}
        if bad or sum(values) > 1 + 1e-9:
            raise DagsterInvalidDefinitionError(
                f"split_assets {name}: split fractions must lie in (0, 1] and sum to at most 1, "
                f"got {dict(splits)} (sum {sum(values):g})"
            )
        return dict(splits)
    raise DagsterInvalidDefinitionError(
        f"split_assets {name}: give all splits as fractions (floats) or all as row counts "
        f"(ints), got {dict(splits)}"
    )


def _validate_names(name: str, splits: Any) -> list[str]:
    if isinstance(splits, (str, bytes)) or not isinstance(splits, Sequence):
        raise DagsterInvalidDefinitionError(
            f"split_assets {name}: splits are a dict of sizes ({{'train': 0.8, 'test': 0.2}}) or "
            f"a list of split names to take from a DatasetDict, got {splits!r}"
        )
    names = [_check_name(name, split) for split in splits]
    if not names or len(set(names)) != len(names):
        raise DagsterInvalidDefinitionError(
            f"split_assets {name}: give distinct split names, got {list(splits)}"
        )
    return names


def _check_name(name: str, split: Any) -> str:
    try:
        if not isinstance(split, str):
            raise ValueError(f"split name {split!r} is not a string")
        return check_split_name(split)
    except ValueError as error:
        raise DagsterInvalidDefinitionError(f"split_assets {name}: {error}") from None


def split_dataset(
    dataset: Dataset,
    splits: Mapping[str, float | int],
    seed: int | None = None,
    stratify_by_column: str | None = None,
) -> DatasetDict:
    """Cut `dataset` into the named splits (indices only: nothing is copied).

    >>> ds = Dataset.from_dict({"x": list(range(10))})
    >>> {k: len(v) for k, v in split_dataset(ds, {"train": 0.8, "test": 0.2}, seed=0).items()}
    {'train': 8, 'test': 2}
    """
    names, values = list(splits), list(splits.values())
    whole = all(isinstance(v, float) for v in values) and abs(sum(values) - 1) < 1e-9
    counts = _counts(len(dataset), splits)
    result: dict[str, Dataset] = {}
    rest = dataset
    for position, split in enumerate(names[:-1]):
        if position == 0 and len(values) == 2:  # exactly train_test_split, the user's sizes
            train_size, test_size = values
        elif position == 0:  # test_size=None: the rest, with no float round-off to overshoot
            train_size = values[0]
            test_size = None if whole else sum(values[1:])
        else:
            train_size = counts[position]
            test_size = len(rest) - train_size if whole else sum(counts[position + 1 :])
        parts = rest.train_test_split(
            train_size=train_size,
            test_size=test_size,
            seed=None if seed is None else seed + position,
            stratify_by_column=stratify_by_column,
        )
        result[split] = parts["train"]
        rest = parts["test"]
    result[names[-1]] = rest
    return DatasetDict(result)


def _counts(total: int, splits: Mapping[str, float | int]) -> list[int]:
    values = list(splits.values())
    if all(isinstance(v, int) for v in values):
        if sum(values) > total:
            raise DatasetOpError(
                f"split counts {dict(splits)} add up to {sum(values)} rows; "
                f"the upstream has {total}"
            )
        return values
    return [math.floor(v * total) for v in values]


def split_assets(
    name: str,
    upstream: Upstream,
    splits: Mapping[str, float | int] | Sequence[str] | None = None,
    *,
    seed: int | None = None,
    stratify_by_column: str | None = None,
    **options: Any,
) -> AssetsDefinition:
    """One asset per split, keys `[*key_prefix, name, split]`.

    Equal to `train_test_split` for two splits; `datasets.load_from_disk("<base>/<name>")`
    opens the `DatasetDict` of all materialized splits. An upstream that is already a
    `DatasetDict` fans out into its own splits, linked, not copied: give the names to take
    (`["train", "validation", "test"]`); sizes, or None (`train` and `test`), work too.

    >>> train, test = split_assets("reviews", "raw_reviews", seed=0).keys
    >>> sorted(key.to_user_string() for key in (train, test))
    ['reviews/test', 'reviews/train']
    >>> sorted(k.to_user_string() for k in split_assets("glue", "raw_glue", ["train", "dev"]).keys)
    ['glue/dev', 'glue/train']
    """
    key = upstream_key(upstream)
    splits = validate_splits(name, {"train": 0.8, "test": 0.2} if splits is None else splits)
    asset_options = split_options(options, "split_assets")
    prefix = key_prefix_parts(asset_options.pop("key_prefix", None))
    arguments = {"splits": splits, "seed": seed, "stratify_by_column": stratify_by_column}
    description = asset_options.pop("description", None) or describe("split", arguments)
    # the IO manager lists exactly these splits in dataset_dict.json
    metadata = {**asset_options.pop("metadata", {}), SPLIT_METADATA_KEY: list(splits)}
    shared = {
        k: asset_options.pop(k)
        for k in ("group_name", "tags", "owners", "automation_condition")
        if k in asset_options
    }
    group_name = shared.pop("group_name", None)
    outs = {
        split: AssetOut(
            key=[*prefix, name, split],
            description=f"{description}: split `{split}` of `{key.to_user_string()}`",
            metadata=metadata,
            code_version=code_version("split", arguments),
            **shared,
        )
        for split in splits
    }

    @multi_asset(
        name=f"{'__'.join([*prefix, name])}__splits",
        outs=outs,
        ins={"dataset": AssetIn(key=key)},
        group_name=group_name,
        **asset_options,
    )
    def _splits(dataset):
        if isinstance(dataset, DatasetDict):
            missing = [s for s in splits if s not in dataset]
            if missing:
                raise DatasetOpError(
                    f"split_assets {name}: upstream DatasetDict has splits {list(dataset)}, "
                    f"not {missing}"
                )
            # the stored splits are linked, not copied
            parts = {split: SplitOf(upstream=tuple(key.path), split=split) for split in splits}
        elif isinstance(dataset, Dataset) and not isinstance(splits, dict):
            raise DatasetOpError(
                f"split_assets {name}: upstream {key.to_user_string()} is a Dataset; split names "
                f"alone {splits} take the splits of a DatasetDict: give sizes to cut a Dataset "
                "(e.g. {'train': 0.8, 'test': 0.2})"
            )
        elif isinstance(dataset, Dataset):
            parts = split_dataset(dataset, splits, seed, stratify_by_column)
        else:
            raise DatasetOpError(
                f"split_assets {name}: upstream {key.to_user_string()} is a "
                f"{type(dataset).__name__}; expected a Dataset or DatasetDict"
            )
        for split in splits:
            yield Output(parts[split], output_name=split)

    return _splits
