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
