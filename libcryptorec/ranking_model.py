"""The ranking model: a low-rank linear item model trained for top-N, in closed form.

What a user sees of a recommender is its top 10, and models trained to predict stars rank
poorly (Cremonesi et al., RecSys 2010). Linear item models trained for top-N rank far better
and have exactly fast mode's shape: a new user's scores are `s = x B` for an input vector x
built from their own ratings, and with B factored at rank d, `x B = x A Q^T`: two
plaintext-ciphertext products, served by every fast-mode protocol unchanged.

Training, for the (n, m) ratings R of the server's users:

1. Input and target. `x_ui = (w (r_ui - rbar_u) + c) / k_u^alpha` on rated items: that the
   user rated the item (c), and how far above their own mean (w), the stars model's transform
   with a weight on the deviation. The target is what a user liked: 1 for a rating of at least
   `liked_rating`, `unliked_weight` for any other rating, 0 where unrated.
2. B in closed form (Steck's EASE, WWW 2019, with a separate input and target):
   `min ||Y - X B||^2 + lambda ||B - B_prior||^2` subject to diag(B) = 0, so an item is never
   explained by itself. With G = X^T X, P = (G + lambda I)^-1 and C = X^T Y + lambda B_prior:
   `B = P C - P diag(gamma)` with gamma_j = (P C)_jj / P_jj. B_prior is 0, or a source model's
   A Q^T for transfer (`prior`).
3. Rank d, as reduced-rank regression: the rank-d W minimising ||X B - X W|| is `B V V^T`, V
   the top-d eigenvectors of B^T G B, so A = B V and Q = V. On ml-1m this beats a truncated SVD
   of B at every d <= 256, and rank 128 beats full rank on validation users (low rank
   regularises).
4. lambda and d are chosen on held-out training users split 90/10 like new users, by NDCG@10
   of every item outside their feeding ratings: the cheapest d whose NDCG@10 is within
   `dim_standard_errors` standard errors of the best (the "one standard error rule" of Breiman
   et al.; the error of the per-user differences with the best, on the same users). The
   encrypted cost grows with d, and with a few hundred validation users NDCG differences of
   1-2% are noise: a tolerance below the noise doubled the rank on one ml-1m split of five.
5. Scale. Ranking ignores a positive scale, so the scale is chosen for the encodings: columns
   of A and Q are balanced (equal norms), Q's largest entry is made 1 and A carries the rest,
   with the largest validation score at `score_magnitude`. CKKS encodes Q's diagonals at 2^20
   and Paillier every weight in 12 bits, both with an absolute quantum: at Q's natural size
   (entries up to 0.15) CKKS erred by 2.3e-3 and changed 1 top 10 in 30 on ml-1m; with Q's
   peak at 1, 3.2e-4 and none in 40.

Settings (w, the unliked weight, the grids) were chosen by validation NDCG@10 on ml-1m
(README, "The ranking model"). Memory is a few m x m float64 matrices: up to about 20,000
items on one machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import numpy.typing as npt
import scipy.linalg
import scipy.sparse as sp

from libcryptorec.model import RANKING, CryptoRecModel, scaled_inputs
from libcryptorec.ranking import CUTOFF, RELEVANT_RATING, per_user_field, ranking_scores
from libcryptorec.training import split_validation

Dense = npt.NDArray[np.float64]

# A few m x m float64 matrices live at once (G, P, B, B^T G B): 3.2 GB each at 20,000 items.
MAX_ITEMS = 20_000
# The largest |entry| of the served Q (see "Scale" above).
Q_PEAK = 1.0


@dataclass(frozen=True)
class RankingConfig:
    """How the ranking model is trained. `dims` and `l2_factors` are the grids searched on
    validation users; lambda = factor * the mean number of users per item, so one grid fits
    datasets of any size."""

    dims: tuple[int, ...] = (32, 64, 128, 256, 500)
    l2_factors: tuple[float, ...] = (1.0, 2.0, 4.0)
    # A cheaper rank is kept while its validation NDCG@10 lags the best by at most this many
    # standard errors of the per-user differences.
    dim_standard_errors: float = 1.0
    rating_weight: float = 0.2
    input_offset: float = 1.0
    input_power: float = 0.5
    liked_rating: float = RELEVANT_RATING
    unliked_weight: float = 0.4
    score_magnitude: float = 4.0
    validation_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.dims or min(self.dims) < 1:
            raise ValueError("dims must be positive ranks")
        if not self.l2_factors or min(self.l2_factors) <= 0:
            raise ValueError("l2_factors must be positive")
        if not self.dim_standard_errors >= 0:
            raise ValueError("dim_standard_errors must be 0 or more")


@dataclass(frozen=True)
class Candidate:
    """One point of the validation grid: lambda (and its factor), rank and NDCG@10 (the mean
    of `user_ndcg`, per validation user with a relevant item)."""

    l2_factor: float
    l2: float
    dim: int
    ndcg: float
    user_ndcg: npt.NDArray[np.float64] = per_user_field()

    def to_dict(self) -> dict[str, float]:
        """The candidate without its per-user values (for reports)."""
        return {"l2_factor": self.l2_factor, "l2": self.l2, "dim": self.dim, "ndcg": self.ndcg}


@dataclass
class RankingResult:
    """A trained ranking model, every validation point measured and the wall time spent."""

    model: CryptoRecModel
    frontier: list[Candidate] = field(default_factory=list)
    chosen: Candidate | None = None
    seconds: float = 0.0


def ranking_inputs(R: sp.csr_matrix, config: RankingConfig) -> sp.csr_matrix:
    """(n, m) X for training: `w (r - rbar) + c` on the rated entries of R (n, m), unscaled
    per user (each user's scores are ranked on their own, so the served input's 1/k^alpha
    changes no ranking; leaving it out of training keeps heavy raters' evidence)."""
    X, _ = scaled_inputs(R, 0.0, 0.0, config.input_offset, config.rating_weight)
    return X.astype(np.float64)


def liked_targets(R: sp.csr_matrix, config: RankingConfig) -> sp.csr_matrix:
    """(n, m) Y: 1 where R (n, m) holds a rating of at least `liked_rating`, `unliked_weight`
    at its other ratings."""
    Y = R.astype(np.float64, copy=True)
    Y.data = np.where(R.data >= config.liked_rating, 1.0, config.unliked_weight)
    return Y


def zero_diagonal_ridge(
    G: Dense, C: Dense, l2: float, eig: tuple[Dense, Dense] | None = None
) -> Dense:
    """(m, m) B minimising ||Y - X B||^2 + l2 ||B - B0||^2 with diag(B) = 0, from G = X^T X
    (m, m) and C = X^T Y + l2 B0 (m, m). `eig`: G's (eigenvalues, eigenvectors), to solve for
    several l2 with one decomposition."""
    if eig is None:
        P = np.linalg.inv(G + l2 * np.eye(len(G)))
        PC = P @ C
    else:
        values, vectors = eig
        scaled = vectors / (values + l2)
        P = scaled @ vectors.T
        PC = scaled @ (vectors.T @ C)
    # Lagrange multipliers of diag(B) = 0: each column j moves along P's column j.
    gamma = np.diag(PC) / np.diag(P)
    B: Dense = PC - P * gamma[None, :]
    return B


def low_rank(B: Dense, G: Dense, dim: int) -> tuple[Dense, Dense]:
    """(A, Q), each (m, dim), with A Q^T the rank-`dim` W closest to B in ||X (B - W)||_F
    for G = X^T X (m, m): Q the top eigenvectors of B^T G B (orthonormal), A = B Q."""
    m = len(B)
    dim = min(dim, m)
    _, vectors = scipy.linalg.eigh(B.T @ G @ B, subset_by_index=[m - dim, m - 1])
    Q = np.ascontiguousarray(vectors[:, ::-1])
    return B @ Q, Q


def train_ranking(
    R: sp.csr_matrix,
    config: RankingConfig = RankingConfig(),
    *,
    scale: tuple[float, float] = (1.0, 5.0),
    prior: CryptoRecModel | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> RankingResult:
    """Train the ranking model on the (n, m) CSR ratings R of the server's users.

    Chooses lambda and the rank d on held-out training users, then refits on all of R.
    `prior`: a ranking model over the same m items (transfer): B is pulled toward its A Q^T
    rather than toward 0. `log` hears one line per validation fit. Returns the model (kind
    "ranking", item scores 0) with the validation grid."""
    started = time.perf_counter()
    _check_size(R.shape[1])
    B_prior = _prior_weights(prior, R.shape[1])
    frontier = validation_frontier(R, config, B_prior, log)
    chosen = choose(frontier, config.dim_standard_errors)
    model = fit_ranks(R, config, chosen.l2, (chosen.dim,), scale=scale, prior=prior)[chosen.dim]
    model.meta["valid_ndcg"] = chosen.ndcg
    return RankingResult(model, frontier, chosen, time.perf_counter() - started)


def validation_frontier(
    R: sp.csr_matrix,
    config: RankingConfig,
    B_prior: Dense | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> list[Candidate]:
    """NDCG@10 of every (lambda, rank) of the config's grids, fitted on the training users of
    R (n, m) minus the validation users and scored on those (`split_validation`)."""
    fit, valid = split_validation(R, config.validation_fraction, np.random.default_rng(config.seed))
    m = R.shape[1]
    G, C = _moments(fit, config)
    eig = np.linalg.eigh(G)
    X_valid = _served_inputs(valid.feed, config)
    mean_count = float(fit.nnz) / m
    dims = sorted({min(d, m) for d in config.dims})
    frontier: list[Candidate] = []
    for factor in config.l2_factors:
        l2 = factor * mean_count
        B = zero_diagonal_ridge(G, C + l2 * B_prior if B_prior is not None else C, l2, eig)
        A, Q = low_rank(B, G, max(dims))
        P = np.asarray(X_valid @ A)
        for d in dims:
            scores = P[:, :d] @ Q[:, :d].T
            measured = ranking_scores(scores, valid.feed, valid.test)
            frontier.append(Candidate(factor, l2, d, measured.ndcg, measured.user_ndcg))
        log(
            f"lambda {l2:.0f}: validation NDCG@{CUTOFF} "
            + ", ".join(f"d={c.dim} {c.ndcg:.4f}" for c in frontier[-len(dims) :])
        )
    return frontier


def fit_ranks(
    R: sp.csr_matrix,
    config: RankingConfig,
    l2: float,
    dims: tuple[int, ...],
    *,
    scale: tuple[float, float] = (1.0, 5.0),
    prior: CryptoRecModel | None = None,
) -> dict[int, CryptoRecModel]:
    """The ranking model fitted on all of R (n, m) with `l2`, at each rank of `dims` (one
    closed form and one eigendecomposition for all of them), scaled for the encodings."""
    m = R.shape[1]
    _check_size(m)
    B_prior = _prior_weights(prior, m)
    G, C = _moments(R, config)
    if B_prior is not None:
        C += l2 * B_prior
    B = zero_diagonal_ridge(G, C, l2)
    A_all, Q_all = low_rank(B, G, max(dims))
    # The score scale is set on the validation users' inputs (the same users as training's).
    _, valid = split_validation(R, config.validation_fraction, np.random.default_rng(config.seed))
    X_valid = _served_inputs(valid.feed, config)
    out = {}
    for d in dims:
        A, Q = _balanced(A_all[:, :d], Q_all[:, :d])
        shift = Q_PEAK / max(float(np.abs(Q).max()), 1e-300)
        A, Q = A / shift, Q * shift
        # One scale for every user: the largest validation score becomes `score_magnitude`.
        peak = float(np.abs(np.asarray(X_valid @ A) @ Q.T).max())
        factor = config.score_magnitude / peak if peak > 0 else 1.0
        model = CryptoRecModel(
            A=(A * factor).astype(np.float32),
            Q=Q.astype(np.float32),
            item_means=np.zeros(m, dtype=np.float32),
            global_mean=0.0,
            scale=scale,
            input_power=config.input_power,
            input_offset=config.input_offset,
            rating_weight=config.rating_weight,
            kind=RANKING,
        )
        model.meta = {
            "ranking_config": asdict(config),
            "l2": l2,
            # B = A Q^T / score_scale in the units of the closed form (what transfer pulls
            # toward).
            "score_scale": factor,
            "n_train_users": int(R.shape[0]),
            "n_train_ratings": int(R.nnz),
            "transfer": prior is not None,
        }
        out[d] = model
    return out


def choose(frontier: list[Candidate], standard_errors: float = 1.0) -> Candidate:
    """The cheapest candidate (smallest rank, then best NDCG) of `frontier` (non-empty, every
    candidate scored on the same users) whose NDCG@10 lags the best one's by at most
    `standard_errors` standard errors of their per-user differences."""
    best = max(frontier, key=lambda c: c.ndcg)

    def close(c: Candidate) -> bool:
        diff = best.user_ndcg - c.user_ndcg
        if len(diff) < 2:
            return c.ndcg >= best.ndcg
        error = float(np.std(diff, ddof=1)) / np.sqrt(len(diff))
        return bool(best.ndcg - c.ndcg <= standard_errors * error)

    return min((c for c in frontier if close(c)), key=lambda c: (c.dim, -c.ndcg))


def _check_size(m: int) -> None:
    if m > MAX_ITEMS:
        raise ValueError(
            f"{m:,} items: the closed form needs several {m:,} x {m:,} matrices (up to "
            f"{MAX_ITEMS:,} items); train the stars model instead"
        )


def _moments(R: sp.csr_matrix, config: RankingConfig) -> tuple[Dense, Dense]:
    """(G, C) = (X^T X, X^T Y), each (m, m) dense, for the ratings R (n, m)."""
    X = ranking_inputs(R, config)
    G = np.asarray((X.T @ X).todense())
    C = np.asarray((X.T @ liked_targets(R, config)).todense())
    return G, C


def _served_inputs(R: sp.csr_matrix, config: RankingConfig) -> sp.csr_matrix:
    """(n, m) x as the client computes it for R (n, m), with the 1/k^alpha scaling."""
    X, _ = scaled_inputs(R, 0.0, config.input_power, config.input_offset, config.rating_weight)
    return X.astype(np.float64)


def _balanced(A: Dense, Q: Dense) -> tuple[Dense, Dense]:
    """A and Q (m, d) rescaled column by column so each pair has equal norms (A Q^T kept):
    both matrices then use their fixed-point and quantised encodings equally well."""
    a = np.linalg.norm(A, axis=0)
    q = np.linalg.norm(Q, axis=0)
    factor = np.sqrt(np.where(a > 0, q / np.maximum(a, 1e-300), 1.0))
    return A * factor[None, :], Q / factor[None, :]


def _prior_weights(prior: CryptoRecModel | None, m: int) -> Dense | None:
    """(m, m) B of a prior ranking model in the closed form's units, or None."""
    if prior is None:
        return None
    if not prior.ranks_only:
        raise ValueError("transfer needs a ranking model as the prior")
    if prior.n_items != m:
        raise ValueError(f"prior model has {prior.n_items} items; the ratings have {m}")
    scale = float(prior.meta.get("score_scale", 1.0))
    B: Dense = (prior.A.astype(np.float64) @ prior.Q.astype(np.float64).T) / scale
    return B
