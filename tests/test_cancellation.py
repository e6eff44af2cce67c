"""RELIABILITY.md line 21: when the client cancels or the deadline passes, the server's
computation stops within about 100 ms (the kernels check between units of a few ms)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from libcryptorec.compression import compress
from libcryptorec.he import schemes
from libcryptorec.he.errors import CancelledError
from tests.test_model import make_model, random_ratings

pytestmark = [pytest.mark.he, pytest.mark.slow]


def _stop_after(seconds: float):  # type: ignore[no-untyped-def]
    deadline = time.perf_counter() + seconds
    state = {"flipped_at": None}

    def should_stop() -> bool:
        if time.perf_counter() >= deadline:
            state["flipped_at"] = state["flipped_at"] or time.perf_counter()
            return True
        return False

    return should_stop, state


@pytest.mark.parametrize(
    ("scheme", "mode", "items", "dim", "workers"),
    [
        ("ckks", "fast", 3706, 500, "1"),
        ("bfv", "fast", 3706, 500, "1"),
        ("paillier", "fast", 400, 64, "1"),  # in-process kernels
        ("paillier", "fast", 400, 64, "2"),  # worker processes
    ],
)
def test_cancelled_computation_stops_within_100_ms(
    monkeypatch: pytest.MonkeyPatch, scheme: str, mode: str, items: int, dim: int, workers: str
) -> None:
    monkeypatch.setenv("CRYPTOREC_PAILLIER_WORKERS", workers)
    model = make_model(m=items, d=dim, seed=1)
    model.A *= 0.05
    model.Q *= 0.05
    packed = compress(model, 0.0, 256)
    spec = schemes.find_spec(schemes.specs(packed), scheme, mode)
    client = schemes.new_client(spec, schemes.ClientInputs.of(packed.model))
    meta = {
        "scheme": scheme,
        "mode": mode,
        "parameter_set": spec.parameter_set,
        "rotation_steps": list(spec.rotation_steps),
    }
    evaluator = schemes.bind(schemes.prepare(packed, spec), meta, client.key_blobs())
    try:
        cts, _ = client.encrypt(random_ratings(1, items, 0.05, 2))
        t0 = time.perf_counter()
        evaluator.evaluate(cts)
        full = time.perf_counter() - t0
        assert full > 0.15, "the computation must be long enough to interrupt"
        should_stop, state = _stop_after(full / 3)
        with pytest.raises(CancelledError):
            evaluator.evaluate(cts, should_stop)
        stopped_after = time.perf_counter() - state["flipped_at"]
        assert stopped_after < 0.1, f"kept computing {stopped_after:.3f} s after cancellation"
        np.testing.assert_array_equal(len(evaluator.evaluate(cts)) > 0, True)  # still usable
    finally:
        evaluator.close()
