"""The default code location: a small, real pipeline on embedded defaults.

    penguins_raw ──▶ penguins/train, penguins/test ──▶ penguins_clean ──▶ penguins_features
    (CSV shipped      (split_assets; data/penguins     (filter: rows      (map: standardized
     in a wheel)       opens as a DatasetDict)          with all values)   feature vector)
         │                                                                      │
         ├──▶ penguins_dream ─┐                                 penguins_augmented (lazy:
         └──▶ penguins_biscoe ┴──▶ penguins_mixed (interleave,   fresh noise on access)
                                   probabilities 0.6/0.4, seed 0)

`make demo` materializes it into ./data (override with DS_ASSETS_DATA); `make ui` shows it.
"""

import os
from pathlib import Path

import numpy as np
import palmerpenguins
import pyarrow.compute as pc
from dagster import AssetIn, Definitions, asset
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from ds_assets import filter_asset, interleave_asset, lazy_transform_asset, split_assets
from ds_assets.checks import no_nulls_check, row_count_check, split_fractions_check
from ds_assets.ops.augment import gaussian_noise
from resources import DatasetIOManager

DATA_DIR = os.environ.get("DS_ASSETS_DATA", "data")
PENGUINS_CSV = Path(palmerpenguins.__file__).parent / "data" / "penguins.csv"
MEASUREMENTS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
PENGUIN_FEATURES = Features(
    {
        "species": ClassLabel(names=["Adelie", "Chinstrap", "Gentoo"]),
        "island": ClassLabel(names=["Biscoe", "Dream", "Torgersen"]),
        **{name: Value("float32") for name in MEASUREMENTS},
        "sex": Value("string"),
        "year": Value("int32"),
    }
)


@asset(group_name="penguins", description="Palmer penguins, read from the CSV in its wheel.")
def penguins_raw() -> Dataset:
    return Dataset.from_csv(str(PENGUINS_CSV), features=PENGUIN_FEATURES, keep_in_memory=True)


penguins_splits = split_assets(
    "penguins",
    penguins_raw,
    {"train": 0.8, "test": 0.2},
    seed=42,
    stratify_by_column="species",
    group_name="penguins",
)

# Two sources mixed with probabilities and a seed (penguins of two islands, 60/40).
penguins_dream = filter_asset(
    "penguins_dream", penguins_raw, lambda row: row["island"] == 1, group_name="penguins"
)
penguins_biscoe = filter_asset(
    "penguins_biscoe", penguins_raw, lambda row: row["island"] == 0, group_name="penguins"
)
penguins_mixed = interleave_asset(
    "penguins_mixed",
    [penguins_dream, penguins_biscoe],
    probabilities=[0.6, 0.4],
    seed=0,
    stopping_strategy="all_exhausted",
    group_name="penguins",
)


@asset(
    group_name="penguins",
    ins={"train": AssetIn(["penguins", "train"]), "test": AssetIn(["penguins", "test"])},
    description="filter: keep the rows where every measurement and the sex are known",
)
def penguins_clean(train: Dataset, test: Dataset) -> DatasetDict:
    def complete(row):
        return row["sex"] is not None and all(row[name] is not None for name in MEASUREMENTS)

    return DatasetDict(train=train, test=test).filter(complete)


@asset(
    group_name="penguins",
    description="map: add `features`, the measurements standardized with train statistics",
)
def penguins_features(penguins_clean: DatasetDict) -> DatasetDict:
    train = penguins_clean["train"].data  # the Arrow table: statistics without a copy
    means = {name: pc.mean(train.column(name)).as_py() for name in MEASUREMENTS}
    stds = {name: pc.stddev(train.column(name)).as_py() for name in MEASUREMENTS}

    def standardize(batch):
        columns = [(np.asarray(batch[n]) - means[n]) / stds[n] for n in MEASUREMENTS]
        return {"features": np.stack(columns, axis=1).astype("float32")}

    return penguins_clean.map(standardize, batched=True)


# Data augmentation per epoch: fresh noise on every access, no data stored.
penguins_augmented = lazy_transform_asset(
    "penguins_augmented",
    penguins_features,
    gaussian_noise,
    transform_kwargs={"columns": ["features"], "std": 0.05},
    group_name="penguins",
)

ASSETS = [
    penguins_raw,
    penguins_splits,
    penguins_clean,
    penguins_features,
    penguins_augmented,
    penguins_dream,
    penguins_biscoe,
    penguins_mixed,
]
CHECKS = [
    row_count_check(penguins_raw, min_rows=300),
    no_nulls_check(penguins_features, ["features"]),
    split_fractions_check("penguins", {"train": 0.8, "test": 0.2}, tolerance=0.01),
]

defs = Definitions(
    assets=ASSETS,
    asset_checks=CHECKS,
    resources={"io_manager": DatasetIOManager(base_dir=DATA_DIR)},
)


def main() -> None:
    """Materialize every asset on a persistent instance ($DAGSTER_HOME) and say what was made."""
    from dagster import DagsterInstance, materialize

    instance = DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else None
    result = materialize(
        [*ASSETS, *CHECKS],
        resources={"io_manager": DatasetIOManager(base_dir=DATA_DIR)},
        instance=instance,
        raise_on_error=True,
    )
    print("\nMaterialized:")
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        metadata = materialization.metadata
        rows = metadata["dagster/row_count"].value
        where = metadata["dagster/uri"].value
        print(f"  {materialization.asset_key.to_user_string():<20} {rows:>5} rows  {where}")
    print("\nChecks:")
    for event in result.get_asset_check_evaluations():
        status = "passed" if event.passed else "FAILED"
        print(f"  {event.asset_key.to_user_string():<20} {event.check_name:<16} {status}")
    print(f'\nOpen them with datasets: datasets.load_from_disk("{DATA_DIR}/penguins_features")')


if __name__ == "__main__":
    main()
