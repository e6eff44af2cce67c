"""One contract for every backend (RELIABILITY.md lines 11, 12): decrypt(evaluate(encrypt(r)))
equals the plaintext compressed model within the scheme's stated tolerance, and the same request
twice gives different bytes and the same values. Random shapes, including more items than
slots, negative, zero and positive weights and all-zero rows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libcryptorec.compression import compress
from libcryptorec.he import schemes
from libcryptorec.he.errors import HEError
from libcryptorec.model import FineTuning
from tests.test_model import make_model, random_ratings

pytestmark = pytest.mark.he
FAST = [s for s, m in schemes.SUPPORTED if m == "fast"]


def _packed(items: int, dim: int, seed: int):  # type: ignore[no-untyped-def]
    model = make_model(m=items, d=dim, seed=seed)
    model.A *= 0.3
    model.Q *= 0.3
    model.A[1] = 0.0  # an all-zero row
    model.meta["finetune_one_step"] = {"steps": 1, "eta": 1.0, "l2": 0.0}
    return compress(model, threshold=0.01, clusters=64)  # zero, negative and positive weights


def _expected(packed, ratings, mode: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    if mode == "accurate":
        return packed.model.predict_accurate(ratings, FineTuning(1, 1.0, 0.0))[0]
    return packed.model.predict(ratings)[0]


def _check(scheme: str, mode: str, items: int, dim: int, seed: int, density: float) -> None:
    packed = _packed(items, dim, seed)
    client, evaluator = schemes.open_local(packed, scheme, mode)
    try:
        ratings = random_ratings(1, items, density, seed + 1)
        query, rbar = client.encrypt(ratings)
        predicted = rbar + client.decrypt(evaluator.evaluate(query))
        np.testing.assert_allclose(
            predicted, _expected(packed, ratings, mode), atol=schemes.TOLERANCE[scheme]
        )
    finally:
        evaluator.close()


@pytest.mark.parametrize(("scheme", "mode"), schemes.SUPPORTED)
def test_contract_equals_plaintext_model(scheme: str, mode: str) -> None:
    _check(scheme, mode, items=60, dim=7, seed=3, density=0.3)


@pytest.mark.parametrize("scheme", FAST)
def test_contract_tiny_model_with_zero_diagonals(scheme: str) -> None:
    # Found by the random-shape test: with 2 items and d = 3 some diagonals are entirely zero,
    # and SEAL refuses to multiply by a zero plaintext ("transparent" result).
    _check(scheme, "fast", items=2, dim=3, seed=0, density=0.5)


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["ckks", "bfv"])
def test_contract_more_items_than_slots(scheme: str) -> None:
    _check(scheme, "fast", items=4200, dim=6, seed=5, density=0.01)


@pytest.mark.slow
@settings(max_examples=6, deadline=None)
@given(
    scheme=st.sampled_from(FAST),
    items=st.integers(2, 300),
    dim=st.integers(1, 40),
    seed=st.integers(0, 1000),
)
def test_contract_random_shapes(scheme: str, items: int, dim: int, seed: int) -> None:
    _check(scheme, "fast", items, dim, seed, density=0.2)


@pytest.mark.parametrize(("scheme", "mode"), schemes.SUPPORTED)
def test_contract_same_request_twice(scheme: str, mode: str) -> None:
    client, evaluator = schemes.open_local(_packed(60, 7, seed=3), scheme, mode)
    try:
        ratings = random_ratings(1, 60, 0.3, 1)
        query, _ = client.encrypt(ratings)
        assert query != client.encrypt(ratings)[0]
        r1, r2 = evaluator.evaluate(query), evaluator.evaluate(query)
        assert r1 != r2
        np.testing.assert_allclose(
            client.decrypt(r1), client.decrypt(r2), atol=schemes.TOLERANCE[scheme]
        )
    finally:
        evaluator.close()


@pytest.mark.parametrize(("scheme", "mode"), schemes.SUPPORTED)
def test_contract_garbage_is_refused_with_an_he_error(scheme: str, mode: str) -> None:
    client, evaluator = schemes.open_local(_packed(60, 7, seed=4), scheme, mode)
    try:
        good, _ = client.encrypt(random_ratings(1, 60, 0.3, 2))
        for bad in ([b"\x00" * 7] * len(good), [], [g[: len(g) // 2] for g in good], good + good):
            with pytest.raises(HEError):
                evaluator.evaluate(bad)
    finally:
        evaluator.close()
