"""File sources and `new_files_sensor` against a real DagsterInstance, local folders and S3."""

import json
import os

import pytest
from dagster import Definitions, asset, build_sensor_context, materialize
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from dagster_aws.s3 import S3Resource
from datasets import Dataset

from ds_assets import file_source, new_files_sensor
from ds_assets.formats.files import FileEntry, list_files
from ds_assets.sensors import file_tick
from resources import DatasetIOManager
from tests.sensor_driver import SensorDriver


def read_json_lines(path, _client):
    return Dataset.from_json(path)


def write_rows(folder, name, ids):
    path = os.path.join(folder, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.writelines(json.dumps({"id": i}) + "\n" for i in ids)


@pytest.fixture
def incoming(tmp_path):
    folder = tmp_path / "incoming"
    folder.mkdir()
    return str(folder)


def entries(*items):
    return [FileEntry(name, size, "t") for name, size in items]


def matches_json(name):
    return name.endswith(".json")


def test_a_file_is_ready_once_its_size_is_stable_across_two_ticks():
    ready, cursor = file_tick(entries(("a.json", 5)), {}, matches_json, max_new=10,
                              ready_marker=None)  # fmt: skip
    assert ready == [] and cursor["after"] is None
    ready, cursor = file_tick(entries(("a.json", 9)), cursor, matches_json, max_new=10,
                              ready_marker=None)  # still growing  # fmt: skip
    assert ready == []
    ready, cursor = file_tick(entries(("a.json", 9)), cursor, matches_json, max_new=10,
                              ready_marker=None)  # fmt: skip
    assert ready == ["a.json"] and cursor == {"after": "a.json", "pending": {}, "done": []}


def test_a_marker_file_makes_a_file_ready_and_the_cursor_waits_for_gaps():
    listing = entries(("a.json", 1), ("a.json.done", 0), ("b.json", 1), ("c.json", 1),
                      ("c.json.done", 0))  # fmt: skip
    ready, cursor = file_tick(listing, {}, matches_json, max_new=10, ready_marker=".done")
    assert ready == ["a.json", "c.json"]
    assert cursor["after"] == "a.json.done"  # b.json is not complete: look again from there
    assert cursor["done"] == ["c.json"]
    listing = entries(("b.json", 1), ("b.json.done", 0), ("c.json", 1), ("c.json.done", 0))
    ready, cursor = file_tick(listing, cursor, matches_json, max_new=10, ready_marker=".done")
    assert ready == ["b.json"]
    assert cursor == {"after": "c.json.done", "pending": {}, "done": []}


def test_at_most_max_new_per_tick_and_the_rest_next_tick():
    listing = entries(*[(f"{i:03d}.json", 1) for i in range(5)])
    _, cursor = file_tick(listing, {}, matches_json, max_new=2, ready_marker=None)
    first, cursor = file_tick(listing, cursor, matches_json, max_new=2, ready_marker=None)
    second, cursor = file_tick(listing[2:], cursor, matches_json, max_new=2, ready_marker=None)
    assert first == ["000.json", "001.json"] and second == ["002.json", "003.json"]


def test_sensor_picks_up_each_file_once_across_ticks_restarts_and_overlaps(instance, incoming):
    source = file_source("events", incoming, "*.json", read_json_lines)
    driver = SensorDriver(new_files_sensor(source), instance, [source])
    write_rows(incoming, "2026/01.json", [1, 2])
    write_rows(incoming, "2026/02.json", [3])
    assert driver.tick() == []  # seen once: not known to be complete yet
    overlapping_cursor = driver.cursor
    assert driver.tick() == ["2026/01.json", "2026/02.json"]
    assert driver.tick(cursor=overlapping_cursor) == []  # an overlapping tick adds nothing
    with open(os.path.join(incoming, "2026", "03.json"), "w") as half:
        half.write('{"id": 4}\n')  # still being written
        half.flush()
        assert driver.tick() == []
        half.write('{"id": 5}\n')
        half.flush()
        assert driver.tick() == []  # grew since the last tick
    restarted = SensorDriver(new_files_sensor(source), instance, [source])
    restarted.cursor = driver.cursor  # a daemon restart resumes from the stored cursor
    assert restarted.tick() == ["2026/03.json"]
    assert restarted.tick(cursor="") == []  # even a reset cursor re-adds nothing
    assert instance.get_dynamic_partitions("events__files") == [
        "2026/01.json", "2026/02.json", "2026/03.json",
    ]  # fmt: skip


def test_names_in_no_order_are_each_picked_up_once_when_the_sensor_is_told(instance, incoming):
    source = file_source("events", incoming, "*.json", read_json_lines)
    ordered = SensorDriver(new_files_sensor(source), instance, [source])
    unordered = SensorDriver(
        new_files_sensor(
            source, name="any_order", names_in_arrival_order=False, max_new_per_tick=2
        ),
        instance,
        [source],
    )
    write_rows(incoming, "7f3a.json", [1])
    write_rows(incoming, "c210.json", [2])
    assert ordered.tick() == [] and ordered.tick() == ["7f3a.json", "c210.json"]
    write_rows(incoming, "0b9e.json", [3])  # arrives later, sorts first
    write_rows(incoming, "e5d1.json", [4])
    assert ordered.tick() == [] and ordered.tick() == ["e5d1.json"]  # 0b9e.json is missed
    assert ordered.tick() == []

    assert unordered.tick() == []  # what the instance lacks: 0b9e.json, seen once
    assert unordered.tick() == ["0b9e.json"]
    write_rows(incoming, "0001.json", [5])
    write_rows(incoming, "0002.json", [6])
    write_rows(incoming, "0003.json", [7])
    assert unordered.tick() == []
    assert unordered.tick() == ["0001.json", "0002.json"]  # at most two per tick
    assert unordered.tick() == ["0003.json"]
    assert unordered.tick() == [] and unordered.tick(cursor="") == []  # nothing twice
    assert sorted(instance.get_dynamic_partitions("events__files")) == [
        "0001.json", "0002.json", "0003.json", "0b9e.json", "7f3a.json", "c210.json", "e5d1.json",
    ]  # fmt: skip


def test_ten_thousand_old_files_and_three_new_ones(instance, incoming):
    for number in range(10_000):
        open(os.path.join(incoming, f"{number:06d}.json"), "w").close()
    source = file_source("events", incoming, "*.json", read_json_lines)
    driver = SensorDriver(new_files_sensor(source, max_new_per_tick=100), instance, [source])
    driver.cursor = json.dumps({"after": "009999.json"})  # everything before was taken
    for number in range(10_000, 10_003):
        write_rows(incoming, f"{number:06d}.json", [number])
    assert driver.tick() == []
    assert driver.tick() == ["010000.json", "010001.json", "010002.json"]
    assert [e.name for e in list_files(incoming, "*.json", after="009999.json")] == [
        "010000.json", "010001.json", "010002.json",
    ]  # fmt: skip


def test_requested_partitions_materialize_and_backfill_in_one_run(instance, incoming, tmp_path):
    source = file_source("events", incoming, "*.json", read_json_lines)
    driver = SensorDriver(new_files_sensor(source), instance, [source])
    for number in range(3):
        write_rows(incoming, f"{number}.json", [number * 10, number * 10 + 1])
    driver.tick()
    keys = driver.tick()
    seen = {}

    @asset
    def everything(events: Dataset) -> None:
        seen["ids"] = sorted(events["id"][:])

    resources = {"io_manager": DatasetIOManager(base_dir=str(tmp_path / "data"))}
    tags = {ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]}
    result = materialize([source], resources=resources, instance=instance, tags=tags)
    assert result.success
    assert len(instance.get_run_records()) == 1  # one run for the whole backfill
    assert materialize([source, everything], resources=resources, instance=instance,
                       selection=[everything]).success  # fmt: skip
    assert seen["ids"] == [0, 1, 10, 11, 20, 21]


