"""Training CryptoRec on the server's own users (paper Eq. 7-8, Algorithm 1).

Loss per minibatch B of users (the factor 1/2 makes the gradients exactly Eq. 8):
    1/2 sum_{u in B} ||(r_hat_u - r_u) * phi_u||^2 + 1/2 lambda |B|/n (||A||^2 + ||Q||^2)
With E the masked residuals and P = X A:
    dL/dA = X^T (E Q) + lambda' A,    dL/dQ = E^T P + lambda' Q
Four sparse-dense products and one blocked sampled product per batch; no loop over ratings.

The model reads a user's own ratings to predict them, so trained naively it learns to copy its
input. Training therefore mirrors use: every epoch hides a random part of each user's ratings
from the input (`input_dropout`) and fits all of them; early stopping and fine-tuning settings
are chosen on held-out training users split 90/10 exactly like new users, never on new users.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from tqdm import tqdm

from libcryptorec.model import CryptoRecModel, FineTuning, Matrix, rmse
from libcryptorec.optim import GradientSettings, Optimizer, make_optimizer
from libcryptorec.sparse_ops import sampled_product, with_data
from libcryptorec.splits import holdout_mask


@dataclass(frozen=True)
class TrainConfig(GradientSettings):
    """Training settings. The paper's are optimizer="sgd", learning_rate=0.0002, l2=0.00002,
    dim=500; the default Adam setting reaches a lower RMSE in far fewer epochs."""

    dim: int = 500
    optimizer: Literal["adam", "sgd"] = "adam"
    batch_users: int = 128
    input_dropout: float = 0.3
    # Weight of the squared error on ratings the model read in this step, against 1 on those
    # hidden from it: what a new user asks for are items outside their input.
    seen_weight: float = 1.0
    # Learn the item biases with A and Q (starting from the damped item means) instead of
    # keeping the damped means: the server adds b either way, so no protocol changes.
    learn_item_bias: bool = True
    input_power: float = 0.5
    # c in x = (r - rbar + c) / k^alpha: which items a user rated, not only how far from their
    # mean. The defaults here were chosen on validation users of ml-1m (README, "How it works").
    input_offset: float = 0.5
    item_mean_damping: float = 10.0
    lr_decays: int = 2
    lr_decay_factor: float = 0.3
    validation_fraction: float = 0.1
    finetune_etas: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0)
    finetune_max_steps: int = 10

    @classmethod
    def paper(cls, **overrides: object) -> TrainConfig:
        """The paper's optimiser: plain minibatch gradient descent, eta=0.0002, lambda=0.00002."""
        base = {
            "optimizer": "sgd",
            "learning_rate": 2e-4,
            "l2": 2e-5,
            "input_dropout": 0.0,
            "input_power": 0.0,
            "input_offset": 0.0,
            "learn_item_bias": False,
            "item_mean_damping": 0.0,
            "lr_decays": 0,
        }
        return cls(**{**base, **overrides})  # type: ignore[arg-type]


@dataclass
class EpochReport:
    """What one epoch did: training loss per rating and validation RMSE (fast mode)."""

    epoch: int
    train_rmse: float
    valid_rmse: float
    seconds: float


@dataclass
class TrainResult:
    """A trained model with its learning curve and the wall time spent."""

    model: CryptoRecModel
    history: list[EpochReport] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class Validation:
    """Held-out training users as new users: what they feed (n, m) and what is scored (n, m)."""

    feed: sp.csr_matrix
    test: sp.csr_matrix


def loss_and_grads(
    model: CryptoRecModel,
    R_in: sp.csr_matrix,
    targets: sp.csr_matrix,
    l2: float,
    weights: npt.NDArray[np.float32] | None = None,
) -> tuple[float, Matrix, Matrix, npt.NDArray[np.float32]]:
    """Eq. 7 with factor 1/2 and its gradients (Eq. 8) for a batch of n users.

    R_in (n, m) are the ratings the model reads; targets (n, m) those it is scored on, each
    squared error weighted by `weights` (targets.nnz,) if given. Returns (loss, dL/dA (m, d),
    dL/dQ (m, d), residuals at the targets in CSR order, unweighted).
    """
    X, user_means = model.user_inputs(R_in)
    P = np.asarray(X @ model.A, dtype=np.float32)
    rows = np.repeat(np.arange(targets.shape[0]), np.diff(targets.indptr))
    pred = user_means[rows] + model.item_bias[targets.indices]
    err = (pred + sampled_product(P, model.Q, targets) - targets.data).astype(np.float32)
    weighted = err if weights is None else err * weights
    E = with_data(targets, weighted)
    lam = np.float32(l2)
    grad_A = np.asarray(X.T @ np.asarray(E @ model.Q), dtype=np.float32) + lam * model.A
    grad_Q = np.asarray(E.T @ P, dtype=np.float32) + lam * model.Q
    reg = float((model.A.astype(np.float64) ** 2).sum() + (model.Q.astype(np.float64) ** 2).sum())
    loss = 0.5 * float(weighted.astype(np.float64) @ err) + 0.5 * l2 * reg
    return loss, grad_A, grad_Q, err


