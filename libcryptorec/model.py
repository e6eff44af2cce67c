"""The CryptoRec model (paper Eq. 6-8) and its two prediction modes, in plaintext.

    r_hat_ui = rbar_u + (rbar_i - mu) + x_u A q_i^T,   x_u = (r_u - rbar_u) * phi_u

A and Q are (m, d) item matrices learned on the server's own users. A new user needs no
retraining: fast mode evaluates the formula on the user's ratings; accurate mode first takes K
gradient steps of Eq. 7 on that user's own ratings. These are the plaintext references that the
encrypted protocols must reproduce.

The same shape serves two kinds of model. A *stars* model (the paper's, `training.py`) predicts
ratings: every score adds the user's mean rbar_u and is clamped to the rating scale. A *ranking*
model (`ranking_model.py`) scores items for a top-N list: `s_ui = b_i + x_u A q_i^T`, with no
user mean, no clamping, and scores that are not stars. Both encrypt the same `x_u`, so every
fast-mode protocol serves both unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from libcryptorec.sparse_ops import center_rows, row_means, sampled_product

Matrix = npt.NDArray[np.float32]
Vector = npt.NDArray[np.float32]

# What a model's scores mean: predicted star ratings, or ranking scores for a top-N list.
ModelKind = Literal["stars", "ranking"]
STARS: ModelKind = "stars"
RANKING: ModelKind = "ranking"
MODEL_KINDS: tuple[ModelKind, ...] = (STARS, RANKING)


@dataclass(frozen=True)
class FineTuning:
    """Accurate-mode settings: `steps` gradient steps on a user's own loss with regulariser
    `l2` and per-user step size eta_u = `eta` / (s_u k_u), where s_u = ||x_u||^2 and k_u is the
    number of items the user rated.

    With this step, p moves by eta * (mean gradient over the user's ratings), so one eta works
    for users with 20 and with 2,000 ratings (a fixed step diverges on heavy raters). The client
    knows s_u and k_u and folds them into what it encrypts; the server learns neither.
    """

    steps: int = 1
    eta: float = 0.5
    l2: float = 0.0

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError("steps must be >= 0")
        if not (np.isfinite(self.eta) and self.eta >= 0):
            raise ValueError("eta must be a finite number >= 0")


@dataclass
class CryptoRecModel:
    """Parameters of a trained CryptoRec model.

    Attributes:
        A: (m, d) input item features (builds the user vector p_u = x_u A).
        Q: (m, d) output item features.
        item_means: (m,) mu + b_i: the damped mean rating of each item on the training users,
            refined with A and Q when training learns it (mu for items nobody rated). For a
            ranking model global_mean is 0 and these are the item scores b_i themselves.
        global_mean: mu, the mean training rating (0 for a ranking model).
        scale: (lowest, highest) allowed rating: what clients accept, and a stars model's clamp.
        finetune: accurate-mode settings chosen on held-out training users.
        input_power: alpha in x_u = (w (r_u - rbar_u) + c) * phi_u / |R_u|^alpha. The paper's
            Eq. 6 is alpha = 0; alpha = 0.5 (as in SVD++) stops light raters' interaction terms
            from vanishing. The client applies it before encrypting, so it costs nothing in HE.
        input_offset: c in the same formula. The paper's is 0, which makes a rating equal to
            the user's mean count as no rating at all; c > 0 adds which items a user rated
            (implicit feedback, as SVD++'s y_j) to the same input vector, at no cost in HE.
        rating_weight: w in the same formula: 1 for the paper's deviations; a ranking model
            weighs how a user rated an item (w) against that they rated it at all (c).
        kind: "stars" (scores are predicted ratings: + rbar_u, clamped) or "ranking" (scores
            only order items).
        meta: provenance (dataset, training settings, validation scores); JSON-serialisable.
    """

    A: Matrix
    Q: Matrix
    item_means: Vector
    global_mean: float
    scale: tuple[float, float] = (1.0, 5.0)
    finetune: FineTuning = field(default_factory=FineTuning)
    input_power: float = 0.0
    input_offset: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    rating_weight: float = 1.0
    kind: ModelKind = STARS

    def __post_init__(self) -> None:
        if self.A.ndim != 2 or self.A.shape != self.Q.shape:
            raise ValueError(f"A and Q must both be (m, d); got {self.A.shape} and {self.Q.shape}")
        if self.item_means.shape != (self.A.shape[0],):
            raise ValueError("item_means must have one entry per item")
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"model kind {self.kind!r}; expected one of {MODEL_KINDS}")

    @property
    def ranks_only(self) -> bool:
        """Whether scores only order items (a ranking model) rather than predict stars."""
        return self.kind == RANKING

    @property
    def n_items(self) -> int:
        return int(self.A.shape[0])

    @property
    def dim(self) -> int:
        return int(self.A.shape[1])

    def one_step_tuning(self) -> FineTuning:
        """The single fine-tuning step the encrypted accurate mode computes: the best one-step
        setting chosen on validation users (`meta["finetune_one_step"]`, written by training),
        else one step of `finetune.eta`. The one definition that both the served protocol and
        every measurement of it use."""
        chosen = self.meta.get("finetune_one_step")
        if chosen is not None:
            return FineTuning(**chosen)
        return FineTuning(steps=1, eta=self.finetune.eta, l2=0.0)

    @property
    def item_bias(self) -> Vector:
        """(m,) b_i = rbar_i - mu."""
        return (self.item_means - np.float32(self.global_mean)).astype(np.float32)

    def user_inputs(self, R: sp.csr_matrix) -> tuple[sp.csr_matrix, Vector]:
        """The inputs of the (n, m) rating matrix of n users: returns (X, base) with
        X = (w (R - rbar) + input_offset) * phi / |R_u|^input_power as CSR (n, m) and base (n,)
        what every score of the user adds: rbar (mu for a user with no ratings) for a stars
        model, 0 for a ranking model."""
        self._check_width(R)
        X, means = scaled_inputs(
            R, self.global_mean, self.input_power, self.input_offset, self.rating_weight
        )
        return X, self.user_base(means)

    def user_base(self, means: Vector) -> Vector:
        """(n,) what every score of a user adds, given the users' mean ratings (n,): the mean
        for a stars model, 0 for a ranking model."""
        return np.zeros_like(means) if self.ranks_only else means

    @property
    def max_input_norm(self) -> float:
        """An upper bound on ||x_u||_2 for any user: sum (w (r - rbar) + c)^2 = w^2 sum
        (r - rbar)^2 + k c^2 (the deviations sum to 0), and k ratings in [lo, hi] deviate from
        their mean by at most k ((hi - lo) / 2)^2 in all; over k^(2 alpha) with k <= m. Sizes
        fixed-point encodings."""
        lo, hi = self.scale
        per_rating = (self.rating_weight * (hi - lo) / 2) ** 2 + self.input_offset**2
        return float(np.sqrt(self.n_items ** max(0.0, 1 - 2 * self.input_power) * per_rating))

    def user_vectors(self, R: sp.csr_matrix) -> tuple[Matrix, Vector]:
        """p = x A for each of the n rows of R: returns (P of shape (n, d), base of shape (n,),
        as `user_inputs`)."""
        X, base = self.user_inputs(R)
        return np.asarray(X @ self.A, dtype=np.float32), base

    def predict(self, R: sp.csr_matrix) -> Matrix:
        """Fast mode: (n, m) unclamped scores for the n users whose ratings are R's rows
        (predicted stars, or ranking scores for a ranking model)."""
        P, base = self.user_vectors(R)
        return base[:, None] + self.item_bias[None, :] + P @ self.Q.T

    def predict_at(self, R: sp.csr_matrix, targets: sp.csr_matrix) -> Vector:
        """Fast mode at the stored positions of `targets` (n, m), in CSR order; shape (nnz,)."""
        P, means = self.user_vectors(R)
        rows = np.repeat(np.arange(targets.shape[0]), np.diff(targets.indptr))
        interaction = sampled_product(P, self.Q, targets)
        return np.asarray(
            means[rows] + self.item_bias[targets.indices] + interaction, dtype=np.float32
        )

    def accurate_user_vectors(
        self, R: sp.csr_matrix, tuning: FineTuning | None = None
    ) -> tuple[Matrix, Vector]:
        """Accurate mode for the n rows of R, in the rank-one form (ARCHITECTURE.md section 4).

        K gradient steps on user u's loss ||(r_hat_u - r_u) * phi_u||^2 + l2 (||A||^2 + ||Q||^2)
        change A only through p_u = x_u A, and change Q only in the rows of items u rated (the
        others just shrink by c = 1 - eta_u*l2 per step), so neither updated matrix is built.
        Returns (P' of shape (n, d), rbar of shape (n,)) with P' = c^K p_K: for every item u did
        not rate, the fine-tuned prediction is rbar_u + b_i + P'_u q_i^T.
        """
        P, means, _ = self._finetune_all(R, tuning or self.finetune, keep_rated=False)
        return P, means

    def predict_accurate(self, R: sp.csr_matrix, tuning: FineTuning | None = None) -> Matrix:
        """Accurate mode: (n, m) unclamped predictions after fine-tuning on each row of R,
        including the rated items (whose rows of Q moved)."""
        P, means, rated = self._finetune_all(R, tuning or self.finetune, keep_rated=True)
        out = means[:, None] + self.item_bias[None, :] + P @ self.Q.T
        for u, values in enumerate(rated):
            lo, hi = R.indptr[u], R.indptr[u + 1]
            out[u, R.indices[lo:hi]] = means[u] + self.item_bias[R.indices[lo:hi]] + values
        return out.astype(np.float32)

    def predict_accurate_at(
        self, R: sp.csr_matrix, targets: sp.csr_matrix, tuning: FineTuning | None = None
    ) -> Vector:
        """Accurate mode at the stored positions of `targets` (items the users did not rate, as
        in the protocol's test set), in CSR order; shape (nnz,)."""
        P, means = self.accurate_user_vectors(R, tuning)
        rows = np.repeat(np.arange(targets.shape[0]), np.diff(targets.indptr))
        interaction = sampled_product(P, self.Q, targets)
        return np.asarray(
            means[rows] + self.item_bias[targets.indices] + interaction, dtype=np.float32
        )

    def _finetune_all(
        self, R: sp.csr_matrix, tuning: FineTuning, *, keep_rated: bool
    ) -> tuple[Matrix, Vector, list[Vector]]:
        """Fine-tune every row of R; returns (P' (n, d), rbar (n,), per-user interaction terms
        Q'_rated p_K of the rated items, in CSR order, when `keep_rated`)."""
        if self.ranks_only:
            # Fine-tuning minimises the rating loss; on a ranking model it did not improve
            # validation NDCG@10 (README, "The ranking model"), so it is not offered.
            raise ValueError("a ranking model has no accurate mode (fine-tuning on ratings)")
        X, means = self.user_inputs(R)
        P = np.asarray(X @ self.A, dtype=np.float32)
        bias = self.item_bias
        rated: list[Vector] = []
        for u in range(R.shape[0]):
            lo, hi = R.indptr[u], R.indptr[u + 1]
            if lo == hi:
                rated.append(np.zeros(0, dtype=np.float32))
                continue
            items = R.indices[lo:hi]
            p, Q_rated, c_k = _finetune_one(
                p=P[u],
                x=X.data[lo:hi],
                r=R.data[lo:hi],
                offset=means[u] + bias[items],
                Q_rated=self.Q[items],
                tuning=tuning,
            )
            P[u] = c_k * p
            if keep_rated:
                rated.append((Q_rated @ p).astype(np.float32))
        return P, means, rated

    def clamp(self, predictions: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.floating[Any]]:
        """Clip predicted stars to the rating scale (a ranking model's scores as they are)."""
        if self.ranks_only:
            return np.asarray(predictions)
        return np.asarray(np.clip(predictions, self.scale[0], self.scale[1]))

    def _check_width(self, R: sp.csr_matrix) -> None:
        if R.shape[1] != self.n_items:
            raise ValueError(f"rating matrix has {R.shape[1]} items; the model has {self.n_items}")


def scaled_inputs(
    R: sp.csr_matrix,
    global_mean: float,
    input_power: float,
    input_offset: float = 0.0,
    rating_weight: float = 1.0,
) -> tuple[sp.csr_matrix, Vector]:
    """(X, rbar) for the (n, m) ratings R: X = (rating_weight (R - rbar) + input_offset) * phi /
    |R_u|^input_power as CSR and rbar (n,), mu for users with no ratings. What a client computes
    before encrypting."""
    means = row_means(R, default=global_mean)
    X = center_rows(R, means)
    if rating_weight != 1.0:
        X.data *= np.float32(rating_weight)
    if input_offset:
        X.data += np.float32(input_offset)
    if input_power:
        counts = np.maximum(np.diff(R.indptr), 1).astype(np.float32)
        X.data *= np.repeat(counts ** np.float32(-input_power), np.diff(R.indptr))
    return X, means


def _finetune_one(
    *,
    p: Vector,
    x: Vector,
    r: Vector,
    offset: Vector,
    Q_rated: Matrix,
    tuning: FineTuning,
) -> tuple[Vector, Matrix, float]:
    """K fine-tuning steps for one user who rated k items.

    p (d,) = x A; x, r, offset (k,) are the centred ratings, ratings and rbar_u + b_i of the rated
    items; Q_rated (k, d) their rows of Q. Returns (p_K, Q_rated after K steps, c^K), where c^K
    is how much every unrated row of Q shrank.
    """
    s = float(x @ x)
    eta = tuning.eta / (max(s, 1e-12) * len(x))
    c = 1.0 - eta * tuning.l2
    p64 = p.astype(np.float64)
    Qr = Q_rated.astype(np.float64)
    for _ in range(tuning.steps):
        e = offset + Qr @ p64 - r
        g = e @ Qr
        Qr = c * Qr - eta * np.outer(e, p64)
        p64 = c * p64 - eta * s * g
    return p64.astype(np.float32), Qr.astype(np.float32), c**tuning.steps


def rmse(predictions: npt.ArrayLike, truth: npt.ArrayLike) -> float:
    """Root mean squared error between two equal-length vectors."""
    diff = np.asarray(predictions, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    return float(np.sqrt(np.mean(diff * diff)))
