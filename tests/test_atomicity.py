"""A save that fails or is killed half-way leaves the previous version whole and loadable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from datasets import Features, IterableDataset, Value

from ds_assets.storage import LocalStore
from tests.datasets_factory import table_dataset

FEATURES = Features({"id": Value("int64"), "text": Value("string")})


def failing_stream(rows_before_failure: int) -> IterableDataset:
    def generate():
        for i in range(rows_before_failure):
            yield {"id": i, "text": "y" * 100}
        raise RuntimeError("source broke half-way")

    return IterableDataset.from_generator(generate, features=FEATURES)


def test_exception_mid_stream_keeps_previous_version(store):
    store.save(("ds",), table_dataset(10))
    before = store.manifest(("ds",))
    with pytest.raises(RuntimeError, match="half-way"):
        store.save(("ds",), failing_stream(5_000), max_shard_size="100KB")
    assert store.manifest(("ds",)) == before
    assert store.load(("ds",))["id"][:] == list(range(10))


def test_exception_leaves_no_partial_directory(tmp_path):
    store = LocalStore(str(tmp_path))
    store.save(("ds",), table_dataset(10))
    with pytest.raises(RuntimeError):
        store.save(("ds",), failing_stream(5_000), max_shard_size="100KB")
    assert os.listdir(tmp_path) == ["ds"]


def test_failed_s3_save_leaves_no_objects(seaweedfs, s3_bucket):
    from ds_assets.storage.s3 import S3Store

    client = seaweedfs.client()
    store = S3Store(client, s3_bucket, "p")
    store.save(("ds",), table_dataset(10))
    keys_before = _keys(client, s3_bucket)
    with pytest.raises(RuntimeError):
        store.save(("ds",), failing_stream(5_000), max_shard_size="100KB")
    assert _keys(client, s3_bucket) == keys_before


def _keys(client, bucket):
    response = client.list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in response.get("Contents", []))


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from datasets import Features, IterableDataset, Value
    from ds_assets.storage import LocalStore
    from ds_assets.storage.s3 import S3Store

    def generate():
        for i in range(10**9):
            if i == 20_000:
                print("halfway", flush=True)
            if i > 20_000:
                time.sleep(0.001)
            yield {"id": i, "text": "z" * 100}

    stream = IterableDataset.from_generator(
        generate, features=Features({"id": Value("int64"), "text": Value("string")})
    )
    if sys.argv[1] == "local":
        store = LocalStore(sys.argv[2])
    else:
        import boto3
        client = boto3.client("s3", endpoint_url=sys.argv[3], region_name="us-east-1")
        store = S3Store(client, sys.argv[2], "p")
    store.save(("ds",), stream, max_shard_size="200KB")
    """
)


def test_sigkill_mid_write_keeps_previous_version(store, tmp_path, request):
    store.save(("ds",), table_dataset(10))
    before = store.manifest(("ds",))
    if isinstance(store, LocalStore):
        args, env = ["local", store.root], os.environ
    else:
        server = request.getfixturevalue("seaweedfs")
        args = ["s3", store.bucket, server.endpoint]
        env = dict(
            os.environ,
            AWS_ACCESS_KEY_ID=server.access_key,
            AWS_SECRET_ACCESS_KEY=server.secret_key,
        )
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, *args],
        stdout=subprocess.PIPE,
        env=env,
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    assert writer.stdout.readline().strip() == b"halfway"
    time.sleep(0.5)  # let it write and upload a few shards
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert store.manifest(("ds",)) == before
    assert store.load(("ds",))["id"][:] == list(range(10))
    if isinstance(store, LocalStore):
        assert sorted(os.listdir(store.path(("ds",)))) == sorted(
            ["data-00000-of-00001.arrow", "dataset_info.json", "state.json", "ds_assets.json"]
        )
        # the next save clears the killed writer's hidden leftovers only once stale;
        # they are never visible at the final path
        assert all(n.startswith(".") for n in os.listdir(store.root) if n != "ds")


def test_reader_during_swaps_sees_whole_versions(tmp_path):
    """A thread keeps swapping two versions in while loads run: never a mix, never missing."""
    store = LocalStore(str(tmp_path))
    small, large = table_dataset(10), table_dataset(3_000)
    store.save(("ds",), small)
    done = threading.Event()

    def write():
        for round_number in range(30):
            store.save(("ds",), large if round_number % 2 == 0 else small)
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    loads = 0
    while not done.is_set() or loads < 5:
        loaded = store.load(("ds",))
        assert len(loaded) in (10, 3_000)
        assert loaded["id"][:] == list(range(len(loaded)))
        loads += 1
    writer.join()
