"""Sparse-quantization-reuse: k-means, pruning, and the paper's ratios."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from libcryptorec.compression import compress, grid_step, kmeans_1d, quantize, row_reuse
from tests.test_model import make_model, random_ratings


def test_row_reuse_counts_distinct_nonzero_values_per_row() -> None:
    indices = np.array([[1, 1, 2, 0], [3, 3, 3, 3], [0, 0, 0, 0]])
    assert row_reuse(indices) == (2 + 1 + 0, 3 + 4 + 0)


@settings(max_examples=30, deadline=None)
@given(
    W=arrays(np.float32, (7, 9), elements=st.floats(-2, 2, width=32)),
    k=st.integers(1, 40),
    threshold=st.sampled_from([0.0, 0.05, 0.5]),
)
def test_quantize_properties(W: np.ndarray, k: int, threshold: float) -> None:
    q = quantize(W, threshold, k)
    dense = q.dense()
    assert dense.shape == W.shape
    peak = float(np.abs(W[np.abs(W) >= threshold]).max(initial=0.0))
    step = grid_step(peak) if peak > 0 else np.inf
    # Pruned: under the threshold, or under half a grid step (it would round to 0).
    kept = (np.abs(W) >= threshold) & (np.abs(W) >= step / 2)
    assert np.all(dense[~kept] == 0)
    assert len(np.unique(dense[kept])) <= k
    # Every shared value lies on the grid: fixed-point schemes hold it exactly.
    assert np.array_equal(q.codebook / step, np.rint(q.codebook / step)) or not kept.any()
    if kept.any():
        # every kept weight goes to its nearest (non-zero) shared value
        centroids = q.codebook[1:]
        nearest = centroids[np.abs(W[kept][:, None] - centroids[None, :]).argmin(axis=1)]
        np.testing.assert_allclose(
            np.abs(dense[kept] - W[kept]), np.abs(nearest - W[kept]), atol=1e-6
        )


def test_kmeans_recovers_separated_clusters() -> None:
    rng = np.random.default_rng(0)
    values = np.r_[rng.normal(-1, 0.01, 500), rng.normal(2, 0.01, 500)].astype(np.float32)
    centroids = kmeans_1d(values, 2)
    np.testing.assert_allclose(centroids, [-1, 2], atol=0.01)


def test_compress_reports_paper_ratios_and_keeps_predictions() -> None:
    model = make_model(m=40, d=30, seed=4)
    packed = compress(model, threshold=0.05, clusters=16)
    s = packed.stats
    assert s.pruning_ratio == pytest.approx(
        ((np.abs(model.A) < 0.05).sum() + (np.abs(model.Q) < 0.05).sum()) / (2 * model.A.size)
    )
    shared_a, all_a = row_reuse(packed.A.indices)
    shared_q, all_q = row_reuse(packed.Q.indices)
    assert s.reuse_ratio == pytest.approx(1 - (shared_a + shared_q) / (all_a + all_q))
    assert 0 < s.reuse_ratio < 1
    assert 0 < s.reuse_ratio_products < 1
    assert packed.model.meta["compression"]["clusters"] == 16
    # with enough shared values, predictions barely move
    fine = compress(model, threshold=0.01, clusters=256)
    R = random_ratings(20, 40, 0.3, 5)
    assert np.abs(fine.model.predict(R) - model.predict(R)).max() < 0.05


def test_quantize_rejects_too_many_clusters() -> None:
    with pytest.raises(ValueError, match="clusters"):
        quantize(np.zeros((2, 2), np.float32), 0.0, 70_000)


def test_threshold_for_fraction_prunes_that_fraction() -> None:
    from libcryptorec.compression import threshold_for_fraction

    model = make_model(m=50, d=20, seed=8)
    packed = compress(model, threshold_for_fraction(model, 0.5), 64)
    assert packed.stats.pruning_ratio == pytest.approx(0.5, abs=0.01)
