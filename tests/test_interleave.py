"""The Arrow interleave gives exactly `datasets.interleave_datasets`' rows for streams."""

import datasets
import pytest
from datasets import Dataset, IterableDataset

from ds_assets.ops.interleave import interleave_streams


def stream(size: int, offset: int, num_shards: int = 1):
    return Dataset.from_dict({"x": list(range(offset, offset + size))}).to_iterable_dataset(
        num_shards=num_shards
    )


CASES = [
    # sizes, probabilities, seed
    ((5, 3), None, None),
    ((1500, 2300), None, None),
    ((7, 4, 9), None, None),
    ((2500, 1200), [0.5, 0.5], 0),
    ((3000, 700), [0.8, 0.2], 42),
    ((400, 900, 1300), [0.2, 0.3, 0.5], 7),
    ((1, 50), [0.9, 0.1], 3),
]


@pytest.mark.parametrize(
    "strategy", ["first_exhausted", "all_exhausted", "all_exhausted_without_replacement"]
)
@pytest.mark.parametrize(("sizes", "probabilities", "seed"), CASES)
def test_same_rows_as_datasets(sizes, probabilities, seed, strategy):
    def inputs():
        return [
            stream(size, 10_000 * i, num_shards=2 if size > 1 else 1)
            for i, size in enumerate(sizes)
        ]

    expected = datasets.interleave_datasets(
        inputs(), probabilities=probabilities, seed=seed, stopping_strategy=strategy
    )
    ours = interleave_streams(
        inputs(), inputs()[0].features, probabilities, seed, stopping_strategy=strategy
    )
    expected_rows = [r["x"] for r in expected]
    assert [r["x"] for r in ours] == expected_rows
    assert len(expected_rows) > 0


def test_iterating_twice_gives_the_same_rows():
    ours = interleave_streams(
        [stream(30, 0), stream(20, 100)], stream(1, 0).features, [0.4, 0.6], 1
    )
    assert list(ours) == list(ours)


def test_an_empty_source_behaves_as_in_datasets():
    features = stream(1, 0).features

    def inputs():
        empty = IterableDataset.from_generator(lambda: iter(()), features=features)
        return [stream(5, 0), empty]

    expected = [r["x"] for r in datasets.interleave_datasets(inputs())]
    assert [r["x"] for r in interleave_streams(inputs(), stream(1, 0).features)] == expected
