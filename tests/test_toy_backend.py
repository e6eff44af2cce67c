"""A backend registered from a test module runs through the backend contract and the real
services (gRPC, key registration, Predict, the client library) with no edit anywhere else."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from cryptorec.services import versions
from cryptorec.services.client.library import CryptoRecClient
from cryptorec.services.rpc.server import start
from cryptorec.services.store.file_store import FileStore
from libcryptorec.he import registry
from libcryptorec.he.backend import Backend
from tests.backend_contract import BackendContract, contract_model
from tests.toy_backend import ToyBackend


@pytest.fixture(scope="module")
def toy() -> Iterator[Backend]:
    backend = registry.register(ToyBackend())
    yield backend
    registry.unregister(backend.scheme, backend.mode)


@pytest.fixture
def backend(toy: Backend) -> Backend:
    return toy


class TestToyBackend(BackendContract):
    pass


def test_toy_backend_serves_end_to_end_over_grpc(toy: Backend, tmp_path: Path) -> None:
    packed = contract_model(40, 6, seed=2)
    store = FileStore(tmp_path)
    versions.publish(store, "v1", packed, [(i + 1, f"Item {i + 1}") for i in range(40)])
    running = start(("key", "model", "evaluator"), store)
    client = CryptoRecClient(f"127.0.0.1:{running.port}")
    try:
        info = client.model_info()
        assert any(p.scheme == toy.wire[0] for p in info.schemes)
        ratings = {1: 5.0, 4: 2.0, 9: 4.0, 30: 1.0}
        predictions, result = client.predict(ratings, scheme="toy", mode="fast")
        row = np.zeros((1, 40), dtype=np.float32)
        for item, r in ratings.items():
            row[0, item - 1] = r
        expected = toy.reference(packed.model, sp.csr_matrix(row))
        np.testing.assert_allclose(predictions, expected, atol=toy.tolerance)
        assert result.scheme == "toy"
    finally:
        client.close()
        running.stop(grace=1.0)
