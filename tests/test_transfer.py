"""Transfer between datasets sharing items (paper 3.3)."""

from __future__ import annotations

import numpy as np

from libcryptorec.data import from_raw, synthetic
from libcryptorec.training import TrainConfig
from libcryptorec.transfer import align, run_transfer


def test_align_lines_up_shared_items() -> None:
    a = from_raw([1, 1, 2], [10, 20, 30], [1, 2, 3], titles={10: "x"})
    b = from_raw([5, 6, 6], [30, 20, 40], [3, 4, 5])
    sa, sb = align(a, b)
    assert sa.item_ids.tolist() == sb.item_ids.tolist() == [20, 30]
    assert len(sa) == 2
    assert len(sb) == 2


def test_transfer_runs_and_reports(small) -> None:  # type: ignore[no-untyped-def]
    other = synthetic(n_users=200, n_items=120, rank=4, density=0.25, seed=2)
    other = from_raw(
        other.user_ids[other.users] + 10_000,
        other.item_ids[other.items],
        other.values,
        name="other",
    )
    config = TrainConfig(
        dim=8, epochs=8, learning_rate=3e-3, l2=1.0, finetune_max_steps=1, finetune_etas=(1.0,)
    )
    result = run_transfer(small, other, seed=0, config=config)
    assert result.shared_items == 120
    assert np.isfinite(result.rmse_scratch)
    assert np.isfinite(result.rmse_transfer)
    assert 1 <= result.epochs_transfer <= 8
