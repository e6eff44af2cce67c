"""The CryptoRec model: Eq. 6 predictions, Eq. 8 gradients, and accurate mode (fine-tuning)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from libcryptorec.data import Ratings
from libcryptorec.model import CryptoRecModel, FineTuning
from libcryptorec.training import loss_and_grads


def make_model(m: int = 12, d: int = 5, seed: int = 0, input_power: float = 0.5) -> CryptoRecModel:
    rng = np.random.default_rng(seed)
    return CryptoRecModel(
        A=(rng.standard_normal((m, d)) * 0.3).astype(np.float32),
        Q=(rng.standard_normal((m, d)) * 0.3).astype(np.float32),
        item_means=rng.uniform(2.5, 4.0, m).astype(np.float32),
        global_mean=3.4,
        input_power=input_power,
    )


def random_ratings(n: int, m: int, density: float, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    mask = rng.random((n, m)) < density
    mask[:, 0] = True  # nobody is empty
    return sp.csr_matrix(np.where(mask, rng.integers(1, 6, (n, m)), 0).astype(np.float32))


def explicit_prediction(model: CryptoRecModel, r: np.ndarray) -> np.ndarray:
    """Eq. 6 for one dense rating vector (0 = unrated), written out term by term."""
    phi = r > 0
    rbar = r[phi].mean()
    x = np.where(phi, r - rbar + model.input_offset, 0.0) / phi.sum() ** model.input_power
    return rbar + (model.item_means - model.global_mean) + (x @ model.A) @ model.Q.T


def explicit_finetune(model: CryptoRecModel, r: np.ndarray, t: FineTuning) -> np.ndarray:
    """K full gradient steps of Eq. 7 on one user's data, building A' and Q' explicitly."""
    phi = r > 0
    rbar = r[phi].mean()
    k = phi.sum()
    x = np.where(phi, r - rbar + model.input_offset, 0.0) / k**model.input_power
    A, Q = model.A.astype(np.float64), model.Q.astype(np.float64)
    b = (model.item_means - model.global_mean).astype(np.float64)
    eta = t.eta / ((x @ x) * k)
    for _ in range(t.steps):
        p = x @ A
        e = np.where(phi, rbar + b + p @ Q.T - r, 0.0)
        dA = np.outer(x, e @ Q) + t.l2 * A
        dQ = np.outer(e, p) + t.l2 * Q
        A, Q = A - eta * dA, Q - eta * dQ
    return rbar + b + (x @ A) @ Q.T


@pytest.mark.parametrize("offset", [0.0, 0.5], ids=["paper", "offset"])
def test_fast_mode_matches_equation_6(offset: float) -> None:
    model = make_model()
    model.input_offset = offset
    R = random_ratings(7, 12, 0.5, 1)
    pred = model.predict(R)
    assert pred.shape == (7, 12)
    assert pred.dtype == np.float32
    for u in range(7):
        np.testing.assert_allclose(
            pred[u], explicit_prediction(model, R[u].toarray().ravel()), atol=1e-5
        )


def test_predict_at_equals_dense_prediction_at_targets() -> None:
    model = make_model()
    R = random_ratings(9, 12, 0.5, 2)
    targets = random_ratings(9, 12, 0.3, 3)
    rows, cols = targets.nonzero()
    np.testing.assert_allclose(
        model.predict_at(R, targets), model.predict(R)[rows, cols], atol=1e-5
    )


def test_empty_user_gets_mean_plus_item_bias() -> None:
    model = make_model()
    pred = model.predict(sp.csr_matrix((1, 12), dtype=np.float32))
    np.testing.assert_allclose(pred[0], model.item_means, atol=1e-6)


def test_clamping_and_width_check() -> None:
    model = make_model()
    assert model.clamp(np.array([-3.0, 2.5, 9.0])).tolist() == [1.0, 2.5, 5.0]
    with pytest.raises(ValueError, match="items"):
        model.predict(sp.csr_matrix((1, 5), dtype=np.float32))


