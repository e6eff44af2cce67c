"""The backend contract (tests/backend_contract.py) for every registered backend, and the SEAL
fast backends on shapes that stress the slot layout: more items than slots, random shapes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libcryptorec.he import registry
from libcryptorec.he.backend import Backend
from tests.backend_contract import BackendContract, round_trip

pytestmark = pytest.mark.he
BACKENDS = registry.backends()
FAST = [b for b in BACKENDS if b.mode == "fast"]


@pytest.fixture(params=BACKENDS, ids=lambda b: f"{b.scheme}/{b.mode}")
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.param  # type: ignore[no-any-return]


class TestRegisteredBackends(BackendContract):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("backend", [b for b in FAST if b.scheme != "paillier"], ids=str)
def test_contract_more_items_than_slots(backend: Backend) -> None:
    round_trip(backend, items=4200, dim=6, seed=5, density=0.01)


@pytest.mark.slow
@settings(max_examples=6, deadline=None)
@given(
    backend=st.sampled_from(FAST),
    items=st.integers(2, 300),
    dim=st.integers(1, 40),
    seed=st.integers(0, 1000),
)
def test_contract_random_shapes(backend: Backend, items: int, dim: int, seed: int) -> None:
    round_trip(backend, items, dim, seed, density=0.2)
