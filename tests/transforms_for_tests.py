"""Module-level transforms for the lazy transform tests (they must import by path)."""

import random


def shout(batch):
    return {**batch, "loud": [text.upper() for text in batch["text"]]}


def shout_backwards(batch):
    return {**batch, "loud": [text.upper()[::-1] for text in batch["text"]]}


def measure(batch):
    return {**batch, "loud_length": [len(text) for text in batch["loud"]]}


def jitter(batch, scale=1.0):
    return {**batch, "noisy": [x + random.uniform(-scale, scale) for x in batch["x"]]}


def shout_ids(batch):
    return {**batch, "id": [f"id {i}!" for i in batch["id"]]}


def only_loud(batch):
    return {"loud": [text.upper() for text in batch["text"]]}


def count_columns(batch):
    return {**batch, "seen": [len(batch)] * len(next(iter(batch.values())))}


def scaled(row, factor=1):
    return {"m": row["n"] * factor}


class Scale:
    """A callable object: its state (the factor) is part of what it does."""

    def __init__(self, factor):
        self.factor = factor

    def __call__(self, row):
        return {"m": row["n"] * self.factor}
