"""BiasedMF (Koren et al., 2009): r_hat_ui = mu + b_u + b_i + p_u q_i^T, paper Eq. 1 plus biases.

Trained by full-batch Adam on sparse gradients (no loop over ratings), early-stopped on held-out
training ratings. Unlike CryptoRec it must see a user's ratings in training to predict for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from libcryptorec.baselines.common import early_stopped, fit_start
from libcryptorec.model import rmse
from libcryptorec.optim import Adam, GradientSettings
from libcryptorec.sparse_ops import sampled_product, with_data


@dataclass(frozen=True)
class BiasedMFConfig(GradientSettings):
    """Settings from a grid on ml-1m (dim 64/128, l2 8/15/25, rate 0.005-0.02): the best."""

    dim: int = 128
    l2: float = 25.0
    learning_rate: float = 0.01
    epochs: int = 400
    patience: int = 10


class BiasedMF:
    """Biased matrix factorisation over an (n, m) rating matrix."""

    def __init__(self, config: BiasedMFConfig = BiasedMFConfig()) -> None:
        self.config = config

    def fit(self, R: sp.csr_matrix, *, show_progress: bool = False) -> BiasedMF:
        """Learn mu, b_u (n,), b_i (m,), P (n, d), Q (m, d) from the CSR matrix R."""
        c = self.config
        rng, split = fit_start(R, c)
        fit, valid = split.fit, split.valid
        n, m = R.shape
        self.mu = float(fit.data.mean())
        self.P = c.initial_weights(rng, n, c.dim)
        self.Q = c.initial_weights(rng, m, c.dim)
        self.bu = np.zeros(n, dtype=np.float32)
        self.bi = np.zeros(m, dtype=np.float32)
        params = [self.P, self.Q, self.bu, self.bi]
        opt = Adam(params, c.learning_rate)
        rows = np.repeat(np.arange(n), np.diff(fit.indptr))

        def epoch() -> None:
            pred = self._at(fit, rows)
            E = with_data(fit, (pred - fit.data).astype(np.float32))
            opt.step(
                [
                    np.asarray(E @ self.Q) + c.l2 * self.P,
                    np.asarray(E.T @ self.P) + c.l2 * self.Q,
                    np.asarray(E.sum(axis=1)).ravel().astype(np.float32),
                    np.asarray(E.sum(axis=0)).ravel().astype(np.float32),
                ]
            )

        valid_rows = np.repeat(np.arange(n), np.diff(valid.indptr))
        self.P, self.Q, self.bu, self.bi = early_stopped(
            params,
            epoch,
            lambda: rmse(np.clip(self._at(valid, valid_rows), 1, 5), valid.data),
            c,
            desc="BiasedMF",
            show_progress=show_progress,
        )
        return self

    def predict_at(self, targets: sp.csr_matrix) -> npt.NDArray[np.float32]:
        """Predictions at the stored positions of the (n, m) matrix `targets`, CSR order."""
        rows = np.repeat(np.arange(targets.shape[0]), np.diff(targets.indptr))
        return self._at(targets, rows)

    def scores(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """(len(users), m) predictions of every item for the training rows `users`."""
        bias = self.mu + self.bu[users][:, None] + self.bi[None, :]
        return np.asarray(bias + self.P[users] @ self.Q.T, dtype=np.float32)

    def _at(self, pattern: sp.csr_matrix, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        inter = sampled_product(self.P, self.Q, pattern)
        bias = self.mu + self.bu[rows] + self.bi[pattern.indices]
        return np.asarray(bias + inter, dtype=np.float32)