@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
def test_gradients_match_finite_differences(weighted: bool) -> None:
    model = make_model(m=10, d=4, seed=3)
    R_in = random_ratings(6, 10, 0.5, 4)
    targets = random_ratings(6, 10, 0.6, 5)
    l2 = 0.3
    w = None
    if weighted:  # errors on seen ratings count less (TrainConfig.seen_weight)
        w = np.random.default_rng(7).choice([0.25, 1.0], targets.nnz).astype(np.float32)
    _, gA, gQ, _ = loss_and_grads(model, R_in, targets, l2, w)
    rng = np.random.default_rng(6)
    for name, grad in (("A", gA), ("Q", gQ)):
        for _ in range(3):
            V = rng.standard_normal(grad.shape).astype(np.float32)
            base = getattr(model, name).copy()
            h = 1e-2
            setattr(model, name, (base + h * V).astype(np.float32))
            up = loss_and_grads(model, R_in, targets, l2, w)[0]
            setattr(model, name, (base - h * V).astype(np.float32))
            down = loss_and_grads(model, R_in, targets, l2, w)[0]
            setattr(model, name, base)
            numeric = (up - down) / (2 * h)
            analytic = float((grad.astype(np.float64) * V).sum())
            assert numeric == pytest.approx(analytic, rel=2e-3, abs=1e-3), name


@settings(max_examples=20, deadline=None)
@given(
    steps=st.integers(1, 4),
    eta=st.floats(0.01, 1.0),
    l2=st.sampled_from([0.0, 0.01, 0.5]),
    seed=st.integers(0, 1000),
    power=st.sampled_from([0.0, 0.5]),
    offset=st.sampled_from([0.0, 0.5]),
)
def test_rank_one_finetuning_equals_explicit_updates(
    steps: int, eta: float, l2: float, seed: int, power: float, offset: float
) -> None:
    model = make_model(seed=seed, input_power=power)
    model.input_offset = offset
    R = random_ratings(3, 12, 0.4, seed + 1)
    tuning = FineTuning(steps=steps, eta=eta, l2=l2)
    pred = model.predict_accurate(R, tuning)
    for u in range(3):
        r = R[u].toarray().ravel()
        if (r > 0).sum() < 2 or (np.ptp(r[r > 0]) == 0 and offset == 0):
            continue  # x = 0: nothing to fine-tune
        np.testing.assert_allclose(
            pred[u], explicit_finetune(model, r, tuning), rtol=1e-4, atol=1e-4
        )
    # predictions at unrated targets agree with the dense accurate prediction
    targets = sp.csr_matrix((R.toarray() == 0).astype(np.float32))
    rows, cols = targets.nonzero()
    np.testing.assert_allclose(
        model.predict_accurate_at(R, targets, tuning), pred[rows, cols], rtol=1e-4, atol=1e-4
    )


def test_zero_steps_is_fast_mode() -> None:
    model = make_model()
    R = random_ratings(4, 12, 0.5, 8)
    np.testing.assert_allclose(
        model.predict_accurate(R, FineTuning(steps=0)), model.predict(R), atol=1e-5
    )


def test_finetuning_lowers_the_users_training_loss() -> None:
    model = make_model(seed=11)
    R = random_ratings(5, 12, 0.6, 12)
    dense = R.toarray()
    phi = dense > 0
    losses = []
    for steps in range(4):
        pred = model.predict_accurate(R, FineTuning(steps=steps, eta=0.3, l2=0.0))
        losses.append(((pred - dense)[phi] ** 2).sum())
    assert losses[0] > losses[1] > losses[2] > losses[3]


def test_trained_model_beats_biases(small: Ratings) -> None:
    from libcryptorec.model import rmse
    from libcryptorec.splits import paper_split
    from libcryptorec.training import TrainConfig, train

    s = paper_split(small, 0)
    R = small.to_csr(s.train)[s.train_users]
    feed, test = small.to_csr(s.feed)[s.new_users], small.to_csr(s.test)[s.new_users]
    result = train(
        R,
        TrainConfig(
            dim=16, epochs=30, learning_rate=3e-3, l2=1.0, patience=6, finetune_max_steps=3
        ),
    )
    model = result.model
    rows = np.repeat(np.arange(test.shape[0]), np.diff(test.indptr))
    user_mean = np.asarray(feed.sum(axis=1)).ravel() / np.diff(feed.indptr)
    biases_only = rmse(model.clamp(user_mean[rows] + model.item_bias[test.indices]), test.data)
    fast = rmse(model.clamp(model.predict_at(feed, test)), test.data)
    accurate = rmse(model.clamp(model.predict_accurate_at(feed, test)), test.data)
    assert fast < biases_only - 0.05
    assert accurate <= fast + 0.02
    assert result.history
    assert result.best_epoch >= 1


