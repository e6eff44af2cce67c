"""The ranking model (libcryptorec/ranking_model.py): its closed form, its rank reduction, how it
chooses, and what it serves (RELIABILITY.md line 37: what a ranking model's scores are)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from libcryptorec.baselines.item_models import Ease, EaseSetting, Popularity
from libcryptorec.model import RANKING
from libcryptorec.ranking import ranking_scores
from libcryptorec.ranking_model import (
    MAX_ITEMS,
    Q_PEAK,
    Candidate,
    RankingConfig,
    choose,
    low_rank,
    train_ranking,
    zero_diagonal_ridge,
)
from libcryptorec.splits import holdout_mask

SMALL = RankingConfig(dims=(2, 4, 8, 16), l2_factors=(0.5, 2.0))


def taste_groups(
    users: int = 400, items: int = 60, groups: int = 4, seed: int = 0
) -> sp.csr_matrix:
    """(users, items) ratings where each user belongs to a taste group: they rate mostly the
    group's items, and rate them highly; other items rarely and low. What co-occurrence
    models (and top-N lists) can learn, unlike ratings placed at random."""
    rng = np.random.default_rng(seed)
    group_of_item = np.arange(items) % groups
    group_of_user = rng.integers(0, groups, users)
    own = group_of_item[None, :] == group_of_user[:, None]
    rated = rng.random((users, items)) < np.where(own, 0.45, 0.06)
    rated[:, 0] |= ~rated.any(axis=1)  # nobody is empty
    stars = np.where(own, rng.integers(4, 6, (users, items)), rng.integers(1, 4, (users, items)))
    return sp.csr_matrix(np.where(rated, stars, 0).astype(np.float32))


def new_user_split(R: sp.csr_matrix, seed: int = 1) -> tuple[sp.csr_matrix, ...]:
    """(train, feed, test): the last quarter of R's rows are new users, their ratings 80/20."""
    n = R.shape[0]
    train, new = R[: 3 * n // 4], R[3 * n // 4 :].tocoo()
    held = holdout_mask(new.row.astype(np.int64), 0.2, np.random.default_rng(seed))

    def pick(mask: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix((new.data[mask], (new.row[mask], new.col[mask])), shape=new.shape)

    return train, pick(~held), pick(held)


def _constrained_columns(G: np.ndarray, C: np.ndarray, l2: float) -> np.ndarray:
    """The zero-diagonal ridge solved column by column on the free entries (no Lagrangian)."""
    m = len(G)
    B = np.zeros((m, m))
    for j in range(m):
        free = np.arange(m) != j
        system = G[np.ix_(free, free)] + l2 * np.eye(m - 1)
        B[free, j] = np.linalg.solve(system, C[free, j])
    return B


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(2, 12),
    l2=st.floats(0.1, 50.0),
    seed=st.integers(0, 2**16),
)
def test_zero_diagonal_ridge_is_the_constrained_least_squares(m: int, l2: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    X = rng.random((30, m)) * (rng.random((30, m)) < 0.5)
    Y = X * rng.uniform(0.5, 1.0, X.shape)
    G, C = X.T @ X, X.T @ Y
    B = zero_diagonal_ridge(G, C, l2)
    np.testing.assert_allclose(np.diag(B), 0.0, atol=1e-9)
    np.testing.assert_allclose(B, _constrained_columns(G, C, l2), atol=1e-8)
    # One eigendecomposition serves every lambda.
    np.testing.assert_allclose(zero_diagonal_ridge(G, C, l2, np.linalg.eigh(G)), B, atol=1e-8)


def test_low_rank_keeps_more_of_the_scores_than_a_truncated_svd() -> None:
    """The reduced-rank solution minimises ||X (B - A Q^T)||: never worse than the rank-d SVD
    of B, and exact at full rank."""
    R = taste_groups(users=200, items=30)
    X = R.toarray()
    G = X.T @ X
    B = zero_diagonal_ridge(G, G, 5.0)
    for d in (2, 5, 10):
        A, Q = low_rank(B, G, d)
        assert np.linalg.matrix_rank(A @ Q.T) <= d
        np.testing.assert_allclose(Q.T @ Q, np.eye(d), atol=1e-9)
        U, S, Vt = np.linalg.svd(B)
        svd = (U[:, :d] * S[:d]) @ Vt[:d]
        assert np.linalg.norm(X @ (B - A @ Q.T)) <= np.linalg.norm(X @ (B - svd)) + 1e-9
    A, Q = low_rank(B, G, 30)
    np.testing.assert_allclose(A @ Q.T, B, atol=1e-8)


def test_choose_takes_the_cheapest_rank_within_one_standard_error() -> None:
    """The one-standard-error rule: a cheaper rank is kept while it lags the best by no more
    than the noise of the per-user differences; a clear loss is not kept."""
    rng = np.random.default_rng(0)
    users = 400
    best = rng.uniform(0.0, 0.6, users)

    def candidate(dim: int, shift: float, noise: float) -> Candidate:
        values = np.clip(best - shift + rng.normal(0, noise, users), 0, 1)
        return Candidate(1.0, 10.0, dim, float(values.mean()), values)

    top = Candidate(1.0, 10.0, 256, float(best.mean()), best)
    within = candidate(128, 0.002, 0.05)  # 0.002 behind, per-user noise 0.05: SE 0.0025
    behind = candidate(64, 0.05, 0.05)  # clearly worse
    assert choose([behind, within, top]) == within
    assert choose([behind, within, top], standard_errors=0.0) == top
    assert choose([behind, top]) == top


def test_trained_ranking_model_ranks_far_better_than_popularity() -> None:
    train, feed, test = new_user_split(taste_groups())
    result = train_ranking(train, SMALL)
    model = result.model
    assert model.kind == RANKING
    assert model.ranks_only
    assert result.chosen is not None
    assert model.dim == result.chosen.dim
    assert np.all(model.item_means == 0)
    assert model.global_mean == 0
    assert float(np.abs(model.Q).max()) == pytest.approx(Q_PEAK)
    ndcg = ranking_scores(model.predict(feed), feed, test).ndcg
    popular = Popularity(train).scores(np.zeros(feed.shape[0], dtype=np.int64))
    baseline = ranking_scores(popular, feed, test).ndcg
    assert ndcg > 1.5 * baseline, (ndcg, baseline)
    # Within reach of full-rank EASE fitted on the same users plus the new users' feeding.
    R_all = sp.vstack([train, feed]).tocsr()
    rows = np.arange(train.shape[0], R_all.shape[0])
    ease = ranking_scores(Ease(R_all, EaseSetting(20.0)).scores(rows), feed, test).ndcg
    assert ndcg > 0.9 * ease, (ndcg, ease)


def test_ranking_scores_ignore_a_users_uniform_shift() -> None:
    """A ranking model reads how a user rated items relative to their own mean: someone who
    rates everything one star higher gets the same scores."""
    train, feed, _ = new_user_split(taste_groups())
    model = train_ranking(train, SMALL).model
    shifted = feed.copy()
    shifted.data += 1
    np.testing.assert_allclose(model.predict(shifted), model.predict(feed), atol=1e-5)


def test_a_prior_pulls_the_closed_form_toward_the_source_model() -> None:
    """Transfer: with a source model as the prior, the target model's scores move toward the
    source's; with an overwhelming lambda they are the source's."""
    train, feed, _ = new_user_split(taste_groups(seed=3))
    source = train_ranking(taste_groups(seed=4), SMALL).model
    config = RankingConfig(dims=(60,), l2_factors=(1e6,), score_magnitude=1.0)
    pulled = train_ranking(train, config, prior=source).model
    scratch = train_ranking(train, config).model
    target = source.predict(feed)

    def cosine(a: np.ndarray, b: np.ndarray) -> float:
        return float((a * b).sum() / np.linalg.norm(a) / np.linalg.norm(b))

    assert cosine(pulled.predict(feed), target) > 0.99
    assert cosine(pulled.predict(feed), target) > cosine(scratch.predict(feed), target)


def test_catalogues_beyond_the_closed_forms_reach_are_refused() -> None:
    R = sp.csr_matrix((3, MAX_ITEMS + 1), dtype=np.float32)
    with pytest.raises(ValueError, match="train the stars model instead"):
        train_ranking(R)


def test_accurate_mode_is_refused_for_a_ranking_model() -> None:
    train, feed, _ = new_user_split(taste_groups())
    model = train_ranking(train, SMALL).model
    with pytest.raises(ValueError, match="no accurate mode"):
        model.predict_accurate(feed)
    np.testing.assert_array_equal(model.clamp(np.array([-3.0, 9.0])), [-3.0, 9.0])
