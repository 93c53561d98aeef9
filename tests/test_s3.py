"""S3 specifics on a real S3 server (SeaweedFS on loopback)."""

from __future__ import annotations

import os

import pytest
from datasets import DatasetDict, IterableDataset

from ds_assets.storage.s3 import S3AccessError, S3Store
from tests.datasets_factory import table_dataset


class RequestLog:
    """Records the S3 operations a client sends, through botocore's event hooks."""

    def __init__(self, client):
        self.calls: list[tuple[str, str]] = []
        client.meta.events.register("provide-client-params.s3.*", self._record)

    def _record(self, params, event_name, **_):
        self.calls.append((event_name.rsplit(".", 1)[-1], params.get("Key", "")))

    def data_reads(self) -> list[str]:
        return [key for op, key in self.calls if op == "GetObject" and key.endswith(".arrow")]


def test_multi_shard_upload_then_cached_load(seaweedfs, s3_bucket, isolated_cache):
    client = seaweedfs.client()
    store = S3Store(client, s3_bucket, "team/ds")
    manifest = store.save(("big",), table_dataset(20_000), max_shard_size="50KB").manifest
    assert manifest.num_shards > 3
    log = RequestLog(client)
    first = store.load(("big",))
    assert len(log.data_reads()) == manifest.num_shards
    assert first["id"][:] == list(range(20_000))
    second = store.load(("big",))
    assert len(log.data_reads()) == manifest.num_shards  # the cache served it
    assert second["text"][-1] == "t19999"
    cached = isolated_cache / "s3" / s3_bucket / "team" / "ds" / "big" / manifest.version
    assert len([n for n in os.listdir(cached) if n.endswith(".arrow")]) == manifest.num_shards


def test_new_version_is_downloaded_and_stale_cache_dropped(seaweedfs, s3_bucket, isolated_cache):
    store = S3Store(seaweedfs.client(), s3_bucket, "p")
    old = store.save(("ds",), table_dataset(5)).manifest
    store.load(("ds",))
    cached = isolated_cache / "s3" / s3_bucket / "p" / "ds"
    os.utime(cached / old.version, (0, 0))  # untouched for long: stale
    new = store.save(("ds",), table_dataset(7)).manifest
    assert len(store.load(("ds",))) == 7
    assert os.listdir(cached) == [new.version]


def test_streaming_load_downloads_nothing(seaweedfs, s3_bucket, isolated_cache):
    client = seaweedfs.client()
    store = S3Store(client, s3_bucket, "p")
    store.save(("ds",), table_dataset(3_000), max_shard_size="20KB")
    stream = store.load(("ds",), "IterableDataset")
    assert isinstance(stream, IterableDataset)
    assert sum(1 for _ in stream) == 3_000
    assert not (isolated_cache / "s3").exists()


def test_old_versions_are_deleted_but_the_previous_is_kept(seaweedfs, s3_bucket):
    client = seaweedfs.client()
    store = S3Store(client, s3_bucket, "p")
    versions = [store.save(("ds",), table_dataset(n)).manifest.version for n in (1, 2, 3)]
    response = client.list_objects_v2(Bucket=s3_bucket, Prefix="p/ds/v-")
    stored_versions = {item["Key"].split("/")[2][2:] for item in response["Contents"]}
    assert stored_versions == set(versions[1:])
    assert store.manifest(("ds",)).previous == versions[1]


def test_a_save_deletes_day_old_orphans_of_killed_saves_but_not_pinned_or_recent_ones(
    seaweedfs, s3_bucket
):
    from ds_assets.storage.layout import new_version

    client = seaweedfs.client()
    store = S3Store(client, s3_bucket, "p")
    first = store.save(("ds",), table_dataset(1)).manifest.version
    old, pinned, recent = "20200101T000000000000-dead0001", "20200101T000000000000-dead0002", (
        new_version()
    )  # fmt: skip
    for version in (old, pinned, recent):  # what saves killed before their commit leave
        client.put_object(Bucket=s3_bucket, Key=f"p/ds/v-{version}/data.arrow", Body=b"x")
    client.put_object(Bucket=s3_bucket, Key=f"p/ds/.pins/v-{pinned}/p/other", Body=b"")
    client.put_object(Bucket=s3_bucket, Key="p/ds/not-a-version/keep.txt", Body=b"")
    second = store.save(("ds",), table_dataset(2)).manifest.version
    assert stored_versions(client, s3_bucket, "p/ds/") == {first, second, pinned, recent}
    assert "not-a-version/keep.txt" in keys_under(client, s3_bucket, "p/ds/")
    assert store.load(("ds",))["id"][:] == [0, 1]


