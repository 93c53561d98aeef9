"""The default code location: a small, real pipeline on embedded defaults.

    penguins_raw ──▶ penguins/train, penguins/test ──▶ penguins_clean ──▶ penguins_features
    (CSV shipped      (split assets; data/penguins     (filter: rows      (map: standardized
     in a wheel)       opens as a DatasetDict)          with all values)   feature vector)

`make demo` materializes it into ./data (override with DS_ASSETS_DATA); `make ui` shows it.
"""

import os
from pathlib import Path

import numpy as np
import palmerpenguins
import pyarrow.compute as pc
from dagster import AssetIn, AssetOut, Definitions, asset, multi_asset
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

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


@multi_asset(
    group_name="penguins",
    outs={
        "train": AssetOut(key=["penguins", "train"], description="80 %, stratified by species"),
        "test": AssetOut(key=["penguins", "test"], description="20 %, stratified by species"),
    },
)
def penguins_splits(penguins_raw: Dataset):
    splits = penguins_raw.train_test_split(test_size=0.2, seed=42, stratify_by_column="species")
    return splits["train"], splits["test"]


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


defs = Definitions(
    assets=[penguins_raw, penguins_splits, penguins_clean, penguins_features],
    resources={"io_manager": DatasetIOManager(base_dir=DATA_DIR)},
)


def main() -> None:
    """Materialize every asset on a persistent instance ($DAGSTER_HOME) and say what was made."""
    from dagster import DagsterInstance, materialize

    instance = DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else None
    result = materialize(
        [penguins_raw, penguins_splits, penguins_clean, penguins_features],
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
    print(f'\nOpen them with datasets: datasets.load_from_disk("{DATA_DIR}/penguins_features")')


if __name__ == "__main__":
    main()
