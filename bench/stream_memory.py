"""Peak memory while the store saves a generated stream: `python bench/stream_memory.py DIR [GB]`.

Prints one JSON line: baseline RSS before the save, peak RSS (VmHWM), rows, bytes, shards
and seconds. Used by `make bench` and by tests/test_memory.py (which asserts the bound).
"""

import json
import resource
import sys
import time

import numpy as np
import psutil
import pyarrow as pa
from datasets import Features, IterableDataset, Value
from datasets.iterable_dataset import ArrowExamplesIterable

from ds_assets.storage import LocalStore

ROWS_PER_BATCH = 10_000
TEXT = "x" * 1000
FEATURES = Features({"id": Value("int64"), "text": Value("string")})


def generated_stream(total_bytes: int) -> IterableDataset:
    """About `total_bytes` of rows, produced batch by batch in 4 shards, never all in memory."""
    batches_per_shard = max(1, total_bytes // (ROWS_PER_BATCH * (len(TEXT) + 8)) // 4)

    def tables(shards):
        for shard in shards:
            for number in range(batches_per_shard):
                start = (shard * batches_per_shard + number) * ROWS_PER_BATCH
                ids = pa.array(np.arange(start, start + ROWS_PER_BATCH))
                yield f"{shard}-{number}", pa.table({"id": ids, "text": [TEXT] * ROWS_PER_BATCH})

    return IterableDataset(ArrowExamplesIterable(tables, {"shards": [0, 1, 2, 3]})).cast(FEATURES)


def peak_rss() -> int:
    """Peak RSS of this process in bytes.

    `VmHWM` belongs to the address space and starts afresh at exec; `ru_maxrss` does not (Linux
    carries it over from the parent across fork and exec, so a child started by a big parent
    would report the parent's peak).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main(directory: str, gigabytes: float = 2.0) -> dict:
    stream = generated_stream(int(gigabytes * 1024**3))
    baseline = psutil.Process().memory_info().rss
    started = time.perf_counter()
    manifest = LocalStore(directory).save(("stream",), stream).manifest
    seconds = time.perf_counter() - started
    peak = peak_rss()
    return {
        "baseline": baseline,
        "peak": peak,
        "growth_mb": round((peak - baseline) / 1024**2, 1),
        "rows": manifest.num_rows,
        "bytes": manifest.num_bytes,
        "shards": manifest.num_shards,
        "seconds": round(seconds, 2),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 2.0)))