def test_wrong_credentials_give_a_clear_error_and_write_nothing(seaweedfs, s3_bucket):
    bad = S3Store(seaweedfs.client(secret="wrong-secret"), s3_bucket, "p")
    with pytest.raises(S3AccessError, match=rf"s3://{s3_bucket}/p/ds.*check the access key"):
        bad.save(("ds",), table_dataset(10))
    assert "Contents" not in seaweedfs.client().list_objects_v2(Bucket=s3_bucket)
    stream = table_dataset(10).to_iterable_dataset()
    with pytest.raises(S3AccessError, match="check the access key"):
        bad.save(("ds",), stream)
    with pytest.raises(S3AccessError, match="refused"):
        bad.load(("ds",))


def test_dataset_written_by_us_opens_with_datasets_from_a_version_prefix(
    seaweedfs, s3_bucket, tmp_path
):
    """The version prefix holds the plain save_to_disk layout: download it and it loads."""
    import datasets

    client = seaweedfs.client()
    store = S3Store(client, s3_bucket, "p")
    version = store.save(("ds",), table_dataset(4), max_shard_size="1KB").manifest.version
    prefix = f"p/ds/v-{version}/"
    for item in client.list_objects_v2(Bucket=s3_bucket, Prefix=prefix)["Contents"]:
        client.download_file(s3_bucket, item["Key"], str(tmp_path / item["Key"][len(prefix) :]))
    assert datasets.load_from_disk(str(tmp_path))["id"][:] == [0, 1, 2, 3]


def test_recently_used_cached_version_is_kept(seaweedfs, s3_bucket, isolated_cache):
    """Another process may still be opening it; only stale versions are dropped."""
    store = S3Store(seaweedfs.client(), s3_bucket, "p")
    old = store.save(("ds",), table_dataset(5)).manifest
    store.load(("ds",))
    new = store.save(("ds",), table_dataset(7)).manifest
    store.load(("ds",))
    cached = isolated_cache / "s3" / s3_bucket / "p" / "ds"
    assert sorted(os.listdir(cached)) == sorted([old.version, new.version])


def keys_under(client, bucket, prefix):
    response = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"][len(prefix) :] for item in response.get("Contents", []))


def stored_versions(client, bucket, prefix):
    return {key.split("/")[0] for key in keys_under(client, bucket, prefix + "v-")}


def test_linked_save_writes_no_shard_and_pins_the_reused_version(seaweedfs, s3_bucket):
    client = seaweedfs.client()
    store = S3Store(client, s3_bucket, "p")
    reused = store.save(("raw",), table_dataset(4)).manifest.version
    log = RequestLog(client)
    linked = store.save_linked(("twice",), ("raw",), repeat=2).manifest
    assert keys_under(client, s3_bucket, f"p/twice/v-{linked.version}/") == [
        "dataset_info.json", "ds_assets.json", "state.json",
    ]  # fmt: skip
    assert linked.source["data"] == f"p/raw/v-{reused}"
    for rows_count in (1, 2, 3):
        store.save(("raw",), table_dataset(rows_count))
    assert reused in stored_versions(client, s3_bucket, "p/raw/")  # pinned, kept
    assert store.load(("twice",))["id"][:] == [0, 1, 2, 3] * 2
    assert log.data_reads() == [f"p/raw/v-{reused}/data-00000-of-00001.arrow"]  # once


def test_retiring_the_last_linked_version_releases_the_reused_one(seaweedfs, s3_bucket):
    client = seaweedfs.client()
    store = S3Store(client, s3_bucket, "p")
    reused = store.save(("raw",), table_dataset(4)).manifest.version
    store.save_linked(("lazy",), ("raw",))
    for rows_count in (1, 2):
        store.save(("raw",), table_dataset(rows_count))
    assert keys_under(client, s3_bucket, f"p/raw/.pins/v-{reused}/")
    for _ in range(3):  # the first linked version is retired by the third save after it
        store.save_linked(("lazy",), ("raw",))
    assert keys_under(client, s3_bucket, f"p/raw/.pins/v-{reused}/") == []
    assert reused not in stored_versions(client, s3_bucket, "p/raw/")
    assert len(store.load(("lazy",))) == 2


def test_linked_load_reuses_the_cached_upstream_shards(seaweedfs, s3_bucket, isolated_cache):
    client = seaweedfs.client()
    store = S3Store(client, s3_bucket, "p")
    store.save(("pair",), DatasetDict(train=table_dataset(3), test=table_dataset(1)))
    assert len(store.load(("pair",))["train"]) == 3  # caches the upstream's shards
    log = RequestLog(client)
    store.save_linked(("ds", "train"), ("pair",), split="train")
    store.save_linked(("again",), ("ds", "train"), repeat=2)
    assert store.load(("again",))["id"][:] == [0, 1, 2, 0, 1, 2]
    assert log.data_reads() == []  # hard links to the cached copy, nothing downloaded
