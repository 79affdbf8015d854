"""Shortened embeddings: the first values of each vector, L2-normalised again."""

from __future__ import annotations

import numpy as np

from locallab.services.embeddings import shorten


def test_shorten_keeps_the_head_and_renormalises_each_row() -> None:
    vectors = np.array([[3.0, 4.0, 12.0], [1.0, 0.0, 0.0]], dtype=np.float32)
    short = shorten(vectors, 2)
    assert short.dtype == np.float32 and short.shape == (2, 2)
    assert np.allclose(short, [[0.6, 0.8], [1.0, 0.0]])


def test_an_all_zero_head_stays_zero_rather_than_nan() -> None:
    short = shorten(np.array([[0.0, 0.0, 1.0]], dtype=np.float32), 2)
    assert np.isfinite(short).all() and not short.any()
