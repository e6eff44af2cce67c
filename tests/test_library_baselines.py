"""The library baselines' whole-matrix scores equal the library's own per-pair predictions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("surprise")

from cryptorec.benchmarks.library_baselines import (
    KNNSetting,
    SurpriseItemKNN,
    SurpriseSVD,
    SVDSetting,
)


def _ratings(seed: int = 0, users: int = 60, items: int = 45) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    R = sp.random(users, items, density=0.25, random_state=rng, format="csr")
    R.data = rng.integers(1, 6, R.nnz).astype(float)
    R = R.tolil()
    R[:, items - 1] = 0  # an item nobody rated: the library falls back to the biases
    R = R.tocsr()
    R.eliminate_zeros()
    return R


@pytest.mark.parametrize(
    "make",
    [
        lambda R: SurpriseSVD(R, (1.0, 5.0), SVDSetting(n_factors=8, n_epochs=5), seed=0),
        lambda R: SurpriseItemKNN(R, (1.0, 5.0), KNNSetting(k=5, shrinkage=10)),
    ],
    ids=["svd", "item-knn"],
)
def test_scores_equal_the_library_predictions(make) -> None:  # type: ignore[no-untyped-def]
    R = _ratings()
    model = make(R)
    users = np.array([0, 7, 31, 59])
    scores = model.scores(users)
    assert scores.shape == (4, R.shape[1])
    for row, u in enumerate(users):
        for i in range(R.shape[1]):
            expected = model.algo.predict(int(u), int(i), clip=False).est
            assert scores[row, i] == pytest.approx(expected, abs=1e-9), (u, i)


def test_tuning_picks_the_lowest_validation_rmse_of_each_grid() -> None:
    from cryptorec.benchmarks.library_baselines import KNN_GRID, SVD_GRID, tune

    chosen, report = tune(_ratings(seed=3), (1.0, 5.0), seed=0, log=lambda _: None)
    assert len(report) == len(SVD_GRID) + len(KNN_GRID)
    svd = [r for r in report if r["setting"] == "SVDSetting"]
    knn = [r for r in report if r["setting"] == "KNNSetting"]
    best_svd = min(svd, key=lambda r: r["valid_rmse"])
    best_knn = min(knn, key=lambda r: r["valid_rmse"])
    assert chosen.svd == SVDSetting(
        n_factors=best_svd["n_factors"],
        n_epochs=best_svd["n_epochs"],
        lr_all=best_svd["lr_all"],
        reg_all=best_svd["reg_all"],
    )
    assert chosen.knn == KNNSetting(k=best_knn["k"], shrinkage=best_knn["shrinkage"])
    assert all(0.0 < r["valid_rmse"] < 4.0 for r in report)