def test_s3_source_lists_after_the_cursor_and_reads_objects(instance, seaweedfs, s3_bucket,
                                                           tmp_path):  # fmt: skip
    client = seaweedfs.client()
    for number in range(5):
        body = "".join(json.dumps({"id": i}) + "\n" for i in range(number + 1))
        client.put_object(Bucket=s3_bucket, Key=f"in/{number:03d}.json", Body=body.encode())
    s3 = S3Resource(
        endpoint_url=seaweedfs.endpoint, aws_access_key_id=seaweedfs.access_key,
        aws_secret_access_key=seaweedfs.secret_key, region_name="us-east-1",
    )  # fmt: skip
    source = file_source("events", f"s3://{s3_bucket}/in", "*.json", read_json_lines)
    driver = SensorDriver(new_files_sensor(source), instance, [source], {"s3": s3})
    driver.cursor = json.dumps({"after": "002.json"})
    client_events = []

    def record(params, **_):
        client_events.append(params.get("StartAfter"))

    real_client = s3.get_client()
    real_client.meta.events.register("provide-client-params.s3.ListObjectsV2", record)
    listing = list_files(f"s3://{s3_bucket}/in", "*.json", after="002.json", s3_client=real_client)
    assert [entry.name for entry in listing] == ["003.json", "004.json"]
    assert client_events == ["in/002.json"]
    driver.tick()
    listed = driver.tick()
    assert listed == ["003.json", "004.json"]
    resources = {"io_manager": DatasetIOManager(base_dir=str(tmp_path / "data")), "s3": s3}
    assert materialize([source], resources=resources, instance=instance,
                       partition_key="004.json").success  # fmt: skip
    stored = Dataset.load_from_disk(str(tmp_path / "data" / "events" / "004.json"))
    assert stored["id"][:] == [0, 1, 2, 3, 4]


