"""The paper's evaluation protocol: users split into training and new users, new users' ratings
split into feeding (what the client knows) and test (what we score).

All splits are index arrays into a `Ratings`, drawn from a seeded generator and vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from libcryptorec.data import IntArray, Ratings

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Split:
    """One draw of the paper protocol.

    Attributes:
        train_users: dense indices of the server's own users.
        new_users: dense indices of new (client) users; disjoint from `train_users`.
        train: rating indices of training users.
        feed: rating indices of new users that the client holds and sends (encrypted).
        test: rating indices of new users, hidden from every model, used for RMSE.
    """

    train_users: IntArray
    new_users: IntArray
    train: IntArray
    feed: IntArray
    test: IntArray


def split_users(
    n_users: int, fraction: float, rng: np.random.Generator
) -> tuple[IntArray, IntArray]:
    """Split user indices 0..n_users-1 at random into sorted (kept, held), `fraction` held."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    order = rng.permutation(n_users)
    n_held = max(1, round(fraction * n_users))
    return np.sort(order[n_held:]), np.sort(order[:n_held])


def holdout_mask(groups: IntArray, fraction: float, rng: np.random.Generator) -> BoolArray:
    """Mark a random `fraction` of the entries of each group as held out.

    `groups` (N,) gives each entry's group (its user). Each group holds out round(fraction *
    count) entries, at least one and never all (a group of one keeps its entry). Returns a
    boolean mask of shape (N,), True where held out.
    """
    key = rng.random(len(groups))
    order = np.lexsort((key, groups))  # by group, random within group
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    counts = np.diff(np.r_[starts, len(order)])
    rank = np.arange(len(order)) - np.repeat(starts, counts)
    n_held = np.clip(np.rint(fraction * counts), 1, counts - 1)
    held = np.zeros(len(groups), dtype=bool)
    held[order] = rank < np.repeat(n_held, counts)
    return held


def holdout_per_user(
    ratings: Ratings, index: IntArray, fraction: float, rng: np.random.Generator
) -> tuple[IntArray, IntArray]:
    """Split the ratings `index` of each user at random into sorted (kept, held) index arrays,
    with `fraction` of each user's ratings held (see `holdout_mask`)."""
    held = holdout_mask(ratings.users[index], fraction, rng)
    return np.sort(index[~held]), np.sort(index[held])


def paper_split(
    ratings: Ratings,
    seed: int,
    new_user_fraction: float = 0.2,
    test_fraction: float = 0.1,
) -> Split:
    """Draw the paper's split: users 80/20 into training/new, each new user's ratings 90/10
    into feeding/test."""
    rng = np.random.default_rng(seed)
    train_users, new_users = split_users(ratings.n_users, new_user_fraction, rng)
    is_new = np.zeros(ratings.n_users, dtype=bool)
    is_new[new_users] = True
    rated_by_new = is_new[ratings.users]
    train = np.flatnonzero(~rated_by_new)
    feed, test = holdout_per_user(ratings, np.flatnonzero(rated_by_new), test_fraction, rng)
    return Split(train_users, new_users, train, feed, test)


@dataclass(frozen=True)
class SplitMatrices:
    """A split as rating matrices: `train` (training users, m), `feed` and `test` (new users,
    m), rows in the order of split.train_users and split.new_users."""

    train: sp.csr_matrix
    feed: sp.csr_matrix
    test: sp.csr_matrix


def split_matrices(ratings: Ratings, split: Split) -> SplitMatrices:
    """The CSR matrices every experiment on a split needs."""
    return SplitMatrices(
        train=ratings.to_csr(split.train)[split.train_users],
        feed=ratings.to_csr(split.feed)[split.new_users],
        test=ratings.to_csr(split.test)[split.new_users],
    )
