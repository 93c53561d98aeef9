"""Saving a 2 GB stream stays in constant memory (peak RSS measured in a fresh process)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT_MB = 300

SCRIPT = """
import json, resource, sys
import numpy as np, pyarrow as pa, psutil
from datasets import Features, IterableDataset, Value
from ds_assets.storage import LocalStore
from ds_assets.storage.batches import conform
from ds_assets.storage.save import write_layout

features = Features({"id": Value("int64"), "text": Value("string")})
rows_per_batch, text = 10_000, "x" * 1000
total_bytes = 2 * 1024**3
batches = total_bytes // (rows_per_batch * 1008)

def generate(shards):
    for shard in shards:
        for b in range(batches // 4):
            start = (shard * (batches // 4) + b) * rows_per_batch
            ids = pa.array(np.arange(start, start + rows_per_batch))
            yield pa.table({"id": ids, "text": pa.array([text] * rows_per_batch)})

from datasets.iterable_dataset import ArrowExamplesIterable
stream = IterableDataset(ArrowExamplesIterable(
    lambda shards: ((str(i), t) for i, t in enumerate(generate(shards))), {"shards": [0, 1, 2, 3]}
))
stream = stream.cast(features)
baseline = psutil.Process().memory_info().rss
result = LocalStore(sys.argv[1]).save(("big",), stream)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"baseline": baseline, "peak": peak, "rows": result.manifest.num_rows,
                  "bytes": result.manifest.num_bytes, "shards": result.manifest.num_shards}))
"""


def test_saving_a_2gb_stream_stays_under_300mb_above_baseline(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["bytes"] >= 2 * 1000**3
    assert report["shards"] >= 4  # cut at the default 500MB
    growth_mb = (report["peak"] - report["baseline"]) / 1024**2
    assert growth_mb < LIMIT_MB, report
