"""Incremental index assets: appending a new partition against rebuilding the whole index.

    INCREMENTAL_BENCH_PARTITIONS=10 INCREMENTAL_BENCH_ROWS=1000 \\
        python bench/index_incremental_bench.py

A `qdrant_index_asset(incremental=True)` over a dynamically partitioned dataset of short texts,
embedded with `hashing_embedder`, in Qdrant's embedded local mode on disk (the demo's setup),
materialized in real Dagster runs on an ephemeral instance. Measured, wall seconds of the index
asset's run:
- the first materialization (nothing stored yet: a full build over every partition),
- after one more partition arrives: the incremental materialization (append the new one),
- the same asset asked to rebuild (`ds_assets/rebuild=true` run tag): a full build again.
Timings never go into tests.
"""

import os
import random
import tempfile
import time

from dagster import (
    AssetExecutionContext,
    DagsterInstance,
    DynamicPartitionsDefinition,
    asset,
    materialize,
)
from datasets import Dataset

from ds_assets import qdrant_index_asset
from resources import DatasetIOManager, QdrantResource

PARTITIONS = int(os.environ.get("INCREMENTAL_BENCH_PARTITIONS", 10))
ROWS = int(os.environ.get("INCREMENTAL_BENCH_ROWS", 1000))
WORDS = [
    "penguin",
    "krill",
    "ice",
    "seal",
    "dive",
    "colony",
    "nest",
    "egg",
    "chick",
    "storm",
    "shore",
    "fish",
    "tide",
]


def _texts(day: int) -> list[str]:
    rng = random.Random(day)
    return [" ".join(rng.choices(WORDS, k=12)) for _ in range(ROWS)]


@asset(partitions_def=DynamicPartitionsDefinition(name="bench_days"))
def bench_notes(context: AssetExecutionContext) -> Dataset:
    return Dataset.from_dict({"text": _texts(int(context.partition_key))})


bench_index = qdrant_index_asset(
    "bench_notes_qdrant", bench_notes, collection="bench_notes", column="text",
    embed="ds_assets.index.embedders:hashing_embedder", incremental=True,
)  # fmt: skip


def _timed_index_run(instance, resources, tags=None) -> float:
    started = time.perf_counter()
    result = materialize([bench_notes, bench_index], resources=resources, instance=instance,
                         selection=[bench_index], tags=tags)  # fmt: skip
    assert result.success
    return time.perf_counter() - started


def _add_days(instance, resources, days: list[str]) -> None:
    instance.add_dynamic_partitions("bench_days", days)
    for day in days:
        materialize([bench_notes], resources=resources, instance=instance, partition_key=day)


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        resources = {
            "io_manager": DatasetIOManager(base_dir=os.path.join(work, "data")),
            "qdrant": QdrantResource(path=os.path.join(work, "qdrant")),
        }
        instance = DagsterInstance.ephemeral()
        _add_days(instance, resources, [str(day) for day in range(PARTITIONS)])
        first = _timed_index_run(instance, resources)
        _add_days(instance, resources, [str(PARTITIONS)])
        append = _timed_index_run(instance, resources)
        rebuild = _timed_index_run(instance, resources, tags={"ds_assets/rebuild": "true"})
    total = (PARTITIONS + 1) * ROWS
    print(f"Qdrant local mode on disk, {PARTITIONS} partitions of {ROWS} texts, then one more")
    print(f"first build ({PARTITIONS * ROWS} rows)          {first:7.2f} s")
    print(f"incremental: append {ROWS} rows        {append:7.2f} s")
    print(f"rebuild tag: all {total} rows          {rebuild:7.2f} s  "
          f"(append is {rebuild / append:.1f}x faster)")  # fmt: skip


if __name__ == "__main__":
    main()
