"""`bench he` measures what the services serve: the same client and evaluator, and accurate
mode's step size from the one definition the model service publishes."""

from __future__ import annotations

from typing import Any

import pytest

from cryptorec.benchmarks import he as benchmark
from libcryptorec.compression import compress
from libcryptorec.he import ckks_accurate, registry
from libcryptorec.he.backend import ClientInputs
from libcryptorec.model import FineTuning
from tests.test_model import make_model, random_ratings

pytestmark = pytest.mark.he


def test_accurate_benchmark_uses_the_served_step_size(monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_model(m=30, d=5, seed=3)
    # The n-step setting and the best single step differ: the circuit computes the single step.
    model.finetune = FineTuning(steps=3, eta=0.3, l2=0.0)
    model.meta["finetune_one_step"] = {"steps": 1, "eta": 1.0, "l2": 0.0}
    packed = compress(model, 0.0, 64)
    served = ClientInputs.of(packed.model).step_size
    assert served == 1.0
    seen: list[float] = []
    original = ckks_accurate.client_vectors

    def spy(inputs: Any, ratings: Any, eta: float) -> Any:
        seen.append(eta)
        return original(inputs, ratings, eta)

    monkeypatch.setattr(ckks_accurate, "client_vectors", spy)
    monkeypatch.setattr(benchmark, "client_vectors", spy, raising=False)
    ratings = random_ratings(2, 30, 0.4, 1)
    result = benchmark.measure("ckks", "accurate", packed, ratings, ratings, users=1)
    assert seen
    assert set(seen) == {served}
    assert result.max_abs_err < registry.get("ckks", "accurate").tolerance
