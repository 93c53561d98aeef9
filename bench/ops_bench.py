"""Dataset ops as assets against `datasets` called directly, in one run.

Two inputs of 500,000 rows each (int64 id, 100-char text, int64 label, float32 score):
interleave (map-style and streaming) and concatenate. The asset layer's cost is measured by
invoking each asset's body directly (validation + op), against the bare `datasets` call.
"""

import os
import sys
import time

from datasets import concatenate_datasets, disable_progress_bars, interleave_datasets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from store_bench import make_dataset  # noqa: E402

from ds_assets import concatenate_asset, interleave_asset  # noqa: E402
from ds_assets.ops.interleave import interleave_streams  # noqa: E402

ROWS = int(os.environ.get("BENCH_OPS_ROWS", 500_000))
PROBABILITIES, SEED = [0.5, 0.5], 0


def timed(function):
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def best_pair(direct, through_asset, repeat: int = 3) -> tuple[float, float]:
    """Best of `repeat` alternating runs of each, after one untimed warm-up of each."""
    direct(), through_asset()
    pairs = [(timed(direct)[0], timed(through_asset)[0]) for _ in range(repeat)]
    return min(p[0] for p in pairs), min(p[1] for p in pairs)


def consume(stream) -> int:
    return sum(t.num_rows for t in stream.with_format("arrow").iter(batch_size=1000))


def main() -> None:
    disable_progress_bars()
    left = make_dataset(ROWS)
    right = make_dataset(ROWS).map(lambda b: {"id": [i + ROWS for i in b["id"]]}, batched=True)
    print(f"2 x {ROWS:,} rows")

    interleave = interleave_asset("mixed", ["left", "right"], PROBABILITIES, SEED)
    concatenate = concatenate_asset("both", ["left", "right"])
    direct_i, asset_i = best_pair(
        lambda: interleave_datasets([left, right], PROBABILITIES, SEED),
        lambda: interleave(left=left, right=right),
    )
    direct_c, asset_c = best_pair(
        lambda: concatenate_datasets([left, right]), lambda: concatenate(left=left, right=right)
    )
    print(f"  map-style interleave: datasets {direct_i:.3f} s, asset body {asset_i:.3f} s "
          f"({asset_i / direct_i:.2f}x)")  # fmt: skip
    print(f"  concatenate:          datasets {direct_c:.3f} s, asset body {asset_c:.3f} s "
          f"({asset_c / direct_c:.2f}x)")  # fmt: skip

    def streams():
        return [left.to_iterable_dataset(num_shards=4), right.to_iterable_dataset(num_shards=4)]

    ours_s, ours_rows = timed(
        lambda: consume(interleave_streams(streams(), left.features, PROBABILITIES, SEED))
    )
    print(f"  streaming interleave, ds-assets: {ours_s:.2f} s, {ours_rows / ours_s:,.0f} rows/s")
    theirs_s, theirs_rows = timed(
        lambda: consume(interleave_datasets(streams(), PROBABILITIES, SEED))
    )
    print(
        f"  streaming interleave, datasets:  {theirs_s:.2f} s, {theirs_rows / theirs_s:,.0f} rows/s"
    )
    assert ours_rows == theirs_rows
    print(f"  streaming interleave speed-up: {theirs_s / ours_s:.0f}x")


if __name__ == "__main__":
    main()
