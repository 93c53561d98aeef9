"""The shared reader output: Arrow tables to a Dataset, stale outputs cleared."""

import os
import time

import pyarrow as pa
from datasets import Features, Value

from ds_assets.formats.output import to_dataset


def numbers(stop):
    yield pa.table({"n": list(range(stop))})


def test_stale_outputs_are_removed_on_the_next_read(tmp_path):
    folder = tmp_path / "formats"
    folder.mkdir()
    old, recent = folder / "old.arrow", folder / "recent.arrow"
    for path in (old, recent):
        path.write_bytes(b"")
    two_days_ago = time.time() - 2 * 86_400
    os.utime(old, (two_days_ago, two_days_ago))
    dataset = to_dataset(numbers, {"stop": 3}, Features({"n": Value("int64")}),
                         cache_dir=str(tmp_path))  # fmt: skip
    assert dataset["n"][:] == [0, 1, 2]
    assert not old.exists() and recent.exists()


def rows_of_parts(parts, tags):
    """One table per part: its rows tagged with the part, and the (tuple) tags it was given."""
    for part in parts:
        yield pa.table({"part": [part] * 2, "tags": [len(tags)] * 2})


def test_a_stream_has_one_shard_per_input_for_workers_and_nodes():
    from datasets.distributed import split_dataset_by_node

    features = Features({"part": Value("string"), "tags": Value("int64")})
    kwargs = {"parts": ["a", "b", "c", "d"], "tags": ["x", "y"]}  # only `parts` is split
    stream = to_dataset(rows_of_parts, kwargs, features, streaming=True, shard_by="parts")
    assert stream.n_shards == 4
    assert [row["part"] for row in stream] == ["a", "a", "b", "b", "c", "c", "d", "d"]
    assert {row["tags"] for row in stream} == {2}
    halves = [split_dataset_by_node(stream, rank=rank, world_size=2) for rank in (0, 1)]
    assert [sorted({row["part"] for row in half}) for half in halves] == [["a", "c"], ["b", "d"]]
    assert [row["part"] for row in stream.shard(num_shards=4, index=2)] == ["c", "c"]
    shuffled = [row["part"] for row in stream.shuffle(seed=1, buffer_size=1)]
    assert sorted(shuffled) == sorted(row["part"] for row in stream)
    unsharded = to_dataset(rows_of_parts, kwargs, features, streaming=True)
    assert unsharded.n_shards == 1