def item_means(
    R: sp.csr_matrix, global_mean: float, damping: float = 0.0
) -> npt.NDArray[np.float32]:
    """(m,) mean rating of each item in the (n, m) matrix R, shrunk toward `global_mean` as if
    each item had `damping` extra ratings equal to it (rare items' raw means are mostly noise).
    Items nobody rated get `global_mean`."""
    Rt = R.T.tocsr()
    counts = np.diff(Rt.indptr).astype(np.float64)
    sums = np.asarray(Rt.sum(axis=1)).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (sums + damping * global_mean) / (counts + damping)
    return np.where(counts > 0, means, global_mean).astype(np.float32)


def train(
    R: sp.csr_matrix,
    config: TrainConfig = TrainConfig(),
    *,
    scale: tuple[float, float] = (1.0, 5.0),
    init: CryptoRecModel | None = None,
    show_progress: bool = False,
    callback: Callable[[EpochReport], None] | None = None,
) -> TrainResult:
    """Train CryptoRec on the (n, m) CSR rating matrix R of the server's users.

    `init` starts from another model's A and Q (transfer, paper 3.3). Returns the parameters of
    the epoch with the lowest validation RMSE, with accurate-mode settings tuned on the same
    validation users.
    """
    started = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    fit, valid = split_validation(R, config.validation_fraction, rng)
    mu = float(fit.data.mean())
    means = item_means(fit, mu, config.item_mean_damping)
    A, Q = _initial_factors(R.shape[1], config, rng, init)
    model = CryptoRecModel(
        A=A,
        Q=Q,
        item_means=means,
        global_mean=mu,
        scale=scale,
        input_power=config.input_power,
        input_offset=config.input_offset,
    )
    params = [model.A, model.Q]
    if config.learn_item_bias:
        params.append(model.item_means)
    opt = make_optimizer(config.optimizer, params, config.learning_rate)

    history: list[EpochReport] = []
    best = (np.inf, 0, [p.copy() for p in params])
    decays_left, since_best = config.lr_decays, 0
    bar = tqdm(range(1, config.epochs + 1), disable=not show_progress, desc="train", unit="epoch")
    for epoch in bar:
        t0 = time.perf_counter()
        train_rmse = _epoch(model, fit, config, rng, opt)
        valid_rmse = rmse(model.predict_at(valid.feed, valid.test), valid.test.data)
        report = EpochReport(epoch, train_rmse, valid_rmse, time.perf_counter() - t0)
        history.append(report)
        bar.set_postfix(train=f"{report.train_rmse:.4f}", valid=f"{valid_rmse:.4f}")
        if callback:
            callback(report)
        if not np.isfinite(valid_rmse):
            raise FloatingPointError(f"training diverged at epoch {epoch}; lower learning_rate")
        if valid_rmse < best[0]:
            best, since_best = (valid_rmse, epoch, [p.copy() for p in params]), 0
            continue
        since_best += 1
        if since_best < config.patience:
            continue
        if not decays_left:
            break
        # Plateau: go back to the best point and continue with a smaller step.
        decays_left, since_best = decays_left - 1, 0
        for param, kept_value in zip(params, best[2], strict=True):
            param[...] = kept_value
        opt.lr *= config.lr_decay_factor
    bar.close()

    for param, kept_value in zip(params, best[2], strict=True):
        param[...] = kept_value
    model.finetune = tune_finetuning(model, valid.feed, valid.test, config)
    model.meta |= {
        "train_config": asdict(config),
        "best_epoch": best[1],
        "valid_rmse_fast": best[0],
        "n_train_users": int(R.shape[0]),
        "n_train_ratings": int(R.nnz),
    }
    return TrainResult(model, history, best[1], time.perf_counter() - started)


