"""Peak memory while the store saves a generated stream.

    python bench/stream_memory.py DIR [GB] [--interleave]

With `--interleave`, two generated streams of GB/2 each are interleaved (probabilities 0.5/0.5,
seed 0, all_exhausted) by `ds_assets.ops.interleave` and saved.

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

from ds_assets.ops.interleave import interleave_streams
from ds_assets.storage import LocalStore

ROWS_PER_BATCH = 10_000
TEXT = "x" * 1000
FEATURES = Features({"id": Value("int64"), "text": Value("string")})


def generated_stream(total_bytes: int, first_id: int = 0) -> IterableDataset:
    """About `total_bytes` of rows, produced batch by batch in 4 shards, never all in memory."""
    batches_per_shard = max(1, total_bytes // (ROWS_PER_BATCH * (len(TEXT) + 8)) // 4)

    def tables(shards):
        for shard in shards:
            for number in range(batches_per_shard):
                start = first_id + (shard * batches_per_shard + number) * ROWS_PER_BATCH
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


def main(directory: str, gigabytes: float = 2.0, interleave: bool = False) -> dict:
    total = int(gigabytes * 1024**3)
    if interleave:
        halves = [generated_stream(total // 2), generated_stream(total // 2, first_id=10**9)]
        stream = interleave_streams(halves, FEATURES, [0.5, 0.5], 0, "all_exhausted")
    else:
        stream = generated_stream(total)
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
    arguments = [a for a in sys.argv[1:] if not a.startswith("--")]
    size = float(arguments[1]) if len(arguments) > 1 else 2.0
    print(json.dumps(main(arguments[0], size, interleave="--interleave" in sys.argv)))
