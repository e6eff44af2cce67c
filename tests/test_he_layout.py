"""The diagonal/BSGS slot layout, checked on plain vectors (no encryption)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libcryptorec.he.layout import DiagonalPlan, simulate_first, simulate_second


@settings(max_examples=40, deadline=None)
@given(
    slots_log=st.integers(3, 7),
    items=st.integers(1, 300),
    dim=st.integers(1, 40),
    baby_log=st.integers(0, 4),
    seed=st.integers(0, 1000),
)
def test_layout_computes_both_products(
    slots_log: int, items: int, dim: int, baby_log: int, seed: int
) -> None:
    slots = 1 << slots_log
    width = 1 << max(0, (dim - 1).bit_length())
    if width > slots:
        return
    plan = DiagonalPlan.for_model(slots, items, dim, min(1 << baby_log, width))
    rng = np.random.default_rng(seed)
    A, Q, x = rng.normal(size=(items, dim)), rng.normal(size=(items, dim)), rng.normal(size=items)
    A[rng.random(A.shape) < 0.2] = 0.0  # zero weights and, sometimes, all-zero rows
    p_rep = simulate_first(plan, plan.pad_items(x), plan.first_diagonals(A))
    np.testing.assert_allclose(
        p_rep.reshape(-1, plan.width)[:, :dim], np.tile(x @ A, (slots // plan.width, 1)), atol=1e-9
    )
    z = simulate_second(plan, p_rep, plan.second_diagonals(Q)).ravel()[:items]
    np.testing.assert_allclose(z, x @ A @ Q.T, atol=1e-9)


def test_rotation_steps_are_only_those_used() -> None:
    plan = DiagonalPlan.for_model(4096, 3706, 500)
    assert (plan.width, plan.baby, plan.giant, plan.blocks) == (512, 32, 16, 1)
    assert plan.rotation_steps == (1, 32, 512, 1024, 2048)


def test_model_wider_than_slots_is_refused() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        DiagonalPlan.for_model(16, 10, 40)
