"""What the baselines share: a held-out split of their training ratings for early stopping,
and the early-stopping loop itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from tqdm import tqdm

from libcryptorec.optim import Array, GradientSettings
from libcryptorec.splits import holdout_mask


@dataclass(frozen=True)
class HeldOut:
    """A (n, m) rating matrix split into the part a baseline fits and a part it validates on."""

    fit: sp.csr_matrix
    valid: sp.csr_matrix


# Each training user's ratings a baseline holds out to stop early on.
VALIDATION_FRACTION = 0.05


def fit_start(R: sp.csr_matrix, settings: GradientSettings) -> tuple[np.random.Generator, HeldOut]:
    """What a baseline's fit on the (n, m) ratings R starts from: its random generator and
    the split of R into what it fits and what it stops early on (VALIDATION_FRACTION of
    each user's ratings), both from `settings.seed`."""
    return np.random.default_rng(settings.seed), hold_out(R, VALIDATION_FRACTION, settings.seed)


def hold_out(R: sp.csr_matrix, fraction: float, seed: int) -> HeldOut:
    """Hold out `fraction` of each row's ratings of the (n, m) CSR matrix R for validation."""
    coo = R.tocoo()
    held = holdout_mask(coo.row.astype(np.int64), fraction, np.random.default_rng(seed))

    def pick(mask: npt.NDArray[np.bool_]) -> sp.csr_matrix:
        return sp.csr_matrix((coo.data[mask], (coo.row[mask], coo.col[mask])), shape=R.shape)

    return HeldOut(fit=pick(~held), valid=pick(held))


def early_stopped(
    params: list[Array],
    epoch_fn: Callable[[], None],
    score_fn: Callable[[], float],
    settings: GradientSettings,
    *,
    desc: str,
    show_progress: bool = False,
) -> list[Array]:
    """Run `epoch_fn` (which updates `params` in place) up to `settings.epochs` times; after
    each, `score_fn` gives a validation RMSE. Stops after `settings.patience` epochs without
    improvement; returns copies of `params` as they were after the best epoch."""
    best, best_score, best_epoch = [p.copy() for p in params], np.inf, 0
    bar = tqdm(range(1, settings.epochs + 1), disable=not show_progress, desc=desc, unit="epoch")
    for epoch in bar:
        epoch_fn()
        score = score_fn()
        bar.set_postfix(valid=f"{score:.4f}")
        if not np.isfinite(score):
            raise FloatingPointError(f"{desc} diverged at epoch {epoch}")
        if score < best_score:
            best, best_score, best_epoch = [p.copy() for p in params], score, epoch
        elif epoch - best_epoch >= settings.patience:
            break
    bar.close()
    return best
