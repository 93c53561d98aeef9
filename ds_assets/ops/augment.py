"""Reusable lazy transforms (import them by path in `lazy_transform_asset`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def gaussian_noise(batch: dict, columns: Sequence[str], std: float = 0.1) -> dict:
    """Add fresh Gaussian noise to numeric columns (scalars or vectors) on every access.

    >>> noisy = gaussian_noise({"x": [[0.0, 0.0]], "y": ["a"]}, columns=["x"], std=0.0)
    >>> noisy["x"], noisy["y"]
    ([[0.0, 0.0]], ['a'])
    """
    rng = np.random.default_rng()
    out = dict(batch)
    for column in columns:
        values = np.asarray(batch[column], dtype=np.float32)
        out[column] = (values + rng.normal(0.0, std, size=values.shape)).tolist()
    return out