def sql_resource(url):
    from resources import SQLResource

    return SQLResource(url=url)


def insert(engine, table, rows):
    import sqlalchemy as sa

    with engine.begin() as connection:
        connection.execute(sa.text(f"INSERT INTO {table} (id, note) VALUES (:id, :note)"),
                           [{"id": i, "note": f"row {i}"} for i in rows])  # fmt: skip


def test_new_rows_become_fixed_ranges_picked_up_once(instance, tmp_path):
    import sqlalchemy as sa

    from ds_assets import new_rows_sensor, sql_source

    resource = sql_resource(f"sqlite:///{tmp_path / 'shop.sqlite'}")
    engine = resource.get_engine()
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT)"))
    insert(engine, "orders", range(1, 8))
    source = sql_source("orders", "orders", cursor_column="id")
    sensor = new_rows_sensor(
        source, rows_per_partition=3, max_partitions_per_tick=2, settle_seconds=0
    )
    driver = SensorDriver(sensor, instance, [source], {"sql": resource})
    before = driver.cursor or ""  # no cursor yet
    assert driver.tick() == ["start..3", "3..6"]  # at most two ranges per tick
    # an overlapping tick (from the cursor before) goes on after the ranges added, never over
    assert driver.tick(cursor=before) == ["6..7"]
    assert driver.tick() == []
    insert(engine, "orders", [8, 9])
    restarted = SensorDriver(sensor, instance, [source], {"sql": resource})
    restarted.cursor = driver.cursor
    assert restarted.tick() == ["7..9"]

    resources = {"io_manager": DatasetIOManager(base_dir=str(tmp_path / "data")), "sql": resource}
    assert materialize([source], resources=resources, instance=instance,
                       partition_key="3..6").success  # fmt: skip
    insert(engine, "orders", [10])
    assert materialize([source], resources=resources, instance=instance,
                       partition_key="3..6").success  # fmt: skip
    stored = Dataset.load_from_disk(str(tmp_path / "data" / "orders" / "3..6"))
    assert stored["id"][:] == [4, 5, 6]  # the same rows, whatever arrived since


