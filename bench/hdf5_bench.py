"""Throughput and peak memory of the HDF5 reader against a raw h5py loop and `datasets`' builder.

    HDF5_BENCH_MB=1024 HDF5_BENCH_REPEAT=2 .venv/bin/python bench/hdf5_bench.py   # the defaults

Two generated files of about HDF5_BENCH_MB each:
- `embeddings`: float32 rows of 256 values (chunks of 1024 rows) and an int64 label;
- `mixed`: 32x32x3 uint8 images (Array3D), a variable-length UTF-8 caption and an int64 label.

Each file is read (from the page cache: it is read once before) by
- `raw h5py`: a loop reading every dataset batch by batch into numpy, with the batch size
  `parse` chooses: the practical limit of any reader built on h5py;
- `parse map` / `parse stream`: `ds_assets.formats.hdf5.parse`, streaming=False (the Arrow file
  written and memory-mapped) and streaming=True (every Arrow batch iterated);
- `builder map` / `builder stream`: `datasets.load_dataset("hdf5", ...)`, the same two ways.

Every measurement runs in a fresh process (HDF5_BENCH_REPEAT times; the fastest run counts),
so `peak` is that process's VmHWM above its RSS before reading. One line per measurement:
rows/s, MB/s (HDF5 file bytes), peak RSS growth, and the ratios of rows/s against raw h5py and
against the builder in the same mode. `parse map` includes writing the Arrow file (as
`builder map` does): on a slow disk that write is most of its time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np
import psutil
from memory import peak_rss  # bench/memory.py: the script folder is on sys.path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE_MB = float(os.environ.get("HDF5_BENCH_MB", "1024"))
REPEAT = int(os.environ.get("HDF5_BENCH_REPEAT", "2"))
WRITE_ROWS = 32_768
MEASURES = ["raw h5py", "parse map", "parse stream", "builder map", "builder stream"]


def make_embeddings(path: str, megabytes: float) -> int:
    rows = max(1, int(megabytes * 2**20 // (256 * 4 + 8)))
    block = np.arange(WRITE_ROWS * 256, dtype="f4").reshape(WRITE_ROWS, 256)
    with h5py.File(path, "w") as file:
        vectors = file.create_dataset("emb", (rows, 256), "f4", chunks=(min(rows, 1024), 256))
        labels = file.create_dataset("label", (rows,), "i8", chunks=(min(rows, 65_536),))
        for start in range(0, rows, WRITE_ROWS):
            stop = min(start + WRITE_ROWS, rows)
            vectors[start:stop] = block[: stop - start] + start
            labels[start:stop] = np.arange(start, stop)
    return rows


def make_mixed(path: str, megabytes: float) -> int:
    rows = max(1, int(megabytes * 2**20 // (32 * 32 * 3 + 8 + 60)))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (WRITE_ROWS, 32, 32, 3), dtype="u1")
    with h5py.File(path, "w") as file:
        image = file.create_dataset(
            "image", (rows, 32, 32, 3), "u1", chunks=(min(rows, 256), 32, 32, 3)
        )
        caption = file.create_dataset(
            "caption", (rows,), h5py.string_dtype(), chunks=(min(rows, 4096),)
        )  # fmt: skip
        label = file.create_dataset("label", (rows,), "i8", chunks=(min(rows, 65_536),))
        for start in range(0, rows, WRITE_ROWS):
            stop = min(start + WRITE_ROWS, rows)
            image[start:stop] = images[: stop - start]
            caption[start:stop] = [
                f"a photo of thing {i} — number {i * 7}" for i in range(start, stop)
            ]
            label[start:stop] = np.arange(start, stop) % 10
    return rows


WORKLOADS = {"embeddings": make_embeddings, "mixed": make_mixed}


# ── One measurement, in its own process ─────────────────────────────────────────────────────


def read_raw(path: str, batch_rows: int) -> int:
    """Every dataset, batch by batch, into numpy: what any h5py-based reader must do."""
    with h5py.File(path, "r") as file:
        datasets = [file[name] for name in file]
        rows = datasets[0].shape[0]
        for start in range(0, rows, batch_rows):
            for dataset in datasets:
                dataset[start : start + batch_rows]
    return rows


def iterate(stream, batch_rows: int) -> int:
    return sum(batch.num_rows for batch in stream.with_format("arrow").iter(batch_rows))


def read_parse(path: str, streaming: bool, batch_rows: int) -> int:
    from ds_assets.formats import hdf5

    dataset = hdf5.parse(path, streaming=streaming)
    return iterate(dataset, batch_rows) if streaming else dataset.num_rows


def read_builder(path: str, streaming: bool, cache: str) -> int:
    from datasets import load_dataset

    dataset = load_dataset(
        "hdf5", data_files=path, split="train", streaming=streaming, cache_dir=cache
    )
    return iterate(dataset, 32_768) if streaming else dataset.num_rows


def measure(name: str, path: str, cache: str) -> dict:
    import datasets  # noqa: F401  (imported before the baseline, as by the readers)

    from ds_assets.formats import hdf5

    os.environ["DS_ASSETS_CACHE"] = cache
    batch_rows = hdf5._plan([path], None, None, "/", False).batch_rows  # what parse reads at once
    baseline = psutil.Process().memory_info().rss
    started = time.perf_counter()
    if name == "raw h5py":
        rows = read_raw(path, batch_rows)
    elif name.startswith("parse"):
        rows = read_parse(path, name.endswith("stream"), batch_rows)
    else:
        rows = read_builder(path, streaming=name.endswith("stream"), cache=cache)
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": seconds, "growth": peak_rss() - baseline}


def run(name: str, path: str, folder: str) -> dict:
    """The fastest of REPEAT fresh processes, with the highest peak of them."""
    results = [run_once(name, path, folder) for _ in range(REPEAT)]
    if any("error" in result for result in results):
        return next(result for result in results if "error" in result)
    best = min(results, key=lambda result: result["seconds"])
    return dict(best, growth=max(result["growth"] for result in results))


def run_once(name: str, path: str, folder: str) -> dict:
    os.sync()  # earlier writes flushing to disk would slow this measurement down
    cache = tempfile.mkdtemp(dir=folder)
    out = subprocess.run(
        [sys.executable, __file__, "--measure", name, path, cache],
        capture_output=True, text=True, cwd=ROOT, check=False,
        env=dict(os.environ, PYTHONPATH=ROOT, HF_DATASETS_DISABLE_PROGRESS_BARS="1"),
    )  # fmt: skip
    subprocess.run(["rm", "-rf", cache], check=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ── Report ──────────────────────────────────────────────────────────────────────────────────


def warm(path: str) -> None:
    """Read the file once so that every reader finds it in the page cache."""
    with open(path, "rb") as file:
        while file.read(64 * 2**20):
            pass


def line(workload: str, size: int, name: str, result: dict, results: dict) -> str:
    if "error" in result:
        return f"{workload:<10} {name:<15} error: {result['error']}"
    rate = result["rows"] / result["seconds"]
    text = (
        f"{workload:<10} {name:<15} {result['rows']:>10,} rows {result['seconds']:7.2f} s "
        f"{rate:>12,.0f} rows/s {size / 2**20 / result['seconds']:8.0f} MB/s "
        f"peak +{result['growth'] / 2**20:6.0f} MB"
    )
    raw = results.get("raw h5py", {})
    if name != "raw h5py" and "seconds" in raw:
        text += f"   {raw['seconds'] / result['seconds']:5.2f}x raw h5py"
    builder = results.get(name.replace("parse", "builder"), {})
    if name.startswith("parse") and "seconds" in builder:
        text += f"   {builder['seconds'] / result['seconds']:5.2f}x builder"
    return text


def main() -> None:
    print(f"HDF5 reader, files of {SIZE_MB:g} MB (HDF5_BENCH_MB); ratios are rows/s over theirs")
    with tempfile.TemporaryDirectory(prefix="hdf5-bench-") as folder:
        for workload, make in WORKLOADS.items():
            path = os.path.join(folder, f"{workload}.h5")
            make(path, SIZE_MB)
            size = os.path.getsize(path)
            warm(path)
            results = {name: run(name, path, folder) for name in MEASURES}
            for name in MEASURES:
                print(line(workload, size, name, results[name], results), flush=True)
            os.remove(path)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        print(json.dumps(measure(*sys.argv[2:5])))
    else:
        main()
