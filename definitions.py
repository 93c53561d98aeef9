"""The default code location: a small, real pipeline on embedded defaults.

    penguins_raw ──▶ penguins/train, penguins/test ──▶ penguins_clean ──▶ penguins_features
    (CSV shipped      (split_assets; data/penguins     (filter: rows      (map: standardized
     in a wheel)       opens as a DatasetDict)          with all values)   feature vector)
         │                                                                      │
         ├──▶ penguins_dream ─┐                                 penguins_augmented (lazy:
         └──▶ penguins_biscoe ┴──▶ penguins_mixed (interleave,   fresh noise on access)
                                   probabilities 0.6/0.4, seed 0)

    field station (sources that grow; the sensors add one partition per new file / new rows):
    data/incoming/observations/*.xml ──▶ penguin_observations (xml_source + new_files_sensor)
    data/field_notes.sqlite, notes    ──▶ field_notes (sql_source + new_rows_sensor on `id`)
                                               ├──▶ field_notes_text   (embedded full-text, tantivy)
                                               ├──▶ field_notes_faiss  (FAISS, cosine)
                                               ├──▶ field_notes_qdrant (Qdrant, embedded local mode,
                                               │                        new partitions appended)
                                               └──▶ field_notes_es     (Elasticsearch, when
                                                                        ELASTICSEARCH_URL is set;
                                                                        key: ELASTICSEARCH_API_KEY)
    The vector indexes embed the notes with `hashing_embedder`, a small deterministic stand-in
    for a real model (see ds_assets/index/embedders.py for plugging one in).

`make demo` materializes it into ./data (override with DS_ASSETS_DATA); `make ui` shows it, and
with the sensors switched on there, a new XML file dropped into data/incoming/observations or
new rows inserted into the notes table are picked up once each.
"""

import os
import sqlite3
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import palmerpenguins
import pyarrow.compute as pc
from dagster import AssetIn, Definitions, EnvVar, asset
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from ds_assets import (
    elasticsearch_index_asset,
    faiss_index_asset,
    filter_asset,
    fulltext_index_asset,
    interleave_asset,
    lazy_transform_asset,
    new_files_sensor,
    new_rows_sensor,
    qdrant_index_asset,
    split_assets,
    sql_source,
    xml_source,
)
from ds_assets.checks import no_nulls_check, row_count_check, split_fractions_check
from ds_assets.ops.augment import gaussian_noise
from resources import DatasetIOManager, QdrantResource, SQLResource

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

# The field station: an XML file per day of observations, and notes typed into a SQLite table.
OBSERVATIONS_DIR = os.path.join(DATA_DIR, "incoming", "observations")
NOTES_DB = os.path.join(DATA_DIR, "field_notes.sqlite")
OBSERVATION_FEATURES = Features(
    {
        "id": Value("int32"),
        "island": ClassLabel(names=["Biscoe", "Dream", "Torgersen"]),
        "species": ClassLabel(names=["Adelie", "Chinstrap", "Gentoo"]),
        **{name: Value("float32") for name in MEASUREMENTS},
        "sex": Value("string"),
    }
)
penguin_observations = xml_source(
    "penguin_observations",
    OBSERVATIONS_DIR,
    "*.xml",
    row_tag="observation",
    features=OBSERVATION_FEATURES,
    group_name="field",
)
field_notes = sql_source("field_notes", "notes", cursor_column="id", group_name="field")
EMBEDDER = "ds_assets.index.embedders:hashing_embedder"  # stand-in for a real embedding model
field_notes_text = fulltext_index_asset(
    "field_notes_text", field_notes, ["note"], group_name="field"
)
field_notes_faiss = faiss_index_asset(
    "field_notes_faiss", field_notes, "note", embed=EMBEDDER, metric="cosine", group_name="field"
)
field_notes_qdrant = qdrant_index_asset(
    "field_notes_qdrant",
    field_notes,
    collection="field_notes",
    column="note",
    embed=EMBEDDER,
    incremental=True,  # a re-materialization adds only the partitions it lacks
    group_name="field",
)
INDEXES = [field_notes_text, field_notes_faiss, field_notes_qdrant]
ELASTICSEARCH_URL = os.environ.get("ELASTICSEARCH_URL")
if ELASTICSEARCH_URL:
    INDEXES.append(
        elasticsearch_index_asset(
            "field_notes_es",
            field_notes,
            index="field_notes",
            text_columns=["note"],
            group_name="field",
        )  # fmt: skip
    )
SENSORS = [
    new_files_sensor(penguin_observations, ready_marker=None),
    new_rows_sensor(field_notes, rows_per_partition=20),
]