def test_timestamp_cursor_on_postgresql(instance, tmp_path):
    import datetime

    import sqlalchemy as sa

    from ds_assets import new_rows_sensor, sql_source

    resource = sql_resource("postgresql+psycopg2://postgres@127.0.0.1:5432/test")
    engine = resource.get_engine()
    table = f"events_{os.getpid()}_{id(tmp_path) % 100000}"
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(f"CREATE TABLE {table} (at TIMESTAMPTZ, note TEXT)"))
            start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
            connection.execute(
                sa.text(f"INSERT INTO {table} VALUES (:at, :note)"),
                [{"at": start + datetime.timedelta(hours=h), "note": f"h{h}"} for h in range(5)],
            )
    except sa.exc.OperationalError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 is not reachable: {error}")
    try:
        source = sql_source("events", table, cursor_column="at")
        sensor = new_rows_sensor(source, rows_per_partition=2, settle_seconds=0)
        driver = SensorDriver(sensor, instance, [source], {"sql": resource})
        keys = driver.tick()
        assert keys == [
            "start..2026-01-01T01:00:00+00:00",
            "2026-01-01T01:00:00+00:00..2026-01-01T03:00:00+00:00",
            "2026-01-01T03:00:00+00:00..2026-01-01T04:00:00+00:00",
        ]
        resources = {"io_manager": DatasetIOManager(base_dir=str(tmp_path / "data")),
                     "sql": resource}  # fmt: skip
        assert materialize([source], resources=resources, instance=instance,
                           partition_key=keys[1]).success  # fmt: skip
        event = instance.get_latest_materialization_event(source.key)
        assert event.asset_materialization.metadata["dagster/row_count"].value == 2
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))


def test_a_cursor_value_settles_once_it_has_been_the_highest_long_enough():
    from ds_assets.sensors import settled_bound

    assert settled_bound([], None, now=5.0, settle_seconds=60) == (None, [])  # no rows yet
    assert settled_bound([], 7, now=5.0, settle_seconds=0) == (7, [[5.0, "7"]])
    seen = [[0.0, "1"], [10.0, "2"], [20.0, "3"]]
    # 2 was the highest 60 s ago: settled; older observations are dropped, newer ones kept
    assert settled_bound(seen, 4, now=75.0, settle_seconds=60) == (
        2, [[10.0, "2"], [20.0, "3"], [75.0, "4"]]
    )  # fmt: skip
    # a highest value seen again keeps the time it was first seen
    assert settled_bound([[0.0, "5"]], 5, now=30.0, settle_seconds=60) == (None, [[0.0, "5"]])
    assert settled_bound([[0.0, "5"]], 5, now=60.0, settle_seconds=60) == (5, [[0.0, "5"]])
    stamp = "2026-01-01T00:00:00+00:00"
    through, _ = settled_bound([[0.0, stamp]], None, now=90.0, settle_seconds=60)
    assert through.isoformat() == stamp and through.tzinfo is not None


@pytest.mark.parametrize("server", ["postgresql", "mariadb"])
def test_a_row_committed_after_a_higher_one_is_still_picked_up(instance, tmp_path, server):
    """Ids come from the table's sequence when a transaction inserts, so a slow transaction
    commits id 1 after id 2 is visible: a range up to 2 taken at once would miss row 1 for
    good. `settle_seconds` waits until 2 has been the highest that long."""
    import time

    import sqlalchemy as sa

    from ds_assets import new_rows_sensor, sql_source
    from ds_assets.sensors import new_range_keys
    from tests.sql_servers import server_engine

    engine = server_engine(server)
    resource = sql_resource(engine.url.render_as_string(hide_password=False))
    table = f"notes_{os.getpid()}_{id(tmp_path) % 100000}"
    key = "id SERIAL PRIMARY KEY" if server == "postgresql" else "id INT AUTO_INCREMENT PRIMARY KEY"
    add = sa.text(f"INSERT INTO {table} (note) VALUES (:note)")
    with engine.begin() as connection:
        connection.execute(sa.text(f"CREATE TABLE {table} ({key}, note TEXT)"))
    slow = engine.connect()
    try:
        transaction = slow.begin()
        slow.execute(add, {"note": "slow"})  # id 1, not committed yet
        with engine.begin() as connection:
            connection.execute(add, {"note": "fast"})  # id 2, committed
        assert new_range_keys(engine, table, "id") == (["start..2"], 2)  # row 1 not visible

        source = sql_source("notes", table, cursor_column="id")
        sensor = new_rows_sensor(source, settle_seconds=0.5)
        driver = SensorDriver(sensor, instance, [source], {"sql": resource})
        assert driver.tick() == []  # 2 is the highest from now on
        transaction.commit()
        time.sleep(0.6)
        assert driver.tick() == ["start..2"]
        with engine.begin() as connection:
            connection.execute(add, {"note": "later"})
        assert driver.tick() == []  # 3 is seen, not settled
        time.sleep(0.6)
        assert driver.tick() == ["2..3"]

        resources = {"io_manager": DatasetIOManager(base_dir=str(tmp_path / "data")),
                     "sql": resource}  # fmt: skip
        assert materialize([source], resources=resources, instance=instance,
                           partition_key="start..2").success  # fmt: skip
        stored = Dataset.load_from_disk(str(tmp_path / "data" / "notes" / "start..2"))
        assert stored.sort("id")[:] == {"id": [1, 2], "note": ["slow", "fast"]}
    finally:
        slow.close()
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


