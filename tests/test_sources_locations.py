"""Where file sources look and what they say when it fails: S3 errors that name the bucket and
key, S3 URL spellings, `**/` patterns, hidden files and unsafe keys, and cursor columns of a
type that cannot bound row ranges. Against a real S3 server (SeaweedFS) and real databases."""

import json
import logging
import os

import pytest
import sqlalchemy as sa
from botocore.stub import Stubber
from dagster import materialize
from dagster_aws.s3 import S3Resource
from datasets import Dataset

from ds_assets import (
    file_source,
    hdf5_source,
    new_files_sensor,
    new_rows_sensor,
    sql_source,
    xml_source,
)
from ds_assets.formats.files import list_files, local_copy, pattern_matcher
from ds_assets.formats.sql import highest_cursor_value, new_row_ranges
from ds_assets.formats.webdataset import parse as parse_shards
from ds_assets.storage.s3_errors import S3AccessError, S3BucketNotFoundError
from resources import DatasetIOManager, SQLResource
from tests.sensor_driver import SensorDriver


def read_json_lines(path, _client):
    return Dataset.from_json(path)


def chain_text(error: BaseException) -> str:
    """Every message of an error and its causes (Dagster wraps the asset's own error)."""
    texts = []
    while error is not None:
        texts.append(str(error))
        error = error.__cause__ or error.__context__
    return "\n".join(texts)


def s3_resource(server, secret=None):
    return S3Resource(
        endpoint_url=server.endpoint, aws_access_key_id=server.access_key,
        aws_secret_access_key=secret or server.secret_key, region_name="us-east-1",
    )  # fmt: skip


def put(client, bucket, key, body=b'{"id": 1}\n'):
    client.put_object(Bucket=bucket, Key=key, Body=body)


def run_partition(source, key, instance, tmp_path, resources):
    instance.add_dynamic_partitions(source.partitions_def.name, [key])
    everything = {"io_manager": DatasetIOManager(base_dir=str(tmp_path / "data")), **resources}
    return materialize([source], resources=everything, instance=instance, partition_key=key)


# -- S3 errors name the bucket and the key ---------------------------------------------------


def test_a_missing_bucket_fails_the_tick_naming_it_rather_than_waiting(instance, seaweedfs):
    source = file_source("events", "s3://no-such-bucket-here/in", "*.json", read_json_lines)
    driver = SensorDriver(new_files_sensor(source), instance, [source],
                          {"s3": s3_resource(seaweedfs)})  # fmt: skip
    with pytest.raises(Exception) as raised:
        driver.tick()
    assert "s3://no-such-bucket-here: no such bucket" in chain_text(raised.value)
    with pytest.raises(S3BucketNotFoundError, match="s3://no-such-bucket-here"):
        list(list_files("s3://no-such-bucket-here/in", s3_client=seaweedfs.client()))


def test_an_object_gone_before_its_run_is_named_by_its_url(instance, seaweedfs, s3_bucket,
                                                           tmp_path):  # fmt: skip
    source = file_source("events", f"s3://{s3_bucket}/in", "*.json", read_json_lines)
    with pytest.raises(Exception) as raised:
        run_partition(source, "gone.json", instance, tmp_path, {"s3": s3_resource(seaweedfs)})
    assert f"s3://{s3_bucket}/in/gone.json: not found" in chain_text(raised.value)
    gone = local_copy(f"s3://{s3_bucket}/in", "gone.json", seaweedfs.client())
    with pytest.raises(FileNotFoundError, match=f"s3://{s3_bucket}/in/gone.json"), gone:
        pass


def test_a_wrong_secret_is_an_access_error_naming_the_location(seaweedfs, s3_bucket):
    put(seaweedfs.client(), s3_bucket, "in/a.json")
    wrong = seaweedfs.client(secret="not-the-secret")
    with pytest.raises(S3AccessError, match=rf"s3://{s3_bucket}/in/.*check the access key"):
        list(list_files(f"s3://{s3_bucket}/in", s3_client=wrong))
    refused = local_copy(f"s3://{s3_bucket}/in", "a.json", wrong)
    with pytest.raises(S3AccessError, match=rf"s3://{s3_bucket}/in/a.json"), refused:
        pass
    with pytest.raises(S3AccessError, match=rf"s3://{s3_bucket}/in/a.json"):
        parse_shards(f"s3://{s3_bucket}/in/a.json", s3_client=wrong)


