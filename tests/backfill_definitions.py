"""Definitions for `test_backfill_daemon.py`: a file source over `$DS_ASSETS_BACKFILL_DIR/in`
and a downstream unpartitioned asset, loaded by Dagster's daemon from this file."""

import os

from dagster import Definitions, asset
from datasets import Dataset

from ds_assets import file_source
from resources import DatasetIOManager

# set by the test; the default only lets pytest's doctest collection import this file
FOLDER = os.environ.get("DS_ASSETS_BACKFILL_DIR", os.path.join("data", "backfill-test"))


def read_json_lines(path, _client):
    return Dataset.from_json(path)


events = file_source("events", os.path.join(FOLDER, "in"), "*.json", read_json_lines)


@asset
def every_event(events: Dataset) -> Dataset:
    return events


defs = Definitions(
    assets=[events, every_event],
    resources={"io_manager": DatasetIOManager(base_dir=os.path.join(FOLDER, "data"))},
)
