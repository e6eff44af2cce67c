"""What the baselines share: a held-out split of their training ratings for early stopping,
and the early-stopping loop itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from tqdm import tqdm

from libcryptorec.splits import holdout_mask


@dataclass(frozen=True)
class HeldOut:
    """A (n, m) rating matrix split into the part a baseline fits and a part it validates on."""

    fit: sp.csr_matrix
    valid: sp.csr_matrix


def hold_out(R: sp.csr_matrix, fraction: float, seed: int) -> HeldOut:
    """Hold out `fraction` of each row's ratings of the (n, m) CSR matrix R for validation."""
    coo = R.tocoo()
    held = holdout_mask(coo.row.astype(np.int64), fraction, np.random.default_rng(seed))

    def pick(mask: npt.NDArray[np.bool_]) -> sp.csr_matrix:
        return sp.csr_matrix((coo.data[mask], (coo.row[mask], coo.col[mask])), shape=R.shape)

    return HeldOut(fit=pick(~held), valid=pick(held))


def early_stopping(
    epoch_fn: Callable[[], None],
    score_fn: Callable[[], float],
    snapshot: Callable[[], object],
    *,
    epochs: int,
    patience: int,
    desc: str,
    show_progress: bool = False,
) -> tuple[object, float, int]:
    """Run `epoch_fn` up to `epochs` times; after each, `score_fn` gives a validation RMSE.

    Returns (snapshot of the best epoch, its score, its epoch number); stops after `patience`
    epochs without improvement.
    """
    best: tuple[object, float, int] = (snapshot(), np.inf, 0)
    bar = tqdm(range(1, epochs + 1), disable=not show_progress, desc=desc, unit="epoch")
    for epoch in bar:
        epoch_fn()
        score = score_fn()
        bar.set_postfix(valid=f"{score:.4f}")
        if not np.isfinite(score):
            raise FloatingPointError(f"{desc} diverged at epoch {epoch}")
        if score < best[1]:
            best = (snapshot(), score, epoch)
        elif epoch - best[2] >= patience:
            break
    bar.close()
    return best