def test_no_credentials_at_all_is_an_access_error_that_says_so(seaweedfs, s3_bucket,
                                                               monkeypatch, tmp_path):  # fmt: skip
    import boto3

    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                     "AWS_PROFILE"):  # fmt: skip
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    anonymous = boto3.Session().client("s3", endpoint_url=seaweedfs.endpoint,
                                       region_name="us-east-1")  # fmt: skip
    with pytest.raises(S3AccessError, match=rf"s3://{s3_bucket}/in/: .*credentials"):
        list(list_files(f"s3://{s3_bucket}/in", s3_client=anonymous))


def test_a_webdataset_shard_in_a_missing_bucket_is_not_a_missing_file(seaweedfs):
    with pytest.raises(S3BucketNotFoundError, match="s3://no-such-bucket-here"):
        parse_shards("s3://no-such-bucket-here/shard-000.tar", s3_client=seaweedfs.client())


def test_read_errors_of_s3_files_name_the_url_not_the_download(instance, seaweedfs, s3_bucket,
                                                               tmp_path):  # fmt: skip
    client = seaweedfs.client()
    put(client, s3_bucket, "in/bad.xml", b"<orders><order>tea</orders>")
    put(client, s3_bucket, "in/bad.h5", b"not HDF5 at all")
    resources = {"s3": s3_resource(seaweedfs)}
    for source, name in ((xml_source("orders", f"s3://{s3_bucket}/in", row_tag="order"),
                          "bad.xml"),
                         (hdf5_source("scans", f"s3://{s3_bucket}/in"), "bad.h5")):  # fmt: skip
        with pytest.raises(Exception) as raised:
            run_partition(source, name, instance, tmp_path, resources)
        message = chain_text(raised.value)
        assert f"s3://{s3_bucket}/in/{name}" in message
        assert "ds-assets-source-" not in message  # the temporary download's folder


# -- S3 URL spellings ------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["S3", "s3a", "S3N"])
def test_other_spellings_of_s3_urls_read_s3(instance, seaweedfs, s3_bucket, tmp_path, scheme):
    put(seaweedfs.client(), s3_bucket, "in/a.json")
    source = file_source("events", f"{scheme}://{s3_bucket}/in", "*.json", read_json_lines)
    driver = SensorDriver(new_files_sensor(source), instance, [source],
                          {"s3": s3_resource(seaweedfs)})  # fmt: skip
    driver.tick()
    assert driver.tick() == ["a.json"]
    assert run_partition(source, "a.json", instance, tmp_path,
                         {"s3": s3_resource(seaweedfs)}).success  # fmt: skip


def test_a_url_of_another_scheme_is_refused_at_definition():
    with pytest.raises(ValueError, match=r"gs://ml/in.*expected a local folder or an s3://"):
        file_source("events", "gs://ml/in", "*.json", read_json_lines)


# -- patterns, hidden files and unsafe keys --------------------------------------------------


def test_a_globstar_pattern_also_matches_files_at_the_top(instance, tmp_path):
    folder = tmp_path / "incoming"
    for name in ("a.xml", "2026/01/b.xml", "2026/notes.txt"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("<r/>")
    source = file_source("docs", str(folder), "**/*.xml", read_json_lines)
    driver = SensorDriver(new_files_sensor(source), instance, [source])
    driver.tick()
    assert driver.tick() == ["2026/01/b.xml", "a.xml"]
    assert [e.name for e in list_files(str(folder), "**/*.xml")] == ["2026/01/b.xml", "a.xml"]


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("**/*.xml", "a.xml", True),
        ("**/*.xml", "x/y/a.xml", True),
        ("in/**/a.xml", "in/a.xml", True),
        ("in/**/a.xml", "in/x/y/a.xml", True),
        ("in/**/a.xml", "ina.xml", False),
        ("**/in/**/*.xml", "in/a.xml", True),
        ("**/in/**/*.xml", "x/in/y/a.xml", True),
        ("x**/*.xml", "a.xml", False),  # `**/` only after a `/` or at the start
        ("*.xml", "a/b.xml", True),  # `*` crosses folders, as it always did
    ],
)
def test_pattern_matching(pattern, name, expected):
    assert pattern_matcher(pattern)(name) is expected


