"""Baselines from a well-kept library (Surprise, scikit-surprise 1.1.5) on the paper's protocol:
a matrix factorisation (SVD, Funk's biased MF by SGD, as the Netflix prize made it known) and a
neighbourhood model (KNNBaseline, item-based, shrunk Pearson correlations of baseline residuals,
Koren 2010).

The library fits; scoring a whole (users x items) matrix for the ranking metrics through its
per-pair `predict` would take minutes, so `scores` computes the same estimate in numpy from the
fitted parameters (checked against `predict` in tests/test_library_baselines.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

Matrix = npt.NDArray[np.float64]


class LibraryBaseline(Protocol):
    """A fitted library model that scores every item for some of its training users."""

    name: str

    def scores(self, users: npt.NDArray[np.int64]) -> Matrix:
        """(len(users), m) unclipped estimates for the training-matrix rows `users`."""
        ...


def trainset(R: sp.csr_matrix, scale: tuple[float, float]) -> Any:
    """A surprise Trainset whose inner ids are R's row and column indices (no pandas, no id
    remapping: the scores line up with our matrices)."""
    from surprise import Trainset

    R = R.tocsr()
    coo = R.tocoo()
    ur: dict[int, list[tuple[int, float]]] = defaultdict(list)
    ir: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for u, i, r in zip(coo.row.tolist(), coo.col.tolist(), coo.data.tolist(), strict=True):
        ur[u].append((i, r))
        ir[i].append((u, r))
    users = {u: u for u in range(R.shape[0])}
    items = {i: i for i in range(R.shape[1])}
    return Trainset(ur, ir, R.shape[0], R.shape[1], R.nnz, scale, users, items)


@dataclass(frozen=True)
class SVDSetting:
    """surprise.SVD hyperparameters; the defaults are what `bench accuracy --tune-library` chose
    on ml-1m (validation RMSE 0.8485; 200 factors 0.8486)."""

    n_factors: int = 100
    n_epochs: int = 40
    lr_all: float = 0.005
    reg_all: float = 0.05


class SurpriseSVD:
    """surprise.SVD fitted on R (u, m): `mu + b_u + b_i + p_u . q_i`."""

    name = "Surprise SVD"

    def __init__(
        self, R: sp.csr_matrix, scale: tuple[float, float], setting: SVDSetting, seed: int
    ):
        from surprise import SVD

        self.train = trainset(R, scale)
        self.algo = SVD(
            n_factors=setting.n_factors,
            n_epochs=setting.n_epochs,
            lr_all=setting.lr_all,
            reg_all=setting.reg_all,
            random_state=seed,
        ).fit(self.train)
        self.known_items = np.asarray(R.getnnz(axis=0) > 0)

    def scores(self, users: npt.NDArray[np.int64]) -> Matrix:
        a = self.algo
        known = self.known_items
        est = a.trainset.global_mean + a.bu[users][:, None] + np.where(known, a.bi, 0.0)[None, :]
        return np.asarray(est + (a.pu[users] @ a.qi.T) * known[None, :], dtype=np.float64)


@dataclass(frozen=True)
class KNNSetting:
    """surprise.KNNBaseline hyperparameters: neighbours, and the shrinkage of correlations; the
    defaults are what `bench accuracy --tune-library` chose on ml-1m (validation RMSE 0.8529)."""

    k: int = 20
    shrinkage: int = 100


class SurpriseItemKNN:
    """surprise.KNNBaseline, item-based, pearson_baseline similarity, fitted on R (u, m):
    `b_ui + sum_j s_ij (r_uj - b_uj) / sum_j s_ij` over the k items j the user rated that are
    most similar to i, keeping those with s_ij > 0."""

    name = "Surprise item-KNN"

    def __init__(self, R: sp.csr_matrix, scale: tuple[float, float], setting: KNNSetting):
        from surprise import KNNBaseline

        self.R = R.tocsr()
        self.k = setting.k
        self.train = trainset(self.R, scale)
        self.algo = KNNBaseline(
            k=setting.k,
            sim_options={
                "name": "pearson_baseline",
                "user_based": False,
                "shrinkage": setting.shrinkage,
            },
            verbose=False,
        ).fit(self.train)
        self.known_items = np.asarray(self.R.getnnz(axis=0) > 0)

    def scores(self, users: npt.NDArray[np.int64]) -> Matrix:
        a = self.algo
        mu = a.trainset.global_mean
        bi = np.where(self.known_items, a.bi, 0.0)
        out = np.empty((len(users), self.R.shape[1]))
        for row, u in enumerate(users):
            start, end = self.R.indptr[u], self.R.indptr[u + 1]
            rated = self.R.indices[start:end]
            residual = self.R.data[start:end] - (mu + a.bu[u] + bi[rated])
            out[row] = mu + a.bu[u] + bi + _neighbour_term(a.sim[:, rated], residual, self.k)
        out[:, ~self.known_items] = mu + a.bu[users][:, None]
        return out


@dataclass(frozen=True)
class LibrarySettings:
    """Hyperparameters of both library baselines."""

    svd: SVDSetting = SVDSetting()
    knn: KNNSetting = KNNSetting()


def available() -> bool:
    """Whether Surprise is installed (the `dev` extra installs it)."""
    try:
        import surprise  # noqa: F401
    except ImportError:
        return False
    return True


def _neighbour_term(sims: Matrix, residual: npt.NDArray[np.float64], k: int) -> Matrix:
    """(m,) per item i: the weighted mean of `residual` (k_u,) over i's k most similar rated
    items (`sims` (m, k_u)), weights the positive similarities; 0 where none is positive."""
    if sims.shape[1] > k:
        keep = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        sims = np.take_along_axis(sims, keep, axis=1)
        residual = residual[keep]
    else:
        residual = np.broadcast_to(residual, sims.shape)
    weights = np.where(sims > 0, sims, 0.0)
    total = weights.sum(axis=1)
    weighted = (weights * residual).sum(axis=1)
    out: Matrix = np.divide(weighted, total, out=np.zeros_like(total), where=total > 0)
    return out


# The grids `tune` searches (`cryptorec bench accuracy --tune-library`).
SVD_GRID = tuple(
    SVDSetting(n_factors=f, n_epochs=40, reg_all=r) for f in (100, 200) for r in (0.02, 0.05, 0.1)
)
KNN_GRID = tuple(KNNSetting(k=k, shrinkage=s) for k in (20, 40, 80) for s in (50, 100))


def tune(
    R: sp.csr_matrix,
    scale: tuple[float, float],
    seed: int,
    log: Any = print,
) -> tuple[LibrarySettings, list[dict[str, Any]]]:
    """The SVD_GRID and KNN_GRID settings with the lowest RMSE on a random 10% of R's ratings
    (u, m) held out from fitting, and every setting's score."""
    rng = np.random.default_rng(seed)
    coo = R.tocoo()
    held = rng.random(coo.nnz) < 0.1
    fit = sp.csr_matrix((coo.data[~held], (coo.row[~held], coo.col[~held])), shape=R.shape)
    rows, cols, truth = coo.row[held], coo.col[held], coo.data[held]
    users = np.unique(rows)
    position = np.searchsorted(users, rows)

    def score(model: LibraryBaseline) -> float:
        predicted = np.clip(model.scores(users)[position, cols], *scale)
        return float(np.sqrt(np.mean((predicted - truth) ** 2)))

    report: list[dict[str, Any]] = []

    def best(grid: tuple[Any, ...], fitted: Callable[[Any], LibraryBaseline]) -> Any:
        scores = []
        for setting in grid:
            value = score(fitted(setting))
            report.append(
                {"setting": type(setting).__name__, **asdict(setting), "valid_rmse": value}
            )
            log(f"{setting}: validation RMSE {value:.4f}")
            scores.append(value)
        return grid[int(np.argmin(scores))]

    chosen_svd = best(SVD_GRID, lambda s: SurpriseSVD(fit, scale, s, seed))
    chosen_knn = best(KNN_GRID, lambda s: SurpriseItemKNN(fit, scale, s))
    return LibrarySettings(chosen_svd, chosen_knn), report
