"""WebDataset reading speed and memory: ds_assets.formats.webdataset against the references.

    .venv/bin/python bench/webdataset_bench.py            # WDS_BENCH_SAMPLES=30000 by default
    WDS_BENCH_SAMPLES=2000 .venv/bin/python bench/webdataset_bench.py

Writes WDS_BENCH_SHARDS (default 10) tar shards of samples like an image-caption set (a JPEG of
about 3 KB, a caption, a class, a JSON record), then runs every measurement in a fresh process
(so peak RSS, read from /proc/self/status VmHWM, is its own), WDS_BENCH_REPEATS (default 3)
rounds of all of them, and prints one line each with the best time and the highest peak:

- raw loop: `webdataset` 1.0.2's own iteration (`wds.WebDataset(urls)`), samples as bytes;
- ours as bytes: `parse_stream(urls)` iterated row by row, and `parse(urls)`, against the raw loop
  (target: within 2x);
- decoded: `parse_stream(urls, decode=True)` against `datasets`' `webdataset` builder streaming
  (both with `.decode(False)`, so no image is decoded), and `parse(urls, decode=True)` against
  `load_dataset("webdataset", ...)` preparing its Arrow cache (target: at least as fast).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import time

from memory import current_rss, peak_rss  # bench/memory.py: the script folder is on sys.path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEASUREMENTS = {
    # name: (reference it is compared with, or None for a reference)
    "webdataset raw loop": None,
    "ours parse_stream (bytes)": "webdataset raw loop",
    "ours parse (bytes)": "webdataset raw loop",
    "datasets streaming (decode=False)": None,
    "ours parse_stream decode=True (decode=False)": "datasets streaming (decode=False)",
    "datasets load_dataset": None,
    "ours parse decode=True": "datasets load_dataset",
}


def write_shards(folder: str, samples: int, shards: int) -> list[str]:
    import numpy as np
    import webdataset as wds
    from PIL import Image

    rng = np.random.default_rng(0)
    jpegs = []
    for _ in range(16):
        picture = Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=90)
        jpegs.append(buffer.getvalue())
    urls = []
    per_shard = -(-samples // shards)
    for shard in range(shards):
        url = os.path.join(folder, f"shard-{shard:04d}.tar")
        urls.append(url)
        with wds.TarWriter(url) as sink:
            for number in range(shard * per_shard, min(samples, (shard + 1) * per_shard)):
                sink.write(
                    {
                        "__key__": f"sample{number:08d}",
                        "jpg": jpegs[number % len(jpegs)],
                        "txt": f"a photo of thing number {number}",
                        "cls": number % 1000,
                        "json": {"width": 32, "height": 32, "source": "bench", "n": number},
                    }
                )
    return urls


def count(iterable) -> int:
    rows = 0
    for _ in iterable:
        rows += 1
    return rows


def run(name: str, urls: list[str], cache: str) -> int:
    """Rows read by measurement `name`; imports are done before the clock and RSS baseline."""
    if name == "webdataset raw loop":
        import webdataset as wds

        return lambda: count(wds.WebDataset(urls, shardshuffle=False))
    if name.startswith("datasets"):
        from datasets import load_dataset

        if name == "datasets load_dataset":
            return lambda: len(
                load_dataset(
                    "webdataset", data_files={"train": urls}, split="train", cache_dir=cache
                )
            )
        return lambda: count(
            load_dataset("webdataset", data_files={"train": urls}, split="train", streaming=True)
            .decode(False)
        )  # fmt: skip
    from ds_assets.formats.webdataset import parse, parse_stream

    if name == "ours parse_stream (bytes)":
        return lambda: count(parse_stream(urls))
    if name == "ours parse (bytes)":
        return lambda: len(parse(urls))
    if name == "ours parse_stream decode=True (decode=False)":
        return lambda: count(parse_stream(urls, decode=True).decode(False))
    if name == "ours parse decode=True":
        return lambda: len(parse(urls, decode=True))
    raise ValueError(name)


def measure(name: str, urls: list[str]) -> dict:
    """Run in a fresh process: one measurement, as a dict."""
    with tempfile.TemporaryDirectory() as cache:
        os.environ["DS_ASSETS_CACHE"] = cache
        os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
        job = run(name, urls, cache)
        baseline = current_rss()
        started = time.perf_counter()
        rows = job()
        seconds = time.perf_counter() - started
        return {"rows": rows, "seconds": seconds, "growth": peak_rss() - baseline}


def in_subprocess(name: str, urls: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--one", name, *urls],
        capture_output=True, text=True, cwd=ROOT, check=False,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    samples = int(os.environ.get("WDS_BENCH_SAMPLES", "30000"))
    shards = int(os.environ.get("WDS_BENCH_SHARDS", "10"))
    with tempfile.TemporaryDirectory() as folder:
        urls = write_shards(folder, samples, shards)
        megabytes = sum(os.path.getsize(url) for url in urls) / 1e6
        print(f"{samples} samples in {shards} shards, {megabytes:.1f} MB")
        repeats = int(os.environ.get("WDS_BENCH_REPEATS", "3"))
        runs: dict[str, list[dict]] = {name: [] for name in MEASUREMENTS}
        for _ in range(repeats):  # rounds, so that a busy moment hits every measurement alike
            for name in MEASUREMENTS:
                result = in_subprocess(name, urls)
                assert result["rows"] == samples, (name, result)
                runs[name].append(result)
        best = {name: min(r["seconds"] for r in results) for name, results in runs.items()}
        for name, reference in MEASUREMENTS.items():
            seconds = best[name]
            growth = max(r["growth"] for r in runs[name])
            line = (
                f"{name:46s} {samples / seconds:10,.0f} samples/s {megabytes / seconds:8.1f} MB/s "
                f"peak RSS +{growth / 2**20:6.1f} MB"
            )
            if reference:
                line += f"  speed x{best[reference] / seconds:.2f} of {reference}"
            print(line, flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        print(json.dumps(measure(sys.argv[2], sys.argv[3:])))
    else:
        main()
