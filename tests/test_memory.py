"""Saving a 2 GB stream stays in constant memory (peak RSS measured in a fresh process)."""

from tests.bench_scripts import run_bench_script

LIMIT_MB = 300


def probe(*arguments):
    return run_bench_script("stream_memory.py", *arguments)


def test_saving_a_2gb_stream_stays_under_300mb_above_baseline(tmp_path):
    report = probe(str(tmp_path), "2")
    assert report["bytes"] >= 2 * 1000**3
    assert report["shards"] >= 4  # cut at the default 500MB
    assert report["growth_mb"] < LIMIT_MB, report


def test_interleaving_two_1gb_streams_stays_under_300mb_above_baseline(tmp_path):
    report = probe(str(tmp_path), "2", "--interleave")
    assert report["bytes"] >= 2 * 1000**3  # all_exhausted: every row of both inputs, at least
    assert report["growth_mb"] < LIMIT_MB, report
