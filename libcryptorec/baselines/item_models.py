"""Top-N baselines every recommender paper reports, in numpy: a most-popular list, and EASE
(Steck, WWW 2019), the full-rank linear item model on binary interactions.

Both see the users they score in training (as the paper's baselines do) and score every item
for them; neither predicts stars.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from libcryptorec.ranking_model import zero_diagonal_ridge

Matrix = npt.NDArray[np.float64]


def binary(R: sp.csr_matrix) -> sp.csr_matrix:
    """(n, m) float64 with 1 wherever R (n, m) stores a rating."""
    X = R.astype(np.float64, copy=True)
    X.data[:] = 1.0
    return X


class Popularity:
    """The same list for everyone: items by how many users rated them."""

    name = "Popularity"

    def __init__(self, R: sp.csr_matrix) -> None:
        self.counts = np.asarray(binary(R).sum(axis=0), dtype=np.float64).ravel()

    def scores(self, users: npt.NDArray[np.int64]) -> Matrix:
        """(len(users), m): every user's row is the items' rating counts."""
        return np.broadcast_to(self.counts, (len(users), len(self.counts))).copy()


@dataclass(frozen=True)
class EaseSetting:
    """EASE's one hyperparameter: the ridge lambda (absolute, as in Steck's paper)."""

    l2: float = 500.0


# Lambda around the usual range for MovieLens-sized data (Steck: 500 on ml-20m; ml-1m's
# validation users preferred 1,600 of 100-1,600).
EASE_GRID = tuple(EaseSetting(l2) for l2 in (400.0, 800.0, 1600.0, 3200.0, 6400.0))


class Ease:
    """EASE at full rank: B = argmin ||X - X B||^2 + lambda ||B||^2 with diag(B) = 0 on the
    binary interactions X of R (n, m); a user's scores are x_u B."""

    name = "EASE"

    def __init__(self, R: sp.csr_matrix, setting: EaseSetting = EaseSetting()) -> None:
        self.X = binary(R)
        G = np.asarray((self.X.T @ self.X).todense())
        self.B = zero_diagonal_ridge(G, G, setting.l2)

    def scores(self, users: npt.NDArray[np.int64]) -> Matrix:
        """(len(users), m) x_u B for the rows `users` of the training matrix."""
        return np.asarray(self.X[users] @ self.B)
