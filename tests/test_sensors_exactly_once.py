"""Exactly once, under the conditions that broke it: a file at the head of the listing that
never completes, a daemon stopped between adding partitions and requesting runs, overlapping
SQL ticks while rows arrive, and a reset SQL cursor. Real DagsterInstance, real files and
SQLite/PostgreSQL tables."""

import json
import os

import pytest
import sqlalchemy as sa
from datasets import Dataset

from ds_assets import file_source, new_files_sensor, new_rows_sensor, sql_source
from ds_assets.sensors import ranges_beyond
from resources import SQLResource
from tests.sensor_driver import SensorDriver


def read_json_lines(path, _client):
    return Dataset.from_json(path)


def write(folder, name, text='{"id": 1}\n'):
    with open(os.path.join(folder, name), "w") as handle:
        handle.write(text)


@pytest.fixture
def incoming(tmp_path):
    folder = tmp_path / "incoming"
    folder.mkdir()
    return str(folder)


def test_an_upload_that_never_completes_does_not_stop_the_sensor(instance, incoming):
    write(incoming, "000000.json")  # its marker never comes
    source = file_source("events", incoming, "*.json", read_json_lines)
    sensor = new_files_sensor(source, ready_marker=".done", max_new_per_tick=10)
    driver = SensorDriver(sensor, instance, [source])
    number = 1
    for _ in range(12):
        names = [f"{number + i:06d}.json" for i in range(10)]
        number += 10
        for name in names:
            write(incoming, name)
            write(incoming, name + ".done", "")
        assert driver.tick() == names  # all ten, tick after tick
    cursor = json.loads(driver.cursor)
    assert "000000.json" in cursor["parked"]  # set aside, so the listing moved on
    assert len(cursor["done"]) <= 2 * 10 and cursor["after"] > "000100.json"
    write(incoming, "000000.json.done", "")
    assert driver.tick() == ["000000.json"]  # looked at again, on its own
    assert driver.tick() == [] and "parked" not in json.loads(driver.cursor)


def test_a_file_still_growing_at_the_head_among_sidecar_files(instance, incoming):
    source = file_source("events", incoming, "*.json", read_json_lines)
    driver = SensorDriver(new_files_sensor(source, max_new_per_tick=5), instance, [source])
    growing = '{"id": 0}\n'
    write(incoming, "000000.json", growing)
    number, taken = 1, []
    for _ in range(10):
        names = [f"{number + i:06d}.json" for i in range(5)]
        number += 5
        for name in names:
            write(incoming, name)
            write(incoming, name + ".md5", "x")  # sidecars the pattern does not take
            write(incoming, name + ".sha1", "y")
        growing += '{"id": 0}\n'
        write(incoming, "000000.json", growing)
        taken += driver.tick()
        growing += '{"id": 0}\n'
        write(incoming, "000000.json", growing)
        got = driver.tick()
        assert got == names  # seen twice with the same size: taken, five a tick
        taken += got
    assert driver.tick() == ["000000.json"]  # stopped growing: complete now
    assert sorted(taken + ["000000.json"]) == [f"{n:06d}.json" for n in range(51)]


@pytest.mark.parametrize("in_arrival_order", [True, False])
@pytest.mark.parametrize("marker", [None, ".done"])
def test_a_daemon_stopped_after_adding_partitions_requests_the_runs_next_tick(
    instance, incoming, in_arrival_order, marker
):
    source = file_source("events", incoming, "*.json", read_json_lines)
    sensor = new_files_sensor(source, names_in_arrival_order=in_arrival_order, ready_marker=marker)
    driver = SensorDriver(sensor, instance, [source])
    write(incoming, "a.json")
    if marker:
        write(incoming, "a.json" + marker, "")
    if not (marker and in_arrival_order):
        assert driver.tick() == []  # seen once (names in no order: even with its marker)
    driver.tick(stop_after_partitions=True)  # the partition is added, then the daemon stops
    assert instance.get_dynamic_partitions("events__files") == ["a.json"]
    assert driver.tick() == ["a.json"]  # from the cursor stored before: requested now
    assert driver.tick() == []


def sqlite_source(tmp_path, rows, rows_per_partition=10):
    resource = SQLResource(url=f"sqlite:///{tmp_path / 'shop.sqlite'}")
    with resource.get_engine().begin() as connection:
        connection.execute(sa.text("CREATE TABLE orders (id INTEGER PRIMARY KEY)"))
    insert(resource, rows)
    source = sql_source("orders", "orders", cursor_column="id")
    sensor = new_rows_sensor(source, rows_per_partition=rows_per_partition, settle_seconds=0)
    return resource, source, sensor


def insert(resource, ids):
    with resource.get_engine().begin() as connection:
        connection.execute(
            sa.text("INSERT INTO orders (id) VALUES (:id)"), [{"id": i} for i in ids]
        )


def test_overlapping_sql_ticks_while_rows_arrive_never_overlap(instance, tmp_path):
    resource, source, sensor = sqlite_source(tmp_path, [1, 2])
    driver = SensorDriver(sensor, instance, [source], {"sql": resource})
    assert driver.tick() == ["start..2"]
    first = driver.cursor
    insert(resource, [3])
    assert driver.tick(cursor=first) == ["2..3"]
    insert(resource, [4])
    assert driver.tick(cursor=first) == ["3..4"]  # a second tick from the same cursor
    assert instance.get_dynamic_partitions("orders__rows") == ["start..2", "2..3", "3..4"]


def test_a_daemon_stopped_after_adding_sql_partitions_requests_them_next_tick(instance, tmp_path):
    resource, source, sensor = sqlite_source(tmp_path, [1, 2, 3])
    driver = SensorDriver(sensor, instance, [source], {"sql": resource})
    driver.tick(stop_after_partitions=True)
    insert(resource, [4])  # rows keep arriving meanwhile
    assert driver.tick() == ["start..3", "3..4"]  # the lost request, then the new rows
    assert driver.tick() == []


def test_a_reset_sql_cursor_goes_on_after_the_ranges_taken(instance, tmp_path):
    resource, source, sensor = sqlite_source(tmp_path, range(1, 7), rows_per_partition=2)
    driver = SensorDriver(sensor, instance, [source], {"sql": resource})
    assert driver.tick() == ["start..2", "2..4", "4..6"]
    with resource.get_engine().begin() as connection:
        connection.execute(sa.text("DELETE FROM orders WHERE id = 1"))
    assert driver.tick(cursor="") == []  # nothing again, no shifted ranges
    insert(resource, [7, 8])
    assert driver.tick() == ["6..8"]
    assert instance.get_dynamic_partitions("orders__rows") == [
        "start..2", "2..4", "4..6", "6..8",
    ]  # fmt: skip


def test_ranges_beyond_a_cursor_keep_their_order_and_skip_other_keys():
    assert ranges_beyond(["9..12", "by-hand", "6..9"], 9) == (["9..12"], 12)
    assert ranges_beyond(["9..12", "6..9"], None) == (["6..9", "9..12"], 12)
    assert ranges_beyond([], 5) == ([], 5)
