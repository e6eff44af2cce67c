"""Properties of the paper's split: disjoint users, 90/10 per new user, reproducible."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from libcryptorec.data import synthetic
from libcryptorec.splits import holdout_mask, paper_split


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n_users=st.integers(10, 80), density=st.floats(0.1, 0.9))
def test_split_properties(seed: int, n_users: int, density: float) -> None:
    r = synthetic(n_users=n_users, n_items=30, density=density, seed=seed % 7)
    s = paper_split(r, seed)
    # users: disjoint, complete, 80/20
    assert not set(s.train_users) & set(s.new_users)
    assert len(s.train_users) + len(s.new_users) == r.n_users
    assert len(s.new_users) == max(1, round(0.2 * r.n_users))
    # ratings: every rating in exactly one part; no new user in training
    parts = np.r_[s.train, s.feed, s.test]
    assert np.array_equal(np.sort(parts), np.arange(len(r)))
    assert not set(r.users[s.train]) & set(s.new_users)
    assert set(r.users[s.feed]) <= set(s.new_users)
    assert set(r.users[s.test]) <= set(s.new_users)
    # 90/10 per new user, at least one test rating, never all
    feed = np.bincount(r.users[s.feed], minlength=r.n_users)[s.new_users]
    test = np.bincount(r.users[s.test], minlength=r.n_users)[s.new_users]
    total = feed + test
    assert np.array_equal(test, np.clip(np.rint(0.1 * total), 1, total - 1))


def test_split_is_reproducible_and_seed_dependent(tiny) -> None:  # type: ignore[no-untyped-def]
    a, b, c = paper_split(tiny, 3), paper_split(tiny, 3), paper_split(tiny, 4)
    assert np.array_equal(a.test, b.test)
    assert np.array_equal(a.new_users, b.new_users)
    assert not np.array_equal(a.test, c.test)


def test_holdout_never_empties_a_group() -> None:
    groups = np.array([0, 1, 1, 2, 2, 2])
    held = holdout_mask(groups, 0.9, np.random.default_rng(0))
    assert held[groups == 0].sum() == 0  # a single entry stays
    assert held[groups == 1].sum() == 1
    assert held[groups == 2].sum() == 2
