"""Asset checks attached in one line: row counts, nulls, schema drift, split fractions.

Most read the metadata the IO managers record with each materialization (row count, Features),
so they cost no data access; `no_nulls_check` loads the dataset memory-mapped and counts nulls
batch by batch with Arrow (bounded memory, indices mappings respected).
"""

from collections.abc import Mapping, Sequence
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetKey,
    DagsterInvalidDefinitionError,
    asset_check,
)
from datasets import Dataset, DatasetDict

from ds_assets.assets.common import Upstream, upstream_key
from ds_assets.storage.batches import dataset_batches


def _materializations(context: AssetCheckExecutionContext, key: AssetKey, limit: int) -> list:
    records = context.instance.fetch_materializations(key, limit=limit).records
    return [record.asset_materialization for record in records if record.asset_materialization]


def _metadata_value(materialization, name: str) -> Any:
    entry = materialization.metadata.get(name)
    return getattr(entry, "value", entry)


def row_count_check(
    asset: Upstream, min_rows: int | None = None, max_rows: int | None = None
) -> AssetChecksDefinition:
    """Passes when the latest materialization's `dagster/row_count` lies in [min_rows, max_rows].

    >>> check = row_count_check("reviews", min_rows=1_000)
    """
    key = upstream_key(asset)
    if min_rows is None and max_rows is None:
        raise DagsterInvalidDefinitionError("row_count_check: give min_rows, max_rows or both")
    low = "-∞" if min_rows is None else min_rows
    bounds = f"[{low}, {'∞' if max_rows is None else max_rows}]"

    @asset_check(asset=key, name="row_count", description=f"row count within {bounds}")
    def _check(context: AssetCheckExecutionContext) -> AssetCheckResult:
        latest = _materializations(context, key, 1)
        if not latest:
            return AssetCheckResult(
                passed=False, description=f"{key.to_user_string()} has no materialization"
            )
        rows = _metadata_value(latest[0], "dagster/row_count")
        passed = (
            rows is not None
            and (min_rows is None or rows >= min_rows)
            and (max_rows is None or rows <= max_rows)
        )
        return AssetCheckResult(
            passed=bool(passed),
            metadata={"row_count": rows, "bounds": bounds},
            description=f"{rows} rows, expected within {bounds}",
        )

    return _check


def no_nulls_check(asset: Upstream, columns: Sequence[str]) -> AssetChecksDefinition:
    """Passes when none of `columns` holds a null, in every split of the stored dataset.

    >>> check = no_nulls_check("reviews", ["text", "label"])
    """
    key = upstream_key(asset)
    columns = list(columns)
    if not columns:
        raise DagsterInvalidDefinitionError("no_nulls_check: name at least one column")

    @asset_check(asset=key, name="no_nulls", description=f"no nulls in {columns}")
    def _check(dataset) -> AssetCheckResult:
        splits = dataset.items() if isinstance(dataset, DatasetDict) else [("", dataset)]
        nulls: dict[str, int] = {}
        for split, part in splits:
            if not isinstance(part, Dataset):
                raise TypeError(f"no_nulls_check needs a stored Dataset, got {type(part).__name__}")
            missing = [c for c in columns if c not in part.column_names]
            if missing:
                raise KeyError(
                    f"no_nulls_check on {key.to_user_string()}: columns {missing} are not in "
                    f"{part.column_names}"
                )
            for batch in dataset_batches(part.select_columns(columns)):
                for column in columns:
                    count = batch.column(column).null_count
                    if count:
                        name = f"{split}.{column}" if split else column
                        nulls[name] = nulls.get(name, 0) + count
        return AssetCheckResult(
            passed=not nulls,
            metadata={"null_counts": nulls},
            description="no nulls" if not nulls else f"nulls found: {nulls}",
        )

    return _check


def schema_drift_check(asset: Upstream) -> AssetChecksDefinition:
    """Passes when the Features equal those of the previous materialization.

    >>> check = schema_drift_check("reviews")
    """
    key = upstream_key(asset)

    @asset_check(asset=key, name="schema_unchanged", description="Features unchanged")
    def _check(context: AssetCheckExecutionContext) -> AssetCheckResult:
        latest = _materializations(context, key, 2)
        if len(latest) < 2:
            return AssetCheckResult(
                passed=True, description="first materialization: nothing to compare"
            )
        new, old = (_metadata_value(m, "features") or {} for m in latest)
        changed = sorted(c for c in set(new) | set(old) if new.get(c) != old.get(c))
        return AssetCheckResult(
            passed=not changed,
            metadata={"changed_columns": changed},
            description="Features unchanged" if not changed else f"Features changed: {changed}",
        )

    return _check


def split_fractions_check(
    name: str,
    fractions: Mapping[str, float],
    tolerance: float = 0.01,
    key_prefix: Sequence[str] = (),
) -> AssetChecksDefinition:
    """Passes when the split assets `[*key_prefix, name, split]` hold the expected fractions.

    Attached to the first split's asset; reads every split's latest row count.

    >>> check = split_fractions_check("reviews", {"train": 0.8, "test": 0.2}, tolerance=0.02)
    """
    keys = {split: AssetKey([*key_prefix, name, split]) for split in fractions}
    first = next(iter(keys.values()))

    @asset_check(
        asset=first,
        name="split_fractions",
        description=f"split fractions {dict(fractions)} within ±{tolerance}",
        additional_deps=list(keys.values())[1:],
    )
    def _check(context: AssetCheckExecutionContext) -> AssetCheckResult:
        counts = {}
        for split, key in keys.items():
            latest = _materializations(context, key, 1)
            counts[split] = _metadata_value(latest[0], "dagster/row_count") if latest else 0
        total = sum(counts.values())
        actual = {s: (c / total if total else 0.0) for s, c in counts.items()}
        off = {
            s: round(actual[s], 4) for s in fractions if abs(actual[s] - fractions[s]) > tolerance
        }
        return AssetCheckResult(
            passed=not off,
            metadata={
                "row_counts": counts,
                "fractions": {s: round(f, 4) for s, f in actual.items()},
            },
            description="fractions as expected" if not off else f"fractions off: {off}",
        )

    return _check
