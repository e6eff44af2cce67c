"""Ranking metrics against cases worked out by hand, and properties over random scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from libcryptorec.ranking import (
    masked_scores,
    ranking_scores,
    top_n,
    top_n_agreement,
)


def _csr(rows: list[dict[int, float]], m: int) -> sp.csr_matrix:
    data = [(u, i, r) for u, row in enumerate(rows) for i, r in row.items()]
    u, i, r = zip(*data, strict=True) if data else ((), (), ())
    return sp.csr_matrix((r, (u, i)), shape=(len(rows), m))


def test_metrics_of_three_users_worked_by_hand() -> None:
    scores = np.array(
        [
            [0.9, 0.1, 0.8, 0.5, 0.7],  # fed item 0; liked 2 and 3: top 2 = [2, 4]
            [0.2, 0.2, 0.2, 0.9, 0.1],  # fed item 3; liked 4, ranked 4th after a 3-way tie
            [0.0, 0.0, 0.0, 0.0, 1.0],  # liked nothing: left out of the means, not of coverage
        ]
    )
    feed = _csr([{0: 5.0}, {3: 4.0}, {}], 5)
    test = _csr([{2: 5.0, 3: 4.0, 1: 2.0}, {4: 5.0}, {0: 3.0}], 5)
    got = ranking_scores(scores, feed, test, n=2)
    ndcg_first = 1.0 / (1.0 + 1.0 / math.log2(3))
    assert got.users == 2
    assert got.ndcg == pytest.approx(ndcg_first / 2)
    assert got.recall == pytest.approx(0.25)
    assert got.precision == pytest.approx(0.25)
    assert got.mrr == pytest.approx((1.0 + 1.0 / 4) / 2)
    assert got.coverage == pytest.approx(4 / 5)  # items 2, 4 | 0, 1 | 4, 0
    assert set(got.as_json(2)) == {"ndcg@2", "recall@2", "precision@2", "mrr", "coverage@2"}


def test_top_n_breaks_ties_by_index_and_never_returns_fed_items() -> None:
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 3.0]])
    ranked = masked_scores(scores, _csr([{2: 4.0}], 5))
    assert top_n(ranked, 3).tolist() == [[1, 4, 3]]
    with pytest.raises(ValueError, match="top 6"):
        top_n(ranked, 6)


def test_agreement_counts_sets_and_the_largest_rank_move() -> None:
    base = np.arange(20, dtype=float)[::-1][None, :].repeat(2, axis=0)  # item 0 best
    same_set = base.copy()
    same_set[0, [0, 9]] = same_set[0, [9, 0]]  # reorders inside the top 10
    assert top_n_agreement(base, same_set) == (1.0, 9)
    swapped = base.copy()
    swapped[1, [9, 10]] = swapped[1, [10, 9]]  # 10th and 11th trade places
    assert top_n_agreement(base, swapped) == (0.5, 1)
    assert top_n_agreement(base, base) == (1.0, 0)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    users=st.integers(1, 6),
    items=st.integers(10, 40),
)
def test_scoring_the_held_out_ratings_themselves_is_perfect(
    seed: int, users: int, items: int
) -> None:
    rng = np.random.default_rng(seed)
    test = sp.random(users, items, density=0.3, random_state=rng, format="csr")
    test.data = rng.integers(1, 6, test.nnz).astype(float)
    # Scores that rank every liked item above every other: NDCG and MRR are 1; recall is 1
    # whenever a user liked at most 10.
    scores = test.toarray() + rng.uniform(0, 0.5, (users, items))
    got = ranking_scores(scores, sp.csr_matrix((users, items)), test)
    liked = np.asarray((test >= 4).sum(axis=1)).ravel()
    if got.users:
        assert got.ndcg == pytest.approx(1.0)
        assert got.mrr == pytest.approx(1.0)
        expected_recall = np.mean(np.minimum(liked[liked > 0], 10) / liked[liked > 0])
        assert got.recall == pytest.approx(expected_recall)
    assert 0.0 < got.coverage <= 1.0


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_metrics_stay_in_range_and_top_n_matches_a_full_sort(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 5, (4, 30)).astype(float)  # many ties
    feed = sp.random(4, 30, density=0.2, random_state=rng, format="csr")
    ranked = masked_scores(scores, feed)
    top = top_n(ranked, 10)
    for u in range(4):
        order = sorted(range(30), key=lambda i: (-ranked[u, i], i))
        assert top[u].tolist() == order[:10]
    test = sp.random(4, 30, density=0.3, random_state=rng, format="csr")
    test.data = rng.integers(1, 6, test.nnz).astype(float)
    got = ranking_scores(scores, feed, test)
    for value in (got.ndcg, got.recall, got.precision, got.mrr, got.coverage):
        assert 0.0 <= value <= 1.0
