"""RELIABILITY.md line 26: two model versions served by one evaluator process. Every query is
answered wholly from its own version, for every scheme and mode, with the kernels in-process and
in worker processes: no model state lives at module level.

The two versions share A and Q and differ only in their item biases (by a whole star), so a
query packed or finished with the other version's biases is off by far more than a tolerance.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from libcryptorec.compression import compress
from libcryptorec.he import schemes
from tests.test_model import make_model, random_ratings

pytestmark = pytest.mark.he
ITEMS, DIM = 50, 6
CASES = [(s, m, 1) for s, m in schemes.SUPPORTED] + [("paillier", "fast", 2)]


def _versions():  # type: ignore[no-untyped-def]
    model = make_model(m=ITEMS, d=DIM, seed=11)
    model.A *= 0.4
    model.Q *= 0.4
    model.meta["finetune_one_step"] = {"steps": 1, "eta": 1.0, "l2": 0.0}
    shifted = replace(model, item_means=model.item_means + np.float32(1.0))
    return compress(model, 0.005, 64), compress(shifted, 0.005, 64)


def _expected(packed, ratings, mode: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    if mode == "accurate":
        return packed.model.predict_accurate(ratings, packed.model.one_step_tuning())[0]
    return packed.model.predict(ratings)[0]


@pytest.mark.parametrize(("scheme", "mode", "workers"), CASES)
def test_two_versions_in_one_process_each_answer_from_their_own(
    scheme: str, mode: str, workers: int
) -> None:
    v1, v2 = _versions()
    ratings = random_ratings(1, ITEMS, 0.3, 5)
    client1, evaluator1 = schemes.open_local(v1, scheme, mode, workers=workers)
    try:
        client2, evaluator2 = schemes.open_local(v2, scheme, mode, workers=workers)
        try:
            # Version 2 was bound last; version 1's queries must still use version 1 only.
            for client, evaluator, packed in (
                (client1, evaluator1, v1),
                (client2, evaluator2, v2),
                (client1, evaluator1, v1),
            ):
                query, rbar = client.encrypt(ratings)
                predicted = rbar + client.decrypt(evaluator.evaluate(query))
                np.testing.assert_allclose(
                    predicted,
                    _expected(packed, ratings, mode),
                    atol=schemes.TOLERANCE[scheme],
                )
        finally:
            evaluator2.close()
    finally:
        evaluator1.close()