def _initial_factors(
    m: int, config: TrainConfig, rng: np.random.Generator, init: CryptoRecModel | None
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """A and Q (m, d) to start from: `init`'s (transfer), else small random values."""
    if init is not None:
        if init.A.shape != (m, config.dim):
            raise ValueError(f"init model is {init.A.shape}; need ({m}, {config.dim})")
        return init.A.copy(), init.Q.copy()
    A = config.initial_weights(rng, m, config.dim)
    Q = config.initial_weights(rng, m, config.dim)
    return A, Q


def _epoch(
    model: CryptoRecModel,
    fit: sp.csr_matrix,
    config: TrainConfig,
    rng: np.random.Generator,
    opt: Optimizer,
) -> float:
    """One pass over the (n, m) ratings `fit` in shuffled mini-batches of users, `opt`
    stepping A, Q (and the item biases if learnt); the epoch's training RMSE."""
    n_fit, m, mu = fit.shape[0], fit.shape[1], model.global_mean
    sq_err, count = 0.0, 0
    order = rng.permutation(n_fit)
    for start in range(0, n_fit, config.batch_users):
        batch = fit[order[start : start + config.batch_users]]
        R_in, kept = _drop_inputs(batch, config.input_dropout, rng)
        weights = None
        if config.seen_weight != 1.0:
            weights = np.where(kept, np.float32(config.seen_weight), np.float32(1.0))
        l2 = config.l2 * batch.shape[0] / n_fit
        _, grad_A, grad_Q, err = loss_and_grads(model, R_in, batch, l2, weights)
        grads = [grad_A, grad_Q]
        if config.learn_item_bias:
            weighted = err if weights is None else err * weights
            lam = np.float32(l2)
            per_item = np.bincount(batch.indices, weights=weighted, minlength=m)
            grads.append(per_item.astype(np.float32) + lam * (model.item_means - mu))
        opt.step(grads)
        sq_err += float(err @ err)
        count += len(err)
    return float(np.sqrt(sq_err / count))


def tune_finetuning(
    model: CryptoRecModel,
    feed: sp.csr_matrix,
    test: sp.csr_matrix,
    config: TrainConfig,
) -> FineTuning:
    """Choose accurate-mode (eta, steps) by validation RMSE on held-out training users.

    Returns the best setting over `config.finetune_etas` x 0..`config.finetune_max_steps`
    (0 = fast mode, if nothing beats it). The best single step (CryptoRec-a(1)) goes to
    `model.meta["finetune_one_step"]`. Fine-tuning uses no regulariser: at these step sizes
    training's lambda per user (about 0.005) moves predictions by under 1e-4, and without it
    the encrypted protocol needs no per-user scalar on the server (he/ckks_accurate.py).
    """

    def score(tuning: FineTuning) -> float:
        # A step too large for some user diverges; such a setting simply loses.
        with np.errstate(all="ignore"):
            value = rmse(model.predict_accurate_at(feed, test, tuning), test.data)
        return value if np.isfinite(value) else np.inf

    no_tuning = FineTuning(steps=0)
    best = (score(no_tuning), no_tuning)
    best_one: tuple[float, FineTuning] = (np.inf, FineTuning(steps=1))
    for eta in config.finetune_etas:
        for steps in range(1, config.finetune_max_steps + 1):
            tuning = FineTuning(steps=steps, eta=eta, l2=0.0)
            value = score(tuning)
            if value < best[0]:
                best = (value, tuning)
            if steps == 1 and value < best_one[0]:
                best_one = (value, tuning)
            if not np.isfinite(value):
                break  # more steps of a diverging size only diverge further
    model.meta["finetune_one_step"] = asdict(best_one[1])
    model.meta["valid_rmse_accurate"] = best[0]
    model.meta["valid_rmse_accurate_one_step"] = best_one[0]
    return best[1]


def split_validation(
    R: sp.csr_matrix, fraction: float, rng: np.random.Generator
) -> tuple[sp.csr_matrix, Validation]:
    """Hold out `fraction` of the rows of R as validation users, each split 90/10 into
    feed/test like new users. Returns (fitting rows, validation feed/test)."""
    n = R.shape[0]
    n_valid = max(1, round(fraction * n))
    order = rng.permutation(n)
    fit = R[np.sort(order[n_valid:])]
    held = R[np.sort(order[:n_valid])].tocoo()
    is_test = holdout_mask(held.row.astype(np.int64), 0.1, rng)

    def pick(mask: npt.NDArray[np.bool_]) -> sp.csr_matrix:
        return sp.csr_matrix(
            (held.data[mask], (held.row[mask], held.col[mask])), shape=(n_valid, R.shape[1])
        )

    return fit, Validation(feed=pick(~is_test), test=pick(is_test))


def _drop_inputs(
    R: sp.csr_matrix, fraction: float, rng: np.random.Generator
) -> tuple[sp.csr_matrix, npt.NDArray[np.bool_]]:
    """R with a random `fraction` of its stored entries removed (the denoising input), and
    which of R's entries (CSR order) it kept."""
    if fraction <= 0:
        return R, np.ones(R.nnz, dtype=bool)
    keep = rng.random(R.nnz) >= fraction
    rows = np.repeat(np.arange(R.shape[0]), np.diff(R.indptr))
    return sp.csr_matrix((R.data[keep], (rows[keep], R.indices[keep])), shape=R.shape), keep
