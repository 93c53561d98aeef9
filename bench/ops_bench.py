"""Dataset ops as assets against `datasets` called directly, in one run.

Two inputs of 500,000 rows each (int64 id, 100-char text, int64 label, float32 score):
map, filter, interleave (map-style and streaming) and concatenate. The asset layer's cost is
the asset's own compute function (validation + op; reached through Dagster's internal
`op.compute_fn.decorated_fn`) against the bare `datasets` call. Dagster's fixed cost per direct
invocation (building a context) is printed apart: it does not grow with the data.
"""

import os
import sys
import time

from datasets import concatenate_datasets, disable_progress_bars, interleave_datasets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from store_bench import make_dataset  # noqa: E402

from ds_assets import concatenate_asset, filter_asset, interleave_asset, map_asset  # noqa: E402
from ds_assets.ops.interleave import interleave_streams  # noqa: E402

ROWS = int(os.environ.get("BENCH_OPS_ROWS", 500_000))
PROBABILITIES, SEED = [0.5, 0.5], 0


def timed(function):
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def body(asset_definition):
    """The asset's own compute function, without Dagster's invocation machinery."""
    return asset_definition.op.compute_fn.decorated_fn


def best_pair(direct, through_asset, repeat: int = 5) -> tuple[float, float]:
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
        lambda: body(interleave)(left=left, right=right),
    )
    direct_c, asset_c = best_pair(
        lambda: concatenate_datasets([left, right]),
        lambda: body(concatenate)(left=left, right=right),
    )

    def add_length(batch):
        return {"length": [len(t) for t in batch["text"]]}

    def keep_even(batch):
        return [label % 2 == 0 for label in batch["label"]]

    mapped = map_asset("lengths", "left", add_length, batched=True)
    kept = filter_asset("even", "left", keep_even, batched=True)
    direct_m, asset_m = best_pair(
        lambda: left.map(add_length, batched=True, load_from_cache_file=False),
        lambda: body(mapped)(dataset=left),
    )
    direct_f, asset_f = best_pair(
        lambda: left.filter(keep_even, batched=True, load_from_cache_file=False),
        lambda: body(kept)(dataset=left),
    )
    print(f"  map (batched):        datasets {direct_m:.3f} s, asset body {asset_m:.3f} s "
          f"({asset_m / direct_m:.2f}x)")  # fmt: skip
    print(f"  filter (batched):     datasets {direct_f:.3f} s, asset body {asset_f:.3f} s "
          f"({asset_f / direct_f:.2f}x)")  # fmt: skip
    print(f"  map-style interleave: datasets {direct_i:.3f} s, asset body {asset_i:.3f} s "
          f"({asset_i / direct_i:.2f}x)")  # fmt: skip
    print(f"  concatenate:          datasets {direct_c:.3f} s, asset body {asset_c:.3f} s "
          f"({asset_c / direct_c:.2f}x)")  # fmt: skip

    invoke = min(timed(lambda: concatenate(left=left, right=right))[0] for _ in range(3))
    body_c = min(timed(lambda: body(concatenate)(left=left, right=right))[0] for _ in range(3))
    print(f"  Dagster's fixed cost of one direct asset invocation: {invoke - body_c:.3f} s")

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