def test_a_missing_folder_is_skipped_with_its_name(instance, tmp_path):
    source = file_source("events", str(tmp_path / "not_yet"), "*.json", read_json_lines)
    sensor = new_files_sensor(source)
    definitions = Definitions(assets=[source], sensors=[sensor])
    data = sensor.evaluate_tick(build_sensor_context(instance=instance, definitions=definitions))
    assert not data.run_requests and "not_yet does not exist" in data.skip_message


def run_partition(source, key, instance, tmp_path, **resources):
    everything = {"io_manager": DatasetIOManager(base_dir=str(tmp_path / "data")), **resources}
    instance.add_dynamic_partitions(source.partitions_def.name, [key])
    assert materialize([source], resources=everything, instance=instance,
                       partition_key=key).success  # fmt: skip
    return Dataset.load_from_disk(str(tmp_path / "data" / source.key.path[-1] / key))


def test_xml_hdf5_and_webdataset_sources_read_their_files(instance, incoming, tmp_path):
    import io
    import tarfile

    import h5py
    import numpy as np

    from ds_assets import hdf5_source, webdataset_source, xml_source

    with open(os.path.join(incoming, "day1.xml"), "w") as handle:
        handle.write('<orders><order id="7"><item>tea</item></order></orders>')
    orders = xml_source("orders", incoming, row_tag="order")
    assert run_partition(orders, "day1.xml", instance, tmp_path)[:] == {
        "id": ["7"], "item": ["tea"],
    }  # fmt: skip

    with h5py.File(os.path.join(incoming, "scan.h5"), "w") as handle:
        handle["x"] = np.arange(6, dtype="int32").reshape(3, 2)
    scans = hdf5_source("scans", incoming)
    assert run_partition(scans, "scan.h5", instance, tmp_path)["x"][:] == [[0, 1], [2, 3], [4, 5]]

    with tarfile.open(os.path.join(incoming, "shard-000.tar"), "w") as tar:
        for name, body in (("a.txt", b"first"), ("a.cls", b"1"), ("b.txt", b"second"),
                           ("b.cls", b"0")):  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    shards = webdataset_source("shards", incoming)
    stored = run_partition(shards, "shard-000.tar", instance, tmp_path)
    assert stored["__key__"][:] == ["a", "b"] and stored["txt"][:] == ["first", "second"]
    assert stored["cls"][:] == [1, 0]


def test_declared_features_are_part_of_each_sources_code_version():
    from datasets import Features, Value

    from ds_assets import hdf5_source, sql_source, webdataset_source, xml_source

    as_text, as_number = (Features({"a": Value(kind)}) for kind in ("string", "int32"))
    for factory in (
        lambda features: xml_source("o", "incoming", features=features),
        lambda features: hdf5_source("o", "incoming", features=features),
        lambda features: webdataset_source("o", "incoming", features=features),
        lambda features: sql_source("o", "orders", features=features),
    ):
        versions = [factory(features).code_versions_by_key for features in (as_text, as_number)]
        assert versions[0] != versions[1]
        assert factory(as_text).code_versions_by_key == versions[0]  # and stable
