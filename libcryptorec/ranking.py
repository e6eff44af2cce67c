"""Top-N ranking quality: what a user sees of a recommender, measured the way recommender
libraries report it.

For each user, every item outside what they fed the model (`exclude`) is ranked by predicted
score, highest first; ties go to the lower item index, so a ranking is a function of the scores.
An item is relevant when the user's held-out rating of it is at least `threshold`. Users without
a relevant held-out item are left out of the averages (nothing to find); coverage counts every
user's list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

Matrix = npt.NDArray[np.floating[Any]]
Indices = npt.NDArray[np.int64]

# MovieLens: a rating of 4 or 5 stars marks a movie the user liked.
RELEVANT_RATING = 4.0
CUTOFF = 10


def per_user_field() -> Any:
    """A dataclass field of per-user values ((users,) float64, empty by default) that stays
    out of repr and equality: a summary's means say what it is, the array is for pairing
    two models' users."""
    return field(default_factory=lambda: np.zeros(0), repr=False, compare=False)


@dataclass(frozen=True)
class RankingScores:
    """Means over users with a relevant held-out item (`users` of them), and catalogue coverage
    of all users' top lists; `user_ndcg` (users,) holds each of those users' NDCG@n, for
    comparing two models on the same users."""

    ndcg: float
    recall: float
    precision: float
    mrr: float
    coverage: float
    users: int
    user_ndcg: npt.NDArray[np.float64] = per_user_field()

    def as_json(self, cutoff: int = CUTOFF) -> dict[str, float]:
        """The keys the accuracy benchmark's JSON uses: `ndcg@10`, ..., `mrr`, `coverage@10`."""
        return {
            f"ndcg@{cutoff}": self.ndcg,
            f"recall@{cutoff}": self.recall,
            f"precision@{cutoff}": self.precision,
            "mrr": self.mrr,
            f"coverage@{cutoff}": self.coverage,
        }


def masked_scores(scores: Matrix, exclude: sp.csr_matrix) -> Matrix:
    """A float64 copy of `scores` (u, m) with the entries stored in `exclude` (u, m) set to
    -inf, so they rank last and never enter a top list."""
    out = np.array(scores, dtype=np.float64, copy=True)
    coo = exclude.tocoo()
    out[coo.row, coo.col] = -np.inf
    return out


def top_n(scores: Matrix, n: int = CUTOFF) -> Indices:
    """(u, n) item indices of each row's n highest scores, best first; equal scores go to the
    lower index. `scores` (u, m), m >= n, already masked (`masked_scores`)."""
    if not 0 < n <= scores.shape[1]:
        raise ValueError(f"cannot take the top {n} of {scores.shape[1]} items")
    # Stable sort of the negated scores keeps equal scores in index order; argpartition first
    # would not, so a tie at the cut could change the list between runs of the same scores.
    order = np.argsort(-scores, axis=1, kind="stable")
    return order[:, :n].astype(np.int64)


def relevant_items(held_out: sp.csr_matrix, threshold: float = RELEVANT_RATING) -> sp.csr_matrix:
    """(u, m) boolean matrix of the held-out ratings >= threshold."""
    held = held_out.tocsr()
    mask = held.copy()
    mask.data = held.data >= threshold
    mask.eliminate_zeros()
    return mask.astype(bool)


def ranking_scores(
    scores: Matrix,
    exclude: sp.csr_matrix,
    held_out: sp.csr_matrix,
    n: int = CUTOFF,
    threshold: float = RELEVANT_RATING,
) -> RankingScores:
    """NDCG@n, Recall@n, Precision@n and MRR (binary relevance, full ranking for MRR) averaged
    over users with a relevant held-out item, and coverage@n: the share of the m items that
    appear in at least one user's top n. `scores`, `exclude` (the feeding ratings) and
    `held_out` (the test ratings) are (u, m)."""
    ranked = masked_scores(scores, exclude)
    top = top_n(ranked, n)
    relevant = relevant_items(held_out, threshold).toarray()  # (u, m) bool
    counts = relevant.sum(axis=1)
    users = counts > 0

    hits = np.take_along_axis(relevant, top, axis=1)  # (u, n)
    discounts = 1.0 / np.log2(np.arange(2, n + 2))
    dcg = hits @ discounts
    ideal = np.cumsum(discounts)[np.minimum(counts, n) - 1]
    found = hits.sum(axis=1)

    coverage = len(np.unique(top)) / scores.shape[1]
    if not users.any():
        return RankingScores(0.0, 0.0, 0.0, 0.0, coverage, 0)
    reciprocal = 1.0 / first_relevant_rank(ranked[users], relevant[users])
    per_user = dcg[users] / ideal[users]
    return RankingScores(
        ndcg=float(np.mean(per_user)),
        recall=float(np.mean(found[users] / counts[users])),
        precision=float(np.mean(found[users] / n)),
        mrr=float(np.mean(reciprocal)),
        coverage=float(coverage),
        users=int(users.sum()),
        user_ndcg=per_user,
    )


def first_relevant_rank(ranked: Matrix, relevant: npt.NDArray[np.bool_]) -> Indices:
    """(u,) 1-based rank of each row's best-ranked relevant item in the order `top_n` gives
    (score descending, lower index first on ties). Every row of `relevant` (u, m) must mark an
    item with a finite score in `ranked` (u, m)."""
    masked = np.where(relevant, ranked, -np.inf)
    best_index = np.argmax(masked, axis=1)  # first index of the highest: the tie order
    best = np.take_along_axis(masked, best_index[:, None], axis=1)[:, 0]
    ahead = (ranked > best[:, None]).sum(axis=1)
    cols = np.arange(ranked.shape[1])
    tied_before = ((ranked == best[:, None]) & (cols[None, :] < best_index[:, None])).sum(axis=1)
    rank: Indices = (1 + ahead + tied_before).astype(np.int64)
    return rank


def top_n_agreement(reference: Matrix, other: Matrix, n: int = CUTOFF) -> tuple[float, int]:
    """How far `other` (u, m) ranks like `reference` (u, m), both already masked: the share of
    rows whose top n are the same set, and the largest move of one of reference's top-n items
    between the two full rankings (0 when every such item keeps its rank)."""
    top_ref = top_n(reference, n)
    order = np.argsort(-other, axis=1, kind="stable")  # top_n's order, kept for the ranks
    same = np.sort(top_ref, axis=1) == np.sort(order[:, :n], axis=1)
    agreement = float(np.mean(same.all(axis=1)))
    rank_other = np.empty_like(order)
    np.put_along_axis(rank_other, order, np.arange(other.shape[1])[None, :], axis=1)
    moved = np.abs(np.take_along_axis(rank_other, top_ref, axis=1) - np.arange(n)[None, :])
    return agreement, int(moved.max()) if moved.size else 0
