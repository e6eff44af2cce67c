"""Baselines learn something real on low-rank synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from libcryptorec.baselines.autorec import AutoRecConfig, IAutoRec
from libcryptorec.baselines.biased_mf import BiasedMF, BiasedMFConfig
from libcryptorec.data import Ratings
from libcryptorec.model import rmse
from libcryptorec.splits import paper_split


@pytest.mark.parametrize(
    "make",
    [
        lambda: BiasedMF(BiasedMFConfig(dim=8, l2=1.0, learning_rate=0.05, epochs=300)),
        lambda: IAutoRec(
            AutoRecConfig(hidden=32, l2=1.0, learning_rate=1e-2, epochs=150, batch_items=32)
        ),
    ],
    ids=["BiasedMF", "I-AutoRec"],
)
def test_baseline_beats_global_mean(small: Ratings, make) -> None:  # type: ignore[no-untyped-def]
    s = paper_split(small, 0)
    R = small.to_csr(np.r_[s.train, s.feed])
    test = small.to_csr(s.test)
    model = make().fit(R)
    pred = model.predict_at(test)
    assert pred.shape == (test.nnz,)
    mean_only = rmse(np.full(test.nnz, R.data.mean()), test.data)
    assert rmse(np.clip(pred, 1, 5), test.data) < mean_only - 0.1
    # The whole-row scores the ranking metrics use agree with the per-rating predictions.
    users = np.unique(test.tocoo().row)
    whole = model.scores(users)
    assert whole.shape == (len(users), R.shape[1])
    at = test.tocoo()  # CSR order, as predict_at returns
    np.testing.assert_allclose(
        whole[np.searchsorted(users, at.row), at.col], pred, rtol=0, atol=1e-4
    )
