"""Sensors on input that probing found mishandled: marker files matched by the data pattern,
cursors that are not the sensor's own, range keys the store could not hold, and cursor values
the database orders differently from Python. Real DagsterInstance, real SQLite."""

from __future__ import annotations

import datetime
import decimal

import pytest
import sqlalchemy as sa
from dagster import materialize

from ds_assets import new_rows_sensor, sql_source
from ds_assets.formats import sql
from ds_assets.formats.files import FileEntry
from ds_assets.formats.rows import format_bound, parse_bound
from ds_assets.sensors import file_tick
from resources import DatasetIOManager, SQLResource
from tests.sensor_driver import SensorDriver


def test_markers_the_data_pattern_matches_are_not_data_files():
    def shards(name: str) -> bool:  # webdataset_source's default pattern is *.tar*
        return ".tar" in name

    listing = [FileEntry(name, 1, "t") for name in ("a.tar", "a.tar.done", "b.tar")]
    ready, cursor = file_tick(listing, {}, shards, max_new=10, ready_marker=".done")
    assert ready == ["a.tar"] and cursor["pending"] == {"b.tar": "1:t"}
    names = ("a.tar.done", "b.tar", "b.tar.done")
    listing = [FileEntry(name, 1, "t") for name in names if name > cursor["after"]]
    ready, cursor = file_tick(listing, cursor, shards, max_new=10, ready_marker=".done")
    # nothing waits for a marker's own marker: the cursor moves past all of it
    assert ready == ["b.tar"] and cursor["pending"] == {} and not cursor.get("done")


def orders(tmp_path, rows) -> tuple[SQLResource, sa.Engine]:
    resource = SQLResource(url=f"sqlite:///{tmp_path / 'shop.sqlite'}")
    engine = resource.get_engine()
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE orders (id INTEGER, note TEXT)"))
        for row in rows:
            connection.execute(sa.text("INSERT INTO orders VALUES (:id, 'x')"), {"id": row})
    return resource, engine


@pytest.mark.parametrize(
    ("cursor", "problem"),
    [
        ("not json", "Expecting value"),
        ("[]", "a JSON object was expected"),
        ('{"high": 2}', "'high' is not a str"),
        ('{"high": "2026-01-01"}', "not supported between"),
    ],
)
def test_a_cursor_the_sensor_did_not_write_says_how_to_start_over(
    instance, tmp_path, cursor, problem
):
    resource, _ = orders(tmp_path, [1, 2])
    source = sql_source("orders", "orders", cursor_column="id")
    driver = SensorDriver(new_rows_sensor(source, settle_seconds=0), instance, [source],
                          {"sql": resource})  # fmt: skip
    with pytest.raises(Exception, match=rf"its cursor .* is not one it writes .*{problem}"):
        driver.tick(cursor=cursor)
    assert driver.tick(cursor="") == ["start..2"]  # reset: starts over


def test_negative_cursor_values_make_partitions_the_store_holds(instance, tmp_path):
    resource, _ = orders(tmp_path, [-5, -3, 2])
    source = sql_source("orders", "orders", cursor_column="id")
    sensor = new_rows_sensor(source, rows_per_partition=1, settle_seconds=0)
    driver = SensorDriver(sensor, instance, [source], {"sql": resource})
    assert driver.tick() == ["start..-5", "-5..-3", "-3..2"]
    resources = {"io_manager": DatasetIOManager(base_dir=str(tmp_path / "data")), "sql": resource}
    for key in driver.requested:
        assert materialize([source], resources=resources, instance=instance,
                           partition_key=key).success  # fmt: skip


def test_decimal_bounds_keep_their_type_through_keys():
    for text in ("0.0000001000000000000000000003", "1E+5", "0E-10", "-2.5"):
        value = decimal.Decimal(text)
        assert parse_bound(format_bound(value)) == value
        assert isinstance(parse_bound(format_bound(value)), decimal.Decimal)


def test_values_the_database_orders_apart_but_python_equal_are_an_error(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 't.sqlite'}")
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE t (c DATETIME)"))
        for value in ("2026-01-01 00:00:00", "2026-01-01T05:00:00", "2026-01-02 00:00:00"):
            connection.execute(sa.text("INSERT INTO t VALUES (:c)"), {"c": value})
    with pytest.raises(ValueError, match=r"column 'c': the database ranks the value .* mixed"):
        sql.new_row_ranges(engine, "t", "c", rows_per_range=1,
                           after=datetime.datetime(2026, 1, 1))  # fmt: skip
