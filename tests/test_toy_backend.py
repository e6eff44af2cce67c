"""A backend registered from a test module runs through the backend contract and the real
services (gRPC, key registration, Predict, the client library) with no edit anywhere else."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from cryptorec.services import versions
from cryptorec.services.app.server import ServerConfig, start
from cryptorec.services.cli import build_parser, main, server_config
from cryptorec.services.client.library import CryptoRecClient
from cryptorec.services.store.file_store import FileStore
from libcryptorec.he import registry
from libcryptorec.he.backend import Backend
from tests.backend_contract import BackendContract, contract_model
from tests.redis_server import free_port
from tests.test_observability import _scrape, _value
from tests.toy_backend import BLOCK_ITEMS, ToyBackend

ROOT = Path(__file__).resolve().parents[1]


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


def _ratings_row(ratings: dict[int, float], items: int) -> sp.csr_matrix:
    row = np.zeros((1, items), dtype=np.float32)
    for item, r in ratings.items():
        row[0, item - 1] = r
    return sp.csr_matrix(row)


def test_toy_backend_is_sharded_across_evaluators(toy: Backend, tmp_path: Path) -> None:
    """The sharded path with the toy's own block planning (blocks of 16 items): a model of
    100 items in 3 shards, two evaluators computing shards for a router; every evaluator
    answers shard calls, and the result is the model's."""
    packed = contract_model(100, 6, seed=3)
    store = FileStore(tmp_path)
    catalogue = [(i + 1, f"Item {i + 1}") for i in range(100)]
    versions.publish(store, "v1", packed, catalogue, shards=3)
    ports = [free_port(), free_port()]
    config = ServerConfig(
        shard_peers=",".join(f"127.0.0.1:{p}" for p in ports),
        peer_secret="toy-secret",
        observe=True,
        metrics_host="127.0.0.1",
    )
    evaluators = [
        start(("evaluator",), store, port, "127.0.0.1", config=replace(config, metrics_port=m))
        for port, m in zip(ports, (free_port(), free_port()), strict=True)
    ]
    front = start(("key", "model", "evaluator"), store, config=config)
    client = CryptoRecClient(f"127.0.0.1:{front.port}")
    try:
        ratings = {1: 5.0, 17: 2.0, 40: 4.0, 99: 1.0}
        predictions, _ = client.predict(ratings, scheme="toy", mode="fast")
        expected = toy.reference(packed.model, _ratings_row(ratings, 100))
        np.testing.assert_allclose(predictions, expected, atol=toy.tolerance)
        first_calls = [
            _value(_scrape(e), "grpc_server_handled_total", grpc_method="FirstProduct")
            for e in evaluators
        ]
        assert sum(first_calls) == 3  # one call per shard, spread over the evaluators
        assert all(calls >= 1 for calls in first_calls), first_calls
    finally:
        client.close()
        for running in (front, *evaluators):
            running.stop(grace=1.0)


def test_toy_backends_own_option_is_a_serve_setting_it_reads(
    toy: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A setting declared once, by the backend: `serve --help` shows it with its variable and
    default, the typed config built from the arguments carries it, and the backend's
    evaluator uses it (40-byte reply nonces make every reply 24 bytes longer)."""
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "--toy-reply-nonce" in shown
    assert "[env CRYPTOREC_TOY_REPLY_NONCE; default 16]" in shown
    args = build_parser().parse_args(["serve", "--toy-reply-nonce", "40"])
    config = server_config(args)
    assert config.options["toy_reply_nonce"] == 40

    packed = contract_model(40, 6, seed=2)
    store = FileStore(tmp_path)
    versions.publish(store, "v1", packed, [(i + 1, f"Item {i + 1}") for i in range(40)])
    down = {}
    for nonce in (16, 40):
        options = {**config.options, "toy_reply_nonce": nonce}
        running = start(("key", "model", "evaluator"), store, config=ServerConfig(options=options))
        client = CryptoRecClient(f"127.0.0.1:{running.port}")
        try:
            _, result = client.predict({1: 5.0, 4: 2.0}, scheme="toy", mode="fast")
            down[nonce] = result.bytes["down"]
        finally:
            client.close()
            running.stop(grace=1.0)
    replies = -(-40 // BLOCK_ITEMS)
    assert down[40] - down[16] == 24 * replies


def test_the_alert_rules_cover_the_toy_backend_unedited(toy: Backend, tmp_path: Path) -> None:
    """No alert rule names a scheme: latency alerts compare each (scheme, mode)'s evaluate
    phase with `cryptorec_quoted_seconds`, which a toy query sets from the toy's own nominal
    cost when its model version carries no measured quote."""
    rules = (ROOT / "k8s" / "monitoring" / "alerts.yaml").read_text()
    for backend in registry.backends():
        assert f'scheme="{backend.scheme}"' not in rules
        assert f'mode="{backend.mode}"' not in rules
    packed = contract_model(40, 6, seed=2)
    store = FileStore(tmp_path)
    versions.publish(store, "v1", packed, [(i + 1, f"Item {i + 1}") for i in range(40)])
    config = ServerConfig(observe=True, metrics_port=free_port(), metrics_host="127.0.0.1")
    running = start(("key", "model", "evaluator"), store, config=config)
    client = CryptoRecClient(f"127.0.0.1:{running.port}")
    try:
        client.predict({1: 5.0}, scheme="toy", mode="fast")
        quoted = _value(_scrape(running), "cryptorec_quoted_seconds", scheme="toy", mode="fast")
        assert quoted == toy.nominal_seconds
    finally:
        client.close()
        running.stop(grace=1.0)
