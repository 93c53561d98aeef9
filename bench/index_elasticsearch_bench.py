"""Elasticsearch index: build rate and query latency of `ds_assets.index.elasticsearch` against
the raw client, in one run.

    ES_BENCH_ROWS=10000 ES_BENCH_REPEAT=5 python bench/index_elasticsearch_bench.py

Runs against `$ELASTICSEARCH_URL` (API key in `$ELASTICSEARCH_API_KEY`) when set (default
100,000 rows), else against the noida-db Elasticsearch-REST server started on a free loopback
port (tests/es_server.py; default 10,000 rows: noida-db slows down as an index grows, and its
query time grows with the number of documents, so its figures measure noida-db, not
Elasticsearch; the ratios are what matter). The dataset: a title (8 words), a body (40 words),
a language, a year and a score per row, words drawn from a Zipf-like vocabulary, saved with
`save_to_disk` and memory-mapped as stored. One line per measurement:
- build: `elasticsearch.build` (documents read batch by batch from the memory-mapped dataset,
  mappings inferred, bulk load, refresh, alias swap) with chunks sent by `streaming_bulk` in 2
  threads (the default) and in one (parallel=False), against raw `helpers.bulk` (and raw
  `parallel_bulk`) of the same documents, already in memory as dicts, into an index with the same
  mappings (creation, load and refresh timed); docs/s, MB/s of the dataset's columns, peak RSS
  growth and the ratio of the times (build / raw `helpers.bulk`; 1.2 is the target), and the CPU
  time this process spent per document (less swayed by the server and the machine's load than wall
  time).
- query: `ElasticsearchIndex.search` against raw `client.search` with the same request body,
  taken in turns query by query (ES_BENCH_QUERIES, default 100, 20 on noida-db); p50 and p95
  latency and their ratio; `search_batch` (msearch) of the same number of queries, queries/s.

Each measurement runs in a fresh process, so its peak RSS (VmHWM) is its own; builds are run
ES_BENCH_REPEAT times (default 5), the modes in turns; the fastest run of each is shown, and
the ratio of the median times too (a shared machine's load swings single runs by 2x).
Called as `--measure MODE DIR URL`, the script prints one JSON line for one measurement (modes
in MODES; `read` only reads the dataset batch by batch: the floor the memory map sets); the
memory test in tests/test_index_elasticsearch.py uses it that way, and `--make DIR ROWS
[BODY_WORDS [BODIES]]` to write its dataset. Timings never go into tests.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque

import numpy as np
import psutil
import pyarrow as pa
from datasets import Dataset, load_from_disk
from elasticsearch import Elasticsearch, helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # tests.es_server starts the noida-db server

from memory import peak_rss  # noqa: E402 - bench/memory.py, the script folder

from ds_assets.index import elasticsearch  # noqa: E402

TEXT_COLUMNS = ["title", "body"]
QUERIES = int(os.environ.get("ES_BENCH_QUERIES", "100"))
VOCABULARY = 20_000
MODES = ("read", "build", "build-sequential", "raw", "raw-parallel", "query")


def make_dataset(directory: str, rows: int, body_words: int = 40, bodies: int = 0) -> None:
    """`rows` documents saved as `datasets` saves them; with `bodies`, the bodies are drawn from
    that many distinct ones (quick to make when they are long)."""
    rng = np.random.default_rng(0)
    words = np.array([f"w{number}" for number in range(VOCABULARY)])
    weights = 1.0 / np.arange(1, VOCABULARY + 1)
    weights /= weights.sum()

    def sentences(count: int, length: int) -> list[str]:
        picked = words[rng.choice(VOCABULARY, size=(count, length), p=weights)]
        return [" ".join(row) for row in picked]

    pool = np.array(sentences(bodies, body_words)) if bodies else None

    def tables():
        for start in range(0, rows, 1_000):
            count = min(1_000, rows - start)
            body = pool[rng.integers(0, bodies, count)] if bodies else sentences(count, body_words)
            yield pa.table({
                "title": sentences(count, 8),
                "body": body,
                "lang": rng.choice(["en", "fr", "de"], size=count),
                "year": rng.integers(1990, 2025, size=count, dtype=np.int32),
                "score": rng.random(count, dtype=np.float32),
            })  # fmt: skip

    Dataset(pa.concat_tables(tables())).save_to_disk(directory)


def open_client(url: str) -> Elasticsearch:
    api_key = os.environ.get("ELASTICSEARCH_API_KEY") or None
    return Elasticsearch(url, api_key=api_key, request_timeout=300)


def sample_queries(dataset: Dataset, count: int) -> list[str]:
    """The first three words of titles of rows spread over the dataset (a phrase that exists)."""
    rows = np.linspace(0, len(dataset) - 1, count).astype(int).tolist()
    titles = dataset.select(rows).with_format(None)["title"]
    return [" ".join(title.split()[:3]) for title in titles]


def measure(mode: str, directory: str, url: str) -> dict:
    """One measurement in this (fresh) process."""
    dataset = load_from_disk(directory)
    client = open_client(url)
    alias = f"bench-{uuid.uuid4().hex[:8]}"
    report: dict = {}
    baseline = psutil.Process().memory_info().rss
    gc.collect()  # every mode starts with no garbage pending (see raw_load)
    started, cpu_started = time.perf_counter(), time.process_time()
    if mode == "read":
        for table in dataset.with_format("arrow").iter(batch_size=500):
            table.to_pylist()  # touch every value once, as a build must
    elif mode in {"build", "build-sequential"}:
        parallel = mode == "build"
        elasticsearch.build(client, dataset, alias, TEXT_COLUMNS, version="1", parallel=parallel)
        report["seconds"] = time.perf_counter() - started
        report["cpu_seconds"] = time.process_time() - cpu_started
        client.indices.delete(index=f"{alias}__1")
    elif mode in {"raw", "raw-parallel"}:
        report.update(raw_load(client, alias, dataset, parallel=mode == "raw-parallel"))
        client.indices.delete(index=alias)
    elif mode == "query":
        index = elasticsearch.build(client, dataset, alias, TEXT_COLUMNS, version="1")
        report.update(query_latency(client, index, dataset))
        client.indices.delete(index=f"{alias}__1")
    else:
        raise SystemExit(f"unknown mode {mode!r}: {', '.join(MODES)}")
    report.setdefault("seconds", time.perf_counter() - started)
    report.update(rows=len(dataset), growth_mb=round((peak_rss() - baseline) / 1024**2, 1))
    return report


def raw_load(client: Elasticsearch, name: str, dataset: Dataset, parallel: bool) -> dict:
    """What a user of the raw client writes: the documents as dicts in memory, one bulk call
    (index creation with the same mappings, load and refresh timed)."""
    documents = dataset.with_format(None).to_list()
    actions = [
        {"_op_type": "create", "_index": name, "_id": str(row),
         "_source": {**document, elasticsearch.ROW_FIELD: row}}
        for row, document in enumerate(documents)
    ]  # fmt: skip
    mappings = elasticsearch.infer_mappings(dataset.features, TEXT_COLUMNS)
    gc.collect()  # or the collection the list above calls for lands in a build's timing only
    started, cpu_started = time.perf_counter(), time.process_time()
    client.indices.create(index=name, mappings=mappings, settings={"refresh_interval": "-1"})
    if parallel:
        threads = elasticsearch.BULK_THREADS
        deque(helpers.parallel_bulk(client, actions, thread_count=threads), maxlen=0)
    else:
        helpers.bulk(client, actions)
    client.indices.put_settings(index=name, settings={"index": {"refresh_interval": None}})
    client.indices.refresh(index=name)
    return {"seconds": time.perf_counter() - started,
            "cpu_seconds": time.process_time() - cpu_started}  # fmt: skip


def query_latency(
    client: Elasticsearch, index: elasticsearch.ElasticsearchIndex, dataset: Dataset
) -> dict:
    """`search()` and raw `client.search` with the same body, taken in turns per query."""
    ours, raw = [], []
    for query in sample_queries(dataset, QUERIES):
        started = time.perf_counter()
        index.search(query, k=10)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        client.search(index=index.alias, **index.request(query, 10))
        raw.append(time.perf_counter() - started)
    queries = sample_queries(dataset, QUERIES)
    started = time.perf_counter()
    index.search_batch(queries, k=10)
    batch_seconds = time.perf_counter() - started
    p50, p95 = np.percentile(np.array(ours) * 1000, [50, 95])
    raw_p50, raw_p95 = np.percentile(np.array(raw) * 1000, [50, 95])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "raw_p50_ms": float(raw_p50),
            "raw_p95_ms": float(raw_p95), "batch_queries_per_s": len(queries) / batch_seconds,
            "queries": len(queries)}  # fmt: skip


def run_child(mode: str, directory: str, url: str) -> dict:
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--measure", mode, directory, url],
        capture_output=True, text=True, cwd=ROOT, check=False,
        env=dict(os.environ, PYTHONPATH=ROOT, HF_DATASETS_DISABLE_PROGRESS_BARS="1"),
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"{mode} at {url} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def best_runs(modes: list[str], directory: str, url: str, repeat: int) -> dict[str, dict]:
    """The fastest of `repeat` runs of each mode, with the median time of all of them; the
    modes are taken in turns, so a shared machine's load weighs on all of them alike."""
    runs: dict[str, list[dict]] = {mode: [] for mode in modes}
    for _ in range(repeat):
        for mode in modes:
            runs[mode].append(run_child(mode, directory, url))
    best = {mode: min(results, key=lambda r: r["seconds"]) for mode, results in runs.items()}
    for mode, results in runs.items():
        best[mode]["median_seconds"] = float(np.median([r["seconds"] for r in results]))
    return best


