"""Baselines learn something real on low-rank synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from libcryptorec.baselines.autorec import AutoRecConfig, IAutoRec
from libcryptorec.baselines.biased_mf import BiasedMF, BiasedMFConfig
from libcryptorec.baselines.common import early_stopped
from libcryptorec.data import Ratings
from libcryptorec.model import rmse
from libcryptorec.optim import GradientSettings
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


@given(
    scores=st.lists(st.floats(0.5, 2.0), min_size=1, max_size=30),
    patience=st.integers(1, 5),
)
def test_early_stopped_keeps_the_best_epoch_and_stops_after_patience(
    scores: list[float], patience: int
) -> None:
    """The weights returned are those after the epoch with the lowest score, and no epoch
    runs once `patience` epochs have passed without a lower one."""
    weights = [np.zeros(1, dtype=np.float32)]
    epochs_run: list[int] = []

    def epoch() -> None:
        epochs_run.append(len(epochs_run) + 1)
        weights[0][0] = len(epochs_run)  # the weights say which epoch wrote them

    settings = GradientSettings(epochs=len(scores), patience=patience)
    best = early_stopped(weights, epoch, lambda: scores[len(epochs_run) - 1], settings, desc="t")
    ran = len(epochs_run)
    best_epoch = int(np.argmin(scores[:ran])) + 1
    assert best[0][0] == best_epoch
    assert ran == len(scores) or ran - best_epoch == patience
    assert weights[0] is not best[0]  # a copy, not the array training goes on updating


def test_early_stopped_refuses_a_diverged_model() -> None:
    settings = GradientSettings(epochs=3)
    with pytest.raises(FloatingPointError, match="diverged at epoch 1"):
        early_stopped([np.zeros(1)], lambda: None, lambda: float("nan"), settings, desc="m")
