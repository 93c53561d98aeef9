"""Qdrant index: build rate and query latency of `ds_assets.index.qdrant` against the raw client.

    QDRANT_BENCH_ROWS=100000 QDRANT_BENCH_DIM=128 python bench/index_qdrant_bench.py

Embedded local mode in memory (`:memory:`) and on disk (a folder; rows capped by
QDRANT_BENCH_DISK_ROWS, since local mode commits every point to SQLite one by one), and a
server too when QDRANT_URL (and QDRANT_API_KEY if needed) is set. One line per measurement:
- build: `qdrant.build` from a memory-mapped dataset (vectors streamed batch by batch, ids,
  row positions in the payload, alias swap) against raw `client.upload_collection` of the same
  vectors, ids and payloads already in memory, in one call and in one call per batch; rows/s,
  MB/s of vectors, peak RSS growth and the ratio of the times (build / raw; target 1.2x).
- query: `QdrantIndex.search` against raw `client.query_points` on the same collection, in
  turn query by query; p50 and p95 latency and their ratio.

Each build runs in a fresh process, so its peak RSS (VmHWM) is its own. The same script,
called as `--measure MODE DIR LOCATION [--no-queries]`, prints one JSON line for one
measurement, and `--make DIR ROWS DIM` writes the dataset; the memory test in
tests/test_index_qdrant.py uses it that way, with these modes:
- read: only iterate the vectors batch by batch (the floor `datasets`' memory map sets),
- qdrant: the same upload written by hand, batch by batch from the memory map (what reading
  the column and Qdrant itself hold, the floor for `build`),
- build, raw, raw-batched: as above.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

import numpy as np
import psutil
from datasets import Dataset, load_from_disk
from memory import peak_rss  # bench/memory.py: the script folder is on sys.path
from qdrant_client import QdrantClient, models

from ds_assets.index import qdrant
from ds_assets.index.base import vector_batches

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = 1_000
QUERIES = 200


def make_dataset(directory: str, rows: int, dimension: int) -> None:
    """`rows` random vectors saved as `datasets` saves them, written batch by batch."""

    def generate():
        rng = np.random.default_rng(0)
        for start in range(0, rows, 10_000):
            count = min(10_000, rows - start)
            yield from (
                {"id": start + i, "vector": vector}
                for i, vector in enumerate(rng.standard_normal((count, dimension), np.float32))
            )

    Dataset.from_generator(generate).save_to_disk(directory)


def open_client(location: str) -> QdrantClient:
    if location == ":memory:":
        return QdrantClient(location=":memory:")
    if location.startswith(("http://", "https://")):
        return QdrantClient(url=location, api_key=os.environ.get("QDRANT_API_KEY"), timeout=120)
    return QdrantClient(path=location)


def percentiles(seconds: list[float]) -> tuple[float, float]:
    p50, p95 = np.percentile(np.array(seconds) * 1000, [50, 95])
    return float(p50), float(p95)


def measure(mode: str, directory: str, location: str, queries: bool = True) -> dict:
    """One measurement in this (fresh) process; `queries=False` leaves out query latency."""
    dataset = load_from_disk(directory)
    client = open_client(location)
    name = f"bench_{uuid.uuid4().hex[:8]}"
    if mode in ("raw", "raw-batched"):
        vectors = np.asarray(dataset.with_format("numpy")["vector"], dtype=np.float32)
    baseline = psutil.Process().memory_info().rss
    started = time.perf_counter()
    report: dict = {}
    if mode == "read":
        for _ in vector_batches(dataset, "vector", batch_size=BATCH):
            pass
    elif mode == "qdrant":
        upload_streamed(client, name, dataset)
    elif mode == "build":
        index = qdrant.build(client, dataset, name, column="vector", version="1", batch_size=BATCH)
        report["seconds"] = time.perf_counter() - started
        report["growth_mb"] = growth(baseline)  # before the queries' temporary arrays
        if queries:
            report.update(query_latency(client, index, f"{name}__1", dataset))
        client.delete_collection(f"{name}__1")
    elif mode in ("raw", "raw-batched"):
        raw_upload(client, name, vectors, batched=mode == "raw-batched")
        client.delete_collection(name)
    else:
        raise SystemExit(f"unknown mode {mode!r}: read, qdrant, build, raw or raw-batched")
    report.setdefault("seconds", time.perf_counter() - started)
    report.setdefault("growth_mb", growth(baseline))
    report["rows"] = len(dataset)
    return report


def growth(baseline: int) -> float:
    return round((peak_rss() - baseline) / 1024**2, 1)


def upload_streamed(client: QdrantClient, name: str, dataset: Dataset) -> None:
    """The least a streaming upload by hand holds: each batch read from the memory map and
    uploaded with its ids and row payloads, nothing checked, nothing kept."""
    dimension = len(dataset[0]["vector"])
    client.create_collection(name, models.VectorParams(size=dimension, distance="Cosine"))
    for start, vectors in vector_batches(dataset, "vector", batch_size=BATCH):
        ids = list(range(start, start + len(vectors)))
        payload = [{qdrant.ROW_KEY: row} for row in ids]
        client.upload_collection(name, vectors, payload, ids, batch_size=BATCH, wait=True)


def raw_upload(client: QdrantClient, name: str, vectors: np.ndarray, batched: bool) -> None:
    """What a user of the raw client writes, the matrix in memory: one `upload_collection`
    call, or one per batch of BATCH rows. Same ids and payloads as `build`."""
    client.create_collection(name, models.VectorParams(size=vectors.shape[1], distance="Cosine"))
    step = BATCH if batched else len(vectors)
    for start in range(0, len(vectors), step):
        ids = list(range(start, min(start + step, len(vectors))))
        payload = [{qdrant.ROW_KEY: row} for row in ids]
        client.upload_collection(
            name, vectors[start : start + step], payload, ids, batch_size=BATCH, wait=True
        )


def query_latency(client: QdrantClient, index, physical: str, dataset: Dataset) -> dict:
    """`index.search` and raw `client.query_points` on the same collection, query by query in
    turn, so both see the same machine load."""
    queries = np.random.default_rng(1).standard_normal(
        (QUERIES, len(dataset[0]["vector"])), np.float32
    )
    ours, raw = [], []
    for query in queries:
        started = time.perf_counter()
        index.search(query, k=10)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        points = client.query_points(physical, query.tolist(), limit=10, with_payload=["_row"])
        [point.payload[qdrant.ROW_KEY] for point in points.points]
        raw.append(time.perf_counter() - started)
    (p50, p95), (raw_p50, raw_p95) = percentiles(ours), percentiles(raw)
    return {"p50_ms": p50, "p95_ms": p95, "raw_p50_ms": raw_p50, "raw_p95_ms": raw_p95}


def run_child(mode: str, directory: str, location: str) -> dict:
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--measure", mode, directory, location],
        capture_output=True, text=True, cwd=ROOT, check=False,
        env=dict(os.environ, PYTHONPATH=ROOT, HF_DATASETS_DISABLE_PROGRESS_BARS="1"),
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"{mode} at {location} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(label: str, directory: str, location: str, rows: int, dimension: int) -> None:
    build = run_child("build", directory, location)
    megabytes = rows * dimension * 4 / 1e6
    for name, mode in (("raw upload_collection, one call", "raw"),
                       ("raw upload_collection, per batch", "raw-batched")):  # fmt: skip
        raw = run_child(mode, directory, location)
        print(
            f"{label} build: {rows / build['seconds']:,.0f} rows/s, "
            f"{megabytes / build['seconds']:.1f} MB/s, peak RSS +{build['growth_mb']:.0f} MB | "
            f"{name}: {rows / raw['seconds']:,.0f} rows/s, {megabytes / raw['seconds']:.1f} "
            f"MB/s, peak RSS +{raw['growth_mb']:.0f} MB | time ratio "
            f"{build['seconds'] / raw['seconds']:.2f}x (target 1.2x)"
        )
    print(
        f"{label} query, k=10: search() p50 {build['p50_ms']:.2f} ms, p95 {build['p95_ms']:.2f} "
        f"ms | raw query_points p50 {build['raw_p50_ms']:.2f} ms, p95 "
        f"{build['raw_p95_ms']:.2f} ms | ratio p50 {build['p50_ms'] / build['raw_p50_ms']:.2f}x, "
        f"p95 {build['p95_ms'] / build['raw_p95_ms']:.2f}x"
    )


def main() -> None:
    rows = int(os.environ.get("QDRANT_BENCH_ROWS", "100000"))
    disk_rows = min(rows, int(os.environ.get("QDRANT_BENCH_DISK_ROWS", "1000")))
    dimension = int(os.environ.get("QDRANT_BENCH_DIM", "128"))
    with tempfile.TemporaryDirectory() as scratch:
        data = os.path.join(scratch, "data")
        make_dataset(data, rows, dimension)
        print(f"qdrant: {rows:,} vectors of dimension {dimension}, batches of {BATCH}")
        compare("local :memory:", data, ":memory:", rows, dimension)
        if disk_rows:
            small = os.path.join(scratch, "small")
            make_dataset(small, disk_rows, dimension)
            folder = os.path.join(scratch, "qdrant")
            compare(f"local folder ({disk_rows:,} rows)", small, folder, disk_rows, dimension)
        if os.environ.get("QDRANT_URL"):
            compare("server", data, os.environ["QDRANT_URL"], rows, dimension)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        print(json.dumps(measure(*sys.argv[2:5], queries="--no-queries" not in sys.argv)))
    elif len(sys.argv) > 1 and sys.argv[1] == "--make":
        make_dataset(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
