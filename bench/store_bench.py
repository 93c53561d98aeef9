"""`make bench`: the Arrow layout store against `datasets` and raw pyarrow, in one run.

Table: 1,000,000 rows of int64 id, 100-char text, int64 label, float32 score. Prints rows/s
and ratios; record the figures in docs/performance.md. Timings never go into tests.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
from datasets import Dataset, disable_progress_bars, load_from_disk

from ds_assets.storage import LocalStore

ROWS = int(os.environ.get("BENCH_ROWS", 1_000_000))
REPEAT = int(os.environ.get("BENCH_REPEAT", 3))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_dataset(rows: int) -> Dataset:
    rng = np.random.default_rng(0)
    alphabet = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz ", dtype=np.uint8)
    text = rng.choice(alphabet, size=(rows, 100)).view("S100").ravel().astype(str)
    table = pa.table(
        {
            "id": np.arange(rows, dtype=np.int64),
            "text": pa.array(text),
            "label": rng.integers(0, 10, rows, dtype=np.int64),
            "score": rng.random(rows, dtype=np.float32),
        }
    )
    return Dataset(table)


def best_of(function, setup=None) -> float:
    """Fastest of REPEAT runs (seconds); `setup` runs untimed before each."""
    times = []
    for _ in range(REPEAT):
        if setup:
            setup()
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def raw_pyarrow_write(table: pa.Table, path: str) -> None:
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=10_000):
            writer.write_batch(batch)


def main() -> None:
    disable_progress_bars()
    work = tempfile.mkdtemp(prefix="ds-assets-bench-")
    store = LocalStore(os.path.join(work, "store"), cache_dir=os.path.join(work, "cache"))
    dataset = make_dataset(ROWS)
    shuffled = dataset.shuffle(seed=0)
    reference_dir = os.path.join(work, "reference")

    def clear_reference():
        shutil.rmtree(reference_dir, ignore_errors=True)

    results = {
        "store.save": best_of(lambda: store.save(("bench",), dataset)),
        "datasets.save_to_disk": best_of(
            lambda: dataset.save_to_disk(reference_dir), setup=clear_reference
        ),
        "pyarrow IPC write": best_of(
            lambda: raw_pyarrow_write(dataset.data.table, os.path.join(work, "raw.arrow"))
        ),
        "store.save (shuffled)": best_of(lambda: store.save(("shuffled",), shuffled)),
        "datasets flatten_indices + save_to_disk (shuffled)": best_of(
            lambda: shuffled.flatten_indices().save_to_disk(reference_dir),
            setup=clear_reference,
        ),
        "store.load": best_of(lambda: store.load(("bench",))),
        "datasets.load_from_disk": best_of(lambda: load_from_disk(reference_dir)),
    }
    print(f"{ROWS:,} rows (int64 id, 100-char text, int64 label, float32 score), best of {REPEAT}")
    for name, seconds in results.items():
        print(f"  {name:<52} {seconds:8.3f} s  {ROWS / seconds:>14,.0f} rows/s")
    save = results["store.save"]
    print("ratios:")
    print(f"  save_to_disk / store.save        {results['datasets.save_to_disk'] / save:6.2f}x")
    print(f"  store.save / pyarrow IPC write   {save / results['pyarrow IPC write']:6.2f}x")
    shuffled_ratio = (
        results["datasets flatten_indices + save_to_disk (shuffled)"]
        / results["store.save (shuffled)"]
    )
    print(f"  shuffled: datasets / store.save  {shuffled_ratio:6.2f}x")
    for label, extra in (
        ("2 GB stream save", []),
        ("2 x 1 GB interleave + save", ["--interleave"]),
    ):
        memory = subprocess.run(
            [sys.executable, os.path.join(ROOT, "bench", "stream_memory.py"),
             os.path.join(work, "m"), "2", *extra],
            capture_output=True, text=True, check=True, env=dict(os.environ, PYTHONPATH=ROOT),
        ).stdout  # fmt: skip
        shutil.rmtree(os.path.join(work, "m"), ignore_errors=True)
        report = json.loads(memory.strip().splitlines()[-1])
        print(
            f"{label}: peak RSS {report['growth_mb']} MB above baseline, "
            f"{report['shards']} shards, {report['bytes'] / report['seconds'] / 1e6:,.0f} MB/s"
        )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