def main() -> None:
    from tests.es_server import external_server, start_noida

    server = external_server() or start_noida()
    label = "cluster" if server.process is None else "noida-db"
    rows = int(os.environ.get("ES_BENCH_ROWS", "100000" if server.process is None else "10000"))
    if server.process is not None:  # noida-db answers a query in about a second at 10,000 rows
        os.environ.setdefault("ES_BENCH_QUERIES", "20")
    repeat = int(os.environ.get("ES_BENCH_REPEAT", "5"))
    try:
        with tempfile.TemporaryDirectory() as scratch:
            data = os.path.join(scratch, "data")
            make_dataset(data, rows)
            megabytes = load_from_disk(data).data.nbytes / 1e6
            print(f"elasticsearch ({label}): {rows:,} documents, {megabytes:.1f} MB of columns, "
                  f"{elasticsearch.BULK_THREADS} bulk threads, best of {repeat}")  # fmt: skip
            builds = ["build", "build-sequential", "raw", "raw-parallel", "read"]
            results = best_runs(builds, data, server.url, repeat)
            results["query"] = run_child("query", data, server.url)
            report(results, rows, megabytes)
    finally:
        server.stop()


def report(results: dict[str, dict], rows: int, megabytes: float) -> None:
    raw = results["raw"]
    names = {"build": "build (threaded)", "build-sequential": "build (parallel=False)",
             "raw": "raw helpers.bulk", "raw-parallel": "raw helpers.parallel_bulk"}  # fmt: skip
    for mode, name in names.items():
        result = results[mode]
        print(
            f"{name}: {rows / result['seconds']:,.0f} docs/s, "
            f"{megabytes / result['seconds']:.2f} MB/s, peak RSS +{result['growth_mb']:.0f} MB, "
            f"client CPU {result['cpu_seconds'] * 1e6 / rows:.0f} µs/doc, "
            f"time ratio vs raw helpers.bulk {result['seconds'] / raw['seconds']:.2f}x best, "
            f"{result['median_seconds'] / raw['median_seconds']:.2f}x median (target 1.2x)"
        )
    print(f"read only (the memory map's floor): peak RSS +{results['read']['growth_mb']:.0f} MB")
    query = results["query"]
    count = query["queries"]
    print(
        f"query search() ({count} queries): p50 {query['p50_ms']:.2f} ms, "
        f"p95 {query['p95_ms']:.2f} ms; raw client.search: p50 {query['raw_p50_ms']:.2f} ms, "
        f"p95 {query['raw_p95_ms']:.2f} ms; "
        f"ratio p50 {query['p50_ms'] / query['raw_p50_ms']:.2f}x, "
        f"p95 {query['p95_ms'] / query['raw_p95_ms']:.2f}x"
    )
    print(f"search_batch (msearch) of {count}: {query['batch_queries_per_s']:,.1f} queries/s")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        print(json.dumps(measure(*sys.argv[2:5])))
    elif len(sys.argv) > 1 and sys.argv[1] == "--make":
        make_dataset(sys.argv[2], *map(int, sys.argv[3:6]))
    else:
        main()
