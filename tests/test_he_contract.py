"""One contract for every fast-mode backend: decrypt(evaluate(encrypt(x))) equals the plaintext
compressed model within the backend's stated tolerance (RELIABILITY.md line 11), and the same
request twice gives different bytes and the same values (line 12)."""

from __future__ import annotations

import numpy as np
import pytest

from libcryptorec.compression import compress
from libcryptorec.he.api import SCHEMES, open_fast
from libcryptorec.he.errors import HEError
from tests.test_model import make_model

pytestmark = pytest.mark.he

SHAPES = [(60, 7), (4200, 6)]  # the second has more items than CKKS/BFV slots


def _packed(items: int, dim: int, seed: int):  # type: ignore[no-untyped-def]
    model = make_model(m=items, d=dim, seed=seed)
    model.A *= 0.3
    model.Q *= 0.3
    model.A[1] = 0.0  # an all-zero row
    return compress(model, threshold=0.01, clusters=64)  # zero, negative and positive weights


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(("items", "dim"), SHAPES, ids=["small", "more-items-than-slots"])
def test_contract_equals_plaintext_model(scheme: str, items: int, dim: int) -> None:
    if scheme == "paillier" and items > 1000:
        pytest.skip("Paillier has no slots to overflow; 4,200 r^n precomputations take ~15 s")
    packed = _packed(items, dim, seed=items + dim)
    session = open_fast(scheme, packed)
    try:
        rng = np.random.default_rng(0)
        x = np.zeros(items)
        rated = rng.choice(items, size=30, replace=False)
        x[rated] = rng.normal(0, 1, 30) / np.sqrt(30)
        reply = session.evaluator.evaluate(session.client.encrypt(x))
        expected = packed.model.item_bias + x @ packed.model.A @ packed.model.Q.T
        np.testing.assert_allclose(session.client.decrypt(reply), expected, atol=session.tolerance)
    finally:
        session.evaluator.close()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_contract_same_request_twice(scheme: str) -> None:
    session = open_fast(scheme, _packed(60, 7, seed=3))
    try:
        x = np.random.default_rng(1).normal(0, 0.3, 60)
        query = session.client.encrypt(x)
        assert query != session.client.encrypt(x)
        r1, r2 = session.evaluator.evaluate(query), session.evaluator.evaluate(query)
        assert r1 != r2
        np.testing.assert_allclose(
            session.client.decrypt(r1), session.client.decrypt(r2), atol=session.tolerance
        )
    finally:
        session.evaluator.close()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_contract_garbage_is_refused_with_an_he_error(scheme: str) -> None:
    session = open_fast(scheme, _packed(60, 7, seed=4))
    try:
        good = session.client.encrypt(np.zeros(60))
        for bad in ([b"\x00" * 7], [], [g[: len(g) // 2] for g in good], good + good):
            with pytest.raises(HEError):
                session.evaluator.evaluate(bad)
    finally:
        session.evaluator.close()
