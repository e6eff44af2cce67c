"""I-AutoRec (Sedhain et al., 2015): each item's vector of ratings over users is reconstructed by
    r_hat_i = W sigmoid(V r_i + b1) + b2,
fit on observed ratings only with an L2 penalty on W and V (paper Eq. 2, identity output).

Minibatches of items, Adam, sparse inputs and sampled outputs: the dense (m, n) matrix is never
formed. Like BiasedMF it must see a user's ratings in training to predict for them.
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
class AutoRecConfig(GradientSettings):
    """Hidden size 500 as in the AutoRec paper; l2 from a grid on ml-1m (30, 100, 300)."""

    hidden: int = 500
    batch_items: int = 256
    l2: float = 100.0
    epochs: int = 200
    patience: int = 8
    init_std: float = 0.03


def _sigmoid(z: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)), dtype=np.float32)


class IAutoRec:
    """Item-based AutoRec over an (n_users, m_items) rating matrix."""

    def __init__(self, config: AutoRecConfig = AutoRecConfig()) -> None:
        self.config = config

    def fit(self, R: sp.csr_matrix, *, show_progress: bool = False) -> IAutoRec:
        """Learn V^T (n, h), b1 (h,), W^T (n, h), b2 (n,) from the (n, m) CSR matrix R."""
        c = self.config
        rng, split = fit_start(R, c)
        self._inputs = split.fit.T.tocsr()  # (m, n): one row per item
        valid = split.valid.T.tocsr()
        m, n = self._inputs.shape
        self.Vt = c.initial_weights(rng, n, c.hidden)
        self.Wt = c.initial_weights(rng, n, c.hidden)
        self.b1 = np.zeros(c.hidden, dtype=np.float32)
        self.b2 = np.full(n, float(split.fit.data.mean()), dtype=np.float32)
        params = [self.Vt, self.Wt, self.b1, self.b2]
        opt = Adam(params, c.learning_rate)
        X = self._inputs

        def epoch() -> None:
            order = rng.permutation(m)
            for start in range(0, m, c.batch_items):
                batch = X[order[start : start + c.batch_items]]
                if batch.nnz == 0:
                    continue
                H = _sigmoid(np.asarray(batch @ self.Vt) + self.b1)
                out = sampled_product(H, self.Wt, batch) + self.b2[batch.indices]
                E = with_data(batch, (out - batch.data).astype(np.float32))
                dZ = np.asarray(E @ self.Wt) * H * (1 - H)
                lam = np.float32(c.l2 * batch.shape[0] / m)
                opt.step(
                    [
                        np.asarray(batch.T @ dZ) + lam * self.Vt,
                        np.asarray(E.T @ H) + lam * self.Wt,
                        dZ.sum(axis=0),
                        np.asarray(E.sum(axis=0)).ravel().astype(np.float32),
                    ]
                )

        self.Vt, self.Wt, self.b1, self.b2 = early_stopped(
            params,
            epoch,
            lambda: rmse(np.clip(self._at(valid), 1, 5), valid.data),
            c,
            desc="I-AutoRec",
            show_progress=show_progress,
        )
        return self

    def predict_at(self, targets: sp.csr_matrix) -> npt.NDArray[np.float32]:
        """Predictions at the stored positions of the (n, m) matrix `targets`, CSR order."""
        # Transpose the pattern to item-major order, carrying each entry's CSR position (+1, since
        # a stored 0 could be dropped) so the results can be put back in the caller's order.
        coo = targets.tocoo()
        position = np.arange(1, coo.nnz + 1, dtype=np.float64)
        by_item = sp.csr_matrix(
            (position, (coo.col, coo.row)), shape=(targets.shape[1], targets.shape[0])
        )
        out = np.empty(coo.nnz, dtype=np.float32)
        out[by_item.data.astype(np.int64) - 1] = self._at(by_item)
        return out

    def scores(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """(len(users), m) reconstructions of every item for the training rows `users`."""
        H = _sigmoid(np.asarray(self._inputs @ self.Vt) + self.b1)  # (m, hidden)
        return np.asarray((H @ self.Wt[users].T).T + self.b2[users][:, None], dtype=np.float32)

    def _at(self, pattern: sp.csr_matrix) -> npt.NDArray[np.float32]:
        """Reconstruction at the stored positions of the (m, n) item-major `pattern`."""
        H = _sigmoid(np.asarray(self._inputs @ self.Vt) + self.b1)
        out = sampled_product(H, self.Wt, pattern) + self.b2[pattern.indices]
        return np.asarray(out, dtype=np.float32)