def test_hidden_files_in_s3_subfolders_are_left_out_as_on_disk(seaweedfs, s3_bucket, tmp_path):
    names = ["in/a.json", "in/sub/.part.json", "in/.cache/b.json", "in/sub/c.json"]
    for name in names:
        put(seaweedfs.client(), s3_bucket, name)
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    on_s3 = list_files(f"s3://{s3_bucket}/in", s3_client=seaweedfs.client())
    on_disk = list_files(str(tmp_path / "in"))
    assert [e.name for e in on_s3] == [e.name for e in on_disk] == ["a.json", "sub/c.json"]


def test_s3_keys_that_cannot_be_file_names_are_skipped_with_a_warning(caplog):
    # SeaweedFS refuses keys with `..` and folds `//`, which AWS S3 keeps: botocore's Stubber
    # (checked against the real API model) stands in for a server that holds such keys
    import boto3

    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="k",
                          aws_secret_access_key="s")  # fmt: skip
    keys = ["in/../etc/passwd.json", "in/a//b.json", "in/./c.json", "in/d.json"]
    with Stubber(client) as stub:
        stub.add_response(
            "list_objects_v2",
            {"Contents": [{"Key": key, "Size": 3, "ETag": '"e"'} for key in keys]},
            {"Bucket": "ml", "Prefix": "in/"},
        )
        with caplog.at_level(logging.WARNING, logger="ds_assets.formats.files"):
            listed = [e.name for e in list_files("s3://ml/in", s3_client=client)]
    assert listed == ["d.json"]
    warned = "\n".join(record.getMessage() for record in caplog.records)
    for key in keys[:3]:
        assert f"s3://ml/{key}: skipped" in warned


# -- cursor columns ----------------------------------------------------------------------------


def test_a_text_cursor_column_is_refused_at_the_first_tick_of_an_empty_table(instance, sqlite):
    with sqlite.begin() as connection:
        connection.execute(sa.text("CREATE TABLE notes (name TEXT, body TEXT)"))
    url = str(sqlite.url)
    source = sql_source("notes", "notes", cursor_column="name")
    driver = SensorDriver(new_rows_sensor(source, settle_seconds=0), instance, [source],
                          {"sql": SQLResource(url=url)})  # fmt: skip
    with pytest.raises(Exception) as raised:
        driver.tick()
    assert "cursor column 'name' is" in chain_text(raised.value)
    assert "integers, decimals, floats, dates or timestamps" in chain_text(raised.value)


def test_a_uuid_cursor_column_on_postgresql_is_refused(postgresql):
    table = f"uuids_{os.getpid()}"
    with postgresql.begin() as connection:
        connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        connection.execute(sa.text(f"CREATE TABLE {table} (id uuid, n integer)"))
    try:
        for call in (highest_cursor_value, new_row_ranges):
            with pytest.raises(TypeError, match=rf"{table}.*cursor column 'id' is UUID"):
                call(postgresql, table, "id")
        assert highest_cursor_value(postgresql, table, "n") is None  # integers still do
    finally:
        with postgresql.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE {table}"))


def test_an_untyped_sqlite_column_holding_text_fails_naming_the_column(instance, sqlite):
    with sqlite.begin() as connection:
        connection.execute(sa.text("CREATE TABLE loose (stamp)"))
        connection.execute(sa.text("INSERT INTO loose VALUES ('not a number')"))
    source = sql_source("loose", "loose", cursor_column="stamp")
    driver = SensorDriver(new_rows_sensor(source, settle_seconds=0), instance, [source],
                          {"sql": SQLResource(url=str(sqlite.url))})  # fmt: skip
    with pytest.raises(Exception) as raised:
        driver.tick()
    assert "table loose, column 'stamp'" in chain_text(raised.value)


def test_json_rows_still_read_from_s3_after_all_this(instance, seaweedfs, s3_bucket, tmp_path):
    body = "".join(json.dumps({"id": i}) + "\n" for i in range(3)).encode()
    put(seaweedfs.client(), s3_bucket, "in/x/rows.json", body)
    source = file_source("events", f"s3://{s3_bucket}/in", "**/*.json", read_json_lines)
    assert run_partition(source, "x/rows.json", instance, tmp_path,
                         {"s3": s3_resource(seaweedfs)}).success  # fmt: skip
    stored = Dataset.load_from_disk(str(tmp_path / "data" / "events" / "x%2Frows.json"))
    assert stored["id"][:] == [0, 1, 2]