@pytest.mark.parametrize("learn", [False, True], ids=["damped-means", "learned-biases"])
def test_item_biases_are_learned_only_when_asked_and_kept_from_the_best_epoch(
    small: Ratings, learn: bool
) -> None:
    from libcryptorec.model import rmse
    from libcryptorec.splits import paper_split
    from libcryptorec.training import TrainConfig, item_means, split_validation, train

    s = paper_split(small, 0)
    R = small.to_csr(s.train)[s.train_users]
    config = TrainConfig(dim=8, epochs=8, l2=1.0, finetune_max_steps=1, learn_item_bias=learn)
    result = train(R, config)
    model = result.model
    # The same draw of held-out training users as train() makes.
    fit, valid = split_validation(R, config.validation_fraction, np.random.default_rng(0))
    damped = item_means(fit, model.global_mean, config.item_mean_damping)
    moved = float(np.abs(model.item_means - damped).max())
    assert (moved > 1e-3) if learn else (moved == 0.0)
    assert np.all(np.isfinite(model.item_means))
    # The model returned is the best epoch's, biases included.
    score = rmse(model.predict_at(valid.feed, valid.test), valid.test.data)
    assert score == pytest.approx(model.meta["valid_rmse_fast"], abs=1e-5)


def test_item_means_are_damped_toward_the_global_mean() -> None:
    from libcryptorec.training import item_means

    R = sp.csr_matrix(np.array([[5.0, 1.0, 0.0], [5.0, 0.0, 0.0]], dtype=np.float32))
    plain = item_means(R, global_mean=3.0)
    damped = item_means(R, global_mean=3.0, damping=2.0)
    np.testing.assert_allclose(plain, [5.0, 1.0, 3.0])
    np.testing.assert_allclose(damped, [(10 + 6) / 4, (1 + 6) / 3, 3.0])


def test_learning_rate_decays_on_plateau_then_stops(small: Ratings) -> None:
    from libcryptorec.splits import paper_split
    from libcryptorec.training import TrainConfig, train

    s = paper_split(small, 1)
    R = small.to_csr(s.train)[s.train_users]
    config = TrainConfig(
        dim=8,
        epochs=60,
        learning_rate=3e-2,
        l2=1.0,
        patience=2,
        lr_decays=2,
        finetune_max_steps=1,
        finetune_etas=(1.0,),
    )
    result = train(R, config)
    valid = [h.valid_rmse for h in result.history]
    assert result.best_epoch == 1 + int(np.argmin(valid))
    assert len(valid) < 60  # it stopped
    assert min(valid) == pytest.approx(result.model.meta["valid_rmse_fast"])


def test_norms_by_chunks_equal_numpy() -> None:
    from libcryptorec import norms

    rng = np.random.default_rng(3)
    M = rng.standard_normal((40_000, 7)).astype(np.float32)  # more rows than one chunk
    np.testing.assert_allclose(
        norms.spectral_norm(M), np.linalg.norm(M.astype(float), 2), rtol=1e-9
    )
    np.testing.assert_allclose(
        norms.max_row_norm(M), np.linalg.norm(M.astype(float), axis=1).max(), rtol=1e-12
    )


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    power=st.sampled_from([0.0, 0.25, 0.5, 1.0]),
    offset=st.sampled_from([0.0, 0.5, 2.0]),
    density=st.floats(0.05, 1.0),
)
def test_max_input_norm_bounds_every_user(
    seed: int, power: float, offset: float, density: float
) -> None:
    model = make_model(m=30, seed=seed, input_power=power)
    model.input_offset = offset
    R = random_ratings(20, 30, density, seed)
    R.data[: R.nnz // 2] = 5.0  # push some users toward the extremes of the scale
    X, _ = model.user_inputs(R)
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    assert norms.max() <= model.max_input_norm * (1 + 1e-6)
