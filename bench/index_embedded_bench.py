"""Embedded indexes: build rate and query latency of `ds_assets.index.faiss` and
`ds_assets.index.fulltext` against the raw libraries doing the same work, in the same run.

    EMBEDDED_BENCH_VECTORS=1000000 EMBEDDED_BENCH_DIM=128 EMBEDDED_BENCH_DOCS=500000 \\
        python bench/index_embedded_bench.py

Small run: `EMBEDDED_BENCH_VECTORS=20000 EMBEDDED_BENCH_DOCS=20000 EMBEDDED_BENCH_REPEAT=1`.

One line per measurement:
- FAISS build: `faiss.build` over a dataset memory-mapped from disk (vectors streamed batch by
  batch, checked for NaN, normalized for cosine, training sample drawn through the dataset)
  against raw FAISS on the same numpy matrix already in memory (`index_factory`, `normalize_L2`
  in place for cosine, `train` on the same sampled rows, one `add`); vectors/s, MB/s of
  vectors, peak RSS growth, ratio of the times (ours / raw; target 1.2x).
- full-text build: `fulltext.build` (two text columns, a fast row field) against a raw tantivy
  writer loop over the same texts already in a Python list, same schema; documents/s, MB/s of
  text, peak RSS growth, ratio.
- raw FAISS from the dataset file (Flat only): the same raw build, its matrix first gathered
  from the memory-mapped dataset's Arrow chunks with pyarrow, inside the timing: raw FAISS
  doing the same job from the same stored input as ours.
- read only: iterating the vectors (or texts, as Python strings) from the memory-mapped
  dataset batch by batch, no index: the floor under our builds that the raw references, handed
  their input already in memory, do not pay.
- query: `search(query, k=10)` one query at a time against the raw call (FAISS `index.search`;
  tantivy `parse_query` + `searcher.search` + the row fast field); p50 and p95 latency, ratio.

Each build runs in a fresh process (`--measure MODE ...` prints one JSON line), so its peak RSS
(VmHWM, which starts afresh at exec) is its own; best time of EMBEDDED_BENCH_REPEAT runs, ours
and the reference alternated (this machine's load varies); queries timed in the first
EMBEDDED_BENCH_QUERY_RUNS runs (default 3) after WARMUP_QUERIES untimed ones (the first
queries page in the index), the run with the lowest p50 shown (a flat query scans 512 MB, and
the machine's memory bandwidth swings it by a third between runs).
Timings never go into tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import psutil
import pyarrow.compute as pc
from memory import peak_rss  # bench/memory.py: the script folder is on sys.path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VECTORS = int(os.environ.get("EMBEDDED_BENCH_VECTORS", 1_000_000))
DIMENSION = int(os.environ.get("EMBEDDED_BENCH_DIM", 128))
DOCS = int(os.environ.get("EMBEDDED_BENCH_DOCS", 500_000))
REPEAT = int(os.environ.get("EMBEDDED_BENCH_REPEAT", 5))
VECTOR_QUERIES = int(os.environ.get("EMBEDDED_BENCH_VECTOR_QUERIES", 200))
TEXT_QUERIES = int(os.environ.get("EMBEDDED_BENCH_TEXT_QUERIES", 1_000))
WARMUP_QUERIES = 20
QUERY_RUNS = int(os.environ.get("EMBEDDED_BENCH_QUERY_RUNS", 3))
FAISS_CASES = [("Flat", "l2"), ("Flat", "cosine"), ("IVF256,Flat", "l2")]
VOCABULARY = 50_000
TITLE_WORDS, BODY_WORDS = 6, 40


# --- data ----------------------------------------------------------------------------------


def make_data(work: str) -> None:
    """Vectors (a dataset on disk and the same matrix as .npy), texts (a dataset on disk) and
    the queries of both."""
    from datasets import Dataset

    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((VECTORS, DIMENSION), dtype=np.float32)
    np.save(os.path.join(work, "vectors.npy"), matrix)
    Dataset.from_dict({"vector": matrix}).save_to_disk(os.path.join(work, "vectors"))
    del matrix
    queries = rng.standard_normal((VECTOR_QUERIES, DIMENSION), dtype=np.float32)
    np.save(os.path.join(work, "vector_queries.npy"), queries)
    words = _vocabulary(rng)
    titles = [" ".join(doc) for doc in _zipf_words(rng, words, DOCS, TITLE_WORDS)]
    bodies = [" ".join(doc) for doc in _zipf_words(rng, words, DOCS, BODY_WORDS)]
    Dataset.from_dict({"title": titles, "body": bodies}).save_to_disk(os.path.join(work, "docs"))
    text_queries = [" ".join(pair) for pair in _zipf_words(rng, words, TEXT_QUERIES // 2, 2)]
    phrases = [f'"{" ".join(body.split()[3:5])}"' for body in bodies[: TEXT_QUERIES // 2]]
    with open(os.path.join(work, "text_queries.json"), "w") as file:
        json.dump(text_queries + phrases, file)


def _vocabulary(rng: np.random.Generator) -> np.ndarray:
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
    raw = rng.choice(letters, size=(VOCABULARY, 8)).view("S8").ravel().astype(str)
    lengths = rng.integers(3, 9, VOCABULARY)
    return np.array([word[:length] for word, length in zip(raw, lengths, strict=True)])


def _zipf_words(rng, words: np.ndarray, count: int, per_doc: int) -> np.ndarray:
    ids = np.minimum(rng.zipf(1.3, size=(count, per_doc)) - 1, len(words) - 1)
    return words[ids]


# --- one measurement in this process -------------------------------------------------------


def measure(mode: str, work: str, queries: bool, factory: str = "", metric: str = "") -> dict:
    setup, build, search, make_queries = MODES[mode](work, factory, metric)
    state = setup()
    baseline = psutil.Process().memory_info().rss
    started = time.perf_counter()
    index = build(state)
    seconds = time.perf_counter() - started
    report = {"seconds": seconds, "growth_mb": (peak_rss() - baseline) / 1024**2}
    if queries and make_queries is not None:
        latencies = []
        all_queries = make_queries()
        for query in all_queries[:WARMUP_QUERIES]:  # first touches of the index, not timed
            search(index, query)
        for query in all_queries:
            started = time.perf_counter()
            search(index, query)
            latencies.append(time.perf_counter() - started)
        report["p50_ms"], report["p95_ms"] = np.percentile(np.array(latencies) * 1000, [50, 95])
    return report


def faiss_ours(work: str, factory: str, metric: str):
    from datasets import load_from_disk

    from ds_assets.index import faiss

    return (
        lambda: load_from_disk(os.path.join(work, "vectors")),
        lambda dataset: faiss.build(dataset, "vector", index_factory=factory, metric=metric),
        lambda index, query: index.search(query, k=10),
        lambda: np.load(os.path.join(work, "vector_queries.npy")),
    )


def faiss_read(work: str, factory: str, metric: str):
    """Only read the vectors batch by batch from the memory-mapped dataset: the part of a build
    that the raw reference, handed a matrix already in memory, does not pay."""
    from datasets import load_from_disk

    from ds_assets.index.base import vector_batches

    def read(dataset):
        return sum(len(matrix) for _, matrix in vector_batches(dataset, "vector"))

    return (
        lambda: load_from_disk(os.path.join(work, "vectors")),
        read,
        None,
        None,
    )


def faiss_raw_file(work: str, factory: str, metric: str):
    """Raw FAISS fed from the same memory-mapped dataset: the column's Arrow chunks gathered
    into one numpy matrix with pyarrow (the shortest route a user of the raw library has from
    a stored dataset to `add`), then the same build as `faiss_raw`."""
    from datasets import load_from_disk

    _, build_in_memory, search, queries = faiss_raw(work, factory, metric)

    def build(dataset):
        chunks = dataset.data.table.column("vector").chunks
        matrix = np.concatenate([chunk.values.to_numpy() for chunk in chunks])
        return build_in_memory(matrix.reshape(len(dataset), -1))

    return lambda: load_from_disk(os.path.join(work, "vectors")), build, search, queries


def faiss_datasets(work: str, factory: str, metric: str):
    """`datasets`' own FAISS index over the same memory-mapped dataset (l2 only: it has no
    cosine), trained on as many rows as ours, the first ones."""
    import faiss as raw
    from datasets import load_from_disk

    from ds_assets.index.faiss import default_train_size

    def build(dataset):
        probe = raw.index_factory(DIMENSION, factory)
        train_size = None if probe.is_trained else default_train_size(probe, VECTORS, DIMENSION)
        dataset.add_faiss_index("vector", string_factory=factory, train_size=train_size)
        return dataset

    def search(dataset, query: np.ndarray):
        return dataset.search("vector", query, k=10)

    return (
        lambda: load_from_disk(os.path.join(work, "vectors")),
        build,
        search,
        lambda: np.load(os.path.join(work, "vector_queries.npy")),
    )


def faiss_raw(work: str, factory: str, metric: str):
    import faiss as raw

    from ds_assets.index.faiss import METRICS, TRAIN_SEED, default_train_size

    def build(matrix: np.ndarray):
        index = raw.index_factory(matrix.shape[1], factory, METRICS[metric])
        if metric == "cosine":
            raw.normalize_L2(matrix)  # in place: this process loaded its own copy
        if not index.is_trained:
            size = default_train_size(index, len(matrix), matrix.shape[1])
            rng = np.random.default_rng(TRAIN_SEED)
            index.train(matrix[np.sort(rng.choice(len(matrix), size=size, replace=False))])
        index.add(matrix)
        return index

    def search(index, query: np.ndarray):
        query = query[None, :].copy()
        if metric == "cosine":
            raw.normalize_L2(query)
        return index.search(query, 10)

    return (
        lambda: np.load(os.path.join(work, "vectors.npy")),
        build,
        search,
        lambda: np.load(os.path.join(work, "vector_queries.npy")),
    )


def fulltext_ours(work: str, factory: str, metric: str):
    from datasets import load_from_disk

    from ds_assets.index import fulltext

    folder = tempfile.mkdtemp(dir=work, prefix="fulltext-ours-")
    return (
        lambda: load_from_disk(os.path.join(work, "docs")),
        lambda dataset: fulltext.build(dataset, ["title", "body"], folder),
        lambda index, query: index.search(query, k=10),
        lambda: _text_queries(work),
    )


def fulltext_read(work: str, factory: str, metric: str):
    """Only turn the texts into Python strings batch by batch, as `fulltext.build` does: the
    part the raw reference, handed lists already in memory, does not pay."""
    from datasets import load_from_disk

    def read(dataset):
        for table in dataset.with_format("arrow").iter(batch_size=10_000):
            table.column("title").to_pylist(), table.column("body").to_pylist()

    return lambda: load_from_disk(os.path.join(work, "docs")), read, None, None


def fulltext_raw(work: str, factory: str, metric: str):
    import tantivy
    from datasets import load_from_disk

    from ds_assets.index.fulltext import WRITER_HEAP_BYTES

    folder = tempfile.mkdtemp(dir=work, prefix="fulltext-raw-")

    def setup():
        table = load_from_disk(os.path.join(work, "docs")).data
        # The reference gets its texts as Python lists already in memory.
        return table.column("title").to_pylist(), table.column("body").to_pylist()

    def build(texts):
        titles, bodies = texts
        builder = tantivy.SchemaBuilder()
        builder.add_text_field("title")
        builder.add_text_field("body")
        builder.add_unsigned_field("_row", indexed=True, fast=True)
        index = tantivy.Index(builder.build(), path=folder, reuse=False)
        writer = index.writer(heap_size=WRITER_HEAP_BYTES)
        for row, (title, body) in enumerate(zip(titles, bodies, strict=True)):
            document = tantivy.Document()
            document.add_unsigned("_row", row)
            document.add_text("title", title)
            document.add_text("body", body)
            writer.add_document(document)
        writer.commit()
        writer.wait_merging_threads()
        index.reload()
        return index

    def search(index, query: str):
        searcher = index.searcher()
        hits = searcher.search(index.parse_query(query, ["title", "body"]), 10, count=False).hits
        return searcher.fast_field_values("_row", [address for _, address in hits])

    return setup, build, search, lambda: _text_queries(work)


def _text_queries(work: str) -> list[str]:
    with open(os.path.join(work, "text_queries.json")) as file:
        return json.load(file)


MODES = {
    "faiss": faiss_ours,
    "faiss-raw": faiss_raw,
    "faiss-read": faiss_read,
    "faiss-raw-file": faiss_raw_file,
    "faiss-datasets": faiss_datasets,
    "fulltext": fulltext_ours,
    "fulltext-raw": fulltext_raw,
    "fulltext-read": fulltext_read,
}


# --- the run -------------------------------------------------------------------------------


def measure_in_process(mode: str, work: str, factory: str, metric: str, queries: bool) -> dict:
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--measure", mode, work, factory, metric,
         *([] if queries else ["--no-queries"])],
        capture_output=True, text=True, check=False, env=dict(os.environ, PYTHONPATH=ROOT),
    )  # fmt: skip
    if out.returncode:
        raise RuntimeError(f"{mode} {factory} {metric} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_pair(raw_mode: str, our_mode: str, work: str, factory: str = "", metric: str = ""):
    """(raw, ours): REPEAT fresh processes each, alternated so that a change in the machine's
    load hits both alike; best time of each, RSS growth of the first, and the query latencies
    of the run with the lowest p50 among the first QUERY_RUNS."""
    reports = {raw_mode: [], our_mode: []}
    for attempt in range(REPEAT):
        for mode in (raw_mode, our_mode):
            queries = attempt < QUERY_RUNS
            reports[mode].append(measure_in_process(mode, work, factory, metric, queries))
    return tuple(_best(reports[mode]) for mode in (raw_mode, our_mode))


def _best(reports: list[dict]) -> dict:
    timed = [report for report in reports if "p50_ms" in report]
    fastest = min(timed, key=lambda report: report["p50_ms"]) if timed else {}
    latencies = {name: fastest[name] for name in ("p50_ms", "p95_ms") if name in fastest}
    return {**reports[0], **latencies, "seconds": min(report["seconds"] for report in reports)}


def best_read(mode: str, work: str) -> dict:
    reports = [measure_in_process(mode, work, "", "", False) for _ in range(REPEAT)]
    return min(reports, key=lambda report: report["seconds"])


def build_line(label: str, rows: int, unit: str, megabytes: float, report: dict, ratio=None):
    seconds = report["seconds"]
    text = (
        f"{label:<44} {seconds:8.2f} s {rows / seconds:>12,.0f} {unit}/s "
        f"{megabytes / seconds:>8,.1f} MB/s  peak RSS +{report['growth_mb']:,.0f} MB"
    )
    if ratio is not None:
        text += f"  ratio {ratio:.2f}x (target <= 1.2x)"
    print(text, flush=True)


def query_line(label: str, report: dict, reference: dict | None = None) -> None:
    text = f"{label:<44} p50 {report['p50_ms']:8.3f} ms  p95 {report['p95_ms']:8.3f} ms"
    if reference is not None:
        text += (
            f"  ratio p50 {report['p50_ms'] / reference['p50_ms']:.2f}x"
            f"  p95 {report['p95_ms'] / reference['p95_ms']:.2f}x"
        )
    print(text, flush=True)


def main() -> None:
    work = tempfile.mkdtemp(prefix="ds-assets-index-bench-")
    try:
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        make_data(work)
        vector_mb = VECTORS * DIMENSION * 4 / 1e6
        print(
            f"FAISS: {VECTORS:,} vectors of {DIMENSION} float32 ({vector_mb:,.0f} MB), "
            f"{VECTOR_QUERIES} queries; best of {REPEAT}"
        )
        read = best_read("faiss-read", work)
        build_line("read only (vector_batches, memory map)", VECTORS, "vectors", vector_mb, read)
        for factory, metric in FAISS_CASES:
            raw, ours = run_pair("faiss-raw", "faiss", work, factory, metric)
            name = f"{factory} {metric}"
            build_line(f"raw FAISS train+add ({name})", VECTORS, "vectors", vector_mb, raw)
            ratio = ours["seconds"] / raw["seconds"]
            build_line(f"faiss.build ({name})", VECTORS, "vectors", vector_mb, ours, ratio)
            if factory == "Flat":
                from_file, _ = run_pair("faiss-raw-file", "faiss", work, factory, metric)
                label = f"raw FAISS from the dataset file ({name})"
                build_line(label, VECTORS, "vectors", vector_mb, from_file)
                ratio = ours["seconds"] / from_file["seconds"]
                print(f"{'':<44} faiss.build against it: ratio {ratio:.2f}x", flush=True)
            query_line(f"raw FAISS search ({name})", raw)
            query_line(f"FaissIndex.search ({name})", ours, raw)
            if metric == "l2":
                library = measure_in_process("faiss-datasets", work, factory, metric, True)
                label = f"datasets add_faiss_index ({name})"
                build_line(label, VECTORS, "vectors", vector_mb, library)
                print(f"{'':<44} faiss.build is {library['seconds'] / ours['seconds']:.1f}x faster")
                query_line(f"datasets search ({name})", library, raw)
        text_mb = _text_megabytes(work)
        print(
            f"full-text: {DOCS:,} documents, title {TITLE_WORDS} + body {BODY_WORDS} words "
            f"({text_mb:,.0f} MB of text), {TEXT_QUERIES} queries (half phrases); "
            f"best of {REPEAT}"
        )
        read = best_read("fulltext-read", work)
        build_line("read only (texts to Python, batch by batch)", DOCS, "docs", text_mb, read)
        raw, ours = run_pair("fulltext-raw", "fulltext", work)
        build_line("raw tantivy writer loop", DOCS, "docs", text_mb, raw)
        build_line("fulltext.build", DOCS, "docs", text_mb, ours, ours["seconds"] / raw["seconds"])
        query_line("raw tantivy parse + search + row field", raw)
        query_line("FullTextIndex.search", ours, raw)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _text_megabytes(work: str) -> float:
    from datasets import load_from_disk

    table = load_from_disk(os.path.join(work, "docs")).data
    lengths = [pc.sum(pc.binary_length(table.column(name))).as_py() for name in ("title", "body")]
    return sum(lengths) / 1e6


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        mode, work, factory, metric = sys.argv[2:6]
        print(json.dumps(measure(mode, work, "--no-queries" not in sys.argv, factory, metric)))
    else:
        main()
