"""Top-N baselines beside the served ranking model, on the paper's split: a most-popular list,
EASE at full rank (both numpy, `libcryptorec.baselines.item_models`) and ALS for implicit
feedback from the `implicit` library (Hu, Koren and Volinsky, ICDM 2008), the usual matrix
factorisation baseline for top-N.

Like the paper's rating baselines, each sees the new users' feeding ratings in training (a
new user's scores are their row of the fitted model). Each is tuned as the ranking model is:
on held-out training users split 90/10 like new users, fitted on the other training users
and the held-out users' 90%, scored by NDCG@10 on their 10%.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from libcryptorec.baselines.item_models import EASE_GRID, Ease, Popularity, binary
from libcryptorec.ranking import ranking_scores
from libcryptorec.training import split_validation

Matrix = npt.NDArray[np.float64]


class Scorer(Protocol):
    """A fitted top-N model that scores every item for rows of its training matrix."""

    name: str

    def scores(self, users: npt.NDArray[np.int64]) -> Matrix:
        """(len(users), m) scores for the training-matrix rows `users`."""
        ...


@dataclass(frozen=True)
class AlsSetting:
    """implicit's AlternatingLeastSquares hyperparameters (confidence 1 + alpha on rated
    items); the defaults are what `tune` chose on ml-1m."""

    factors: int = 64
    regularization: float = 10.0
    alpha: float = 0.3
    iterations: int = 15


# Two grids on ml-1m's validation users (factors 32-128, regularization 0.1-100, alpha 0.3-10)
# found the best at 64 factors, regularization 10, alpha 0.3 (0.281): this one is centred there.
ALS_GRID = tuple(
    AlsSetting(factors=f, regularization=r, alpha=a)
    for f in (32, 64, 128)
    for r in (3.0, 10.0, 30.0)
    for a in (0.3, 1.0)
)


class ImplicitAls:
    """implicit.cpu.als.AlternatingLeastSquares on the binary interactions of R (n, m)."""

    name = "implicit ALS"

    def __init__(self, R: sp.csr_matrix, setting: AlsSetting, seed: int) -> None:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        # implicit runs its own threads; a threaded BLAS underneath only oversubscribes (and
        # implicit warns about it from the environment, even inside the limit).
        with threadpool_limits(1, "blas"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*OpenBLAS.*", category=RuntimeWarning)
            model = AlternatingLeastSquares(
                factors=setting.factors,
                regularization=setting.regularization,
                alpha=setting.alpha,
                iterations=setting.iterations,
                random_state=seed,
            )
            model.fit(binary(R).astype(np.float32).tocsr(), show_progress=False)
        self.users = np.asarray(model.user_factors, dtype=np.float64)
        self.items = np.asarray(model.item_factors, dtype=np.float64)

    def scores(self, users: npt.NDArray[np.int64]) -> Matrix:
        return np.asarray(self.users[users] @ self.items.T)


def available() -> bool:
    """Whether `implicit` is installed (the `dev` extra installs it)."""
    try:
        import implicit  # noqa: F401
    except ImportError:
        return False
    return True


def tune(
    R_train: sp.csr_matrix,
    grid: Sequence[Any],
    fitted: Callable[[sp.csr_matrix, Any], Scorer],
    *,
    seed: int,
    log: Callable[[str], None] = lambda _: None,
) -> tuple[Any, list[dict[str, Any]]]:
    """The setting of `grid` with the best validation NDCG@10 on the training users R_train
    (n, m), and every setting's score. `fitted(R, setting)` fits a baseline on R."""
    fit, valid = split_validation(R_train, 0.1, np.random.default_rng(seed))
    R = sp.vstack([fit, valid.feed]).tocsr()
    rows = np.arange(fit.shape[0], R.shape[0], dtype=np.int64)
    report: list[dict[str, Any]] = []
    for setting in grid:
        ndcg = ranking_scores(fitted(R, setting).scores(rows), valid.feed, valid.test).ndcg
        report.append({"setting": type(setting).__name__, **asdict(setting), "valid_ndcg": ndcg})
        log(f"{setting}: validation NDCG@10 {ndcg:.4f}")
    best = max(range(len(grid)), key=lambda k: report[k]["valid_ndcg"])
    return grid[best], report


def ranking_baselines(
    R_train: sp.csr_matrix, seed: int, *, log: Callable[[str], None] = lambda _: None
) -> tuple[list[tuple[str, Callable[[sp.csr_matrix], Scorer]]], dict[str, Any]]:
    """(name, fit) for every ranking baseline, each tuned on `R_train` (the training users);
    and what tuning chose and measured. `fit(R)` fits on R (training plus feeding ratings)."""
    ease, ease_report = tune(R_train, EASE_GRID, Ease, seed=seed, log=log)
    out: list[tuple[str, Callable[[sp.csr_matrix], Scorer]]] = [
        (Popularity.name, Popularity),
        (Ease.name, lambda R: Ease(R, ease)),
    ]
    tuning: dict[str, Any] = {Ease.name: {"chosen": asdict(ease), "grid": ease_report}}
    if available():
        als, als_report = tune(
            R_train, ALS_GRID, lambda R, s: ImplicitAls(R, s, seed), seed=seed, log=log
        )
        out.append((ImplicitAls.name, lambda R: ImplicitAls(R, als, seed)))
        tuning[ImplicitAls.name] = {"chosen": asdict(als), "grid": als_report}
    else:
        log("implicit is not installed (pip install implicit): its ALS baseline is skipped")
    return out, tuning