def resources() -> dict:
    from resources.elasticsearch import ElasticsearchResource

    chosen = {
        "io_manager": DatasetIOManager(base_dir=DATA_DIR),
        "sql": SQLResource(url=f"sqlite:///{NOTES_DB}"),
        "qdrant": QdrantResource(path=os.path.join(DATA_DIR, "qdrant")),
    }
    if ELASTICSEARCH_URL:
        # a secured cluster's key comes from the environment at run time, never from code
        key = EnvVar("ELASTICSEARCH_API_KEY") if os.environ.get("ELASTICSEARCH_API_KEY") else None
        chosen["elasticsearch"] = ElasticsearchResource(hosts=[ELASTICSEARCH_URL], api_key=key)
    return chosen


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
    assets=[*ASSETS, penguin_observations, field_notes, *INDEXES],
    asset_checks=CHECKS,
    sensors=SENSORS,
    resources=resources(),
)


SIGHTINGS = [
    "seen near the colony at dawn",
    "carrying a pebble to its nest",
    "diving for krill off the rocks",
    "resting on the rocks in the sun",
    "calling to its mate on the ridge",
]


def seed_field_station() -> tuple[list[str], int]:
    """Write a day of observations as XML and some notes into SQLite, as the station would."""
    os.makedirs(OBSERVATIONS_DIR, exist_ok=True)
    lines = PENGUINS_CSV.read_text().splitlines()
    header = lines[0].split(",")
    day = os.path.join(OBSERVATIONS_DIR, "2026-11-24.xml")
    if not os.path.exists(day):
        rows = ['<?xml version="1.0" encoding="utf-8"?>', "<observations>"]
        for number, line in enumerate(lines[1:41], start=1):
            record = dict(zip(header, line.split(","), strict=True))
            values = "".join(
                f"<{name}>{escape(record[name])}</{name}>"
                for name in ["species", *MEASUREMENTS, "sex"]
                if record[name] != "NA"
            )
            rows.append(
                f'<observation id="{number}" island={quoteattr(record["island"])}>{values}'
                "</observation>"
            )
        rows.append("</observations>")
        Path(day).write_text("\n".join(rows), encoding="utf-8")
    with sqlite3.connect(NOTES_DB) as connection:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, penguin INTEGER, note TEXT)"
        )
        if connection.execute("SELECT COUNT(*) FROM notes").fetchone()[0] == 0:
            connection.executemany(
                "INSERT INTO notes (penguin, note) VALUES (?, ?)",
                [(n, f"penguin {n} {SIGHTINGS[n % len(SIGHTINGS)]}") for n in range(1, 51)],
            )
    return sorted(os.listdir(OBSERVATIONS_DIR)), 50


def main() -> None:
    """Materialize every asset on a persistent instance ($DAGSTER_HOME) and say what was made."""
    from dagster import DagsterInstance, materialize

    from ds_assets.sensors import new_range_keys

    instance = (
        DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()
    )
    station = resources()  # one set of resources (one SQL engine) for every run below
    result = materialize(
        [*ASSETS, *CHECKS], resources=station, instance=instance, raise_on_error=True
    )
    events = list(result.get_asset_materialization_events())
    # The station's first files and rows, added as partitions the way the sensors add them.
    files, _ = seed_field_station()
    notes, _ = new_range_keys(station["sql"].get_engine(), "notes", "id", rows_per_partition=20)
    for source, keys in ((penguin_observations, files), (field_notes, notes)):
        instance.add_dynamic_partitions(source.partitions_def.name, keys)
        for key in keys:
            run = materialize([source], resources=station, instance=instance, partition_key=key)
            events += run.get_asset_materialization_events()
    indexes = materialize(
        [field_notes, *INDEXES], resources=station, instance=instance, selection=INDEXES
    )
    events += indexes.get_asset_materialization_events()
    print("\nMaterialized:")
    for event in events:
        materialization = event.materialization
        metadata = materialization.metadata
        rows = metadata["dagster/row_count"].value
        where = metadata["dagster/uri"].value
        name = materialization.asset_key.to_user_string()
        if materialization.partition:
            name += f" [{materialization.partition}]"
        print(f"  {name:<40} {rows:>5} rows  {where}")
    print("\nChecks:")
    for event in result.get_asset_check_evaluations():
        status = "passed" if event.passed else "FAILED"
        print(f"  {event.asset_key.to_user_string():<20} {event.check_name:<16} {status}")
    print(f'\nOpen them with datasets: datasets.load_from_disk("{DATA_DIR}/penguins_features")')


if __name__ == "__main__":
    main()
