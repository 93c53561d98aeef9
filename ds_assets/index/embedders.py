"""A small deterministic text embedder that needs no model download.

`hashing_embedder` is a stand-in for a real embedding model, for demos, tests and notebooks:
feature hashing (the "hashing trick") of lowercased word unigrams and character trigrams,
signed, L2-normalized, float32. Texts that share words or word pieces get close vectors, so a
text query finds the documents sharing its words; it knows nothing of meaning (no synonyms, no
paraphrases). Written here because the libraries that do feature hashing (scikit-learn's
`HashingVectorizer`) would be a large dependency for twenty lines; the hash is `zlib.crc32`,
stable across processes and platforms (Python's own `hash` of a string is salted per process).

To use a real model, give the index any `"module:function"` that takes a list of strings and
returns a float32 matrix with one row per string, for example:

    # my_project/embedders.py
    from sentence_transformers import SentenceTransformer

    _model = None

    def minilm(texts: list[str]) -> "np.ndarray":
        global _model
        _model = _model or SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
        return _model.encode(texts, batch_size=64, convert_to_numpy=True).astype("float32")

and build with `embed="my_project.embedders:minilm"` (queries are embedded by the same function).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import numpy as np

_WORD = re.compile(r"\w+")
_SIGN_BIT = np.uint32(1 << 31)
_TRIGRAM_WEIGHT = 0.5  # a shared whole word counts more than one shared piece of a word


def hashing_embedder(texts: Sequence[str], dimension: int = 64) -> np.ndarray:
    """L2-normalized float32 vectors (one row per text) of hashed word unigrams and character
    trigrams. Deterministic: the same text gives the same vector in every process.

    A stand-in for a real model (see the module docstring for plugging one in). A text with no
    word characters gets the zero vector.

    >>> vectors = hashing_embedder(["red apple pie", "apple pie", "blue whale"])
    >>> vectors.shape, vectors.dtype
    ((3, 64), dtype('float32'))
    >>> bool(vectors[0] @ vectors[1] > vectors[0] @ vectors[2])
    True
    """
    if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
        raise ValueError(
            f"hashing_embedder: dimension must be a positive integer, got {dimension!r}"
        )
    rows, hashes, weights = [], [], []
    for row, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"hashing_embedder: text {row} is {type(text).__name__}, not a string")
        for feature, weight in _features(text):
            rows.append(row)
            hashes.append(zlib.crc32(feature.encode()))
            weights.append(weight)
    matrix = np.zeros((len(texts), dimension), dtype=np.float32)
    if hashes:
        codes = np.asarray(hashes, dtype=np.uint32)
        # The top bit picks the sign, so colliding features cancel out on average.
        signs = np.where(codes & _SIGN_BIT, -1.0, 1.0).astype(np.float32)
        np.add.at(matrix, (np.asarray(rows), codes % dimension), signs * weights)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    np.divide(matrix, norms, out=matrix, where=norms > 0)
    return matrix


def _features(text: str) -> list[tuple[str, float]]:
    """Words ("w:" prefix) and character trigrams of each word padded with spaces ("c:")."""
    features = []
    for word in _WORD.findall(text.lower()):
        features.append(("w:" + word, 1.0))
        padded = f" {word} "
        features.extend(("c:" + padded[i : i + 3], _TRIGRAM_WEIGHT) for i in range(len(padded) - 2))
    return features
