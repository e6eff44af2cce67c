"""One key set, one key id; without authentication, a bounded number of new key sets per
client address (RELIABILITY.md line 42). Real gRPC, the directory store."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cryptorec.services.app.server import Running, ServerConfig, start
from cryptorec.services.client.library import CryptoRecClient
from cryptorec.services.store.file_store import FileStore
from cryptorec.v1 import key_service_pb2 as key_pb
from libcryptorec.he import registry
from libcryptorec.he.backend import ClientInputs
from tests.test_service_e2e import ITEMS, _packed

pytestmark = [pytest.mark.integration, pytest.mark.he]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Running]:
    from cryptorec.services import versions

    store = FileStore(tmp_path / "store")
    versions.publish(store, "v1", _packed(), [(i + 1, f"Item {i + 1}") for i in range(ITEMS)])
    running = start(("key", "model"), store, config=ServerConfig(registrations_per_address=2))
    yield running
    running.stop(grace=0.5)


def _register(client: CryptoRecClient, blobs: dict[str, bytes], steps: list[int]) -> str:
    """RegisterKeysWhole with the blobs in the given order and the steps as given."""
    header = key_pb.KeyHeader(
        scheme=1,
        mode=1,
        parameter_set="ckks-8192-fast",
        rotation_steps=steps,
        blobs=[
            key_pb.KeyBlob(name=n, size=len(b), sha256=hashlib.sha256(b).digest())
            for n, b in blobs.items()
        ],
    )
    whole = key_pb.RegisterKeysWholeRequest(header=header, keys=b"".join(blobs.values()))
    return str(client.keys.RegisterKeysWhole(whole, timeout=60).key_id)


def _key_set(client: CryptoRecClient) -> tuple[dict[str, bytes], list[int]]:
    """Fresh CKKS fast keys for the served model, and their rotation steps."""
    info = client.model_info()
    spec = client._spec(info, "ckks", "fast")
    backend = registry.get("ckks", "fast")
    keys = backend.new_client(spec, ClientInputs(ITEMS, 3.0, 0.5, (1.0, 5.0), 1.0))
    return keys.key_blobs(), list(spec.rotation_steps)


def test_one_key_set_has_one_id_however_its_header_is_ordered(server: Running) -> None:
    """RELIABILITY.md line 42: the same keys with their rotation steps permuted or their blobs
    in another order get the same key id, so nobody can store one key set many times."""
    client = CryptoRecClient(f"127.0.0.1:{server.port}")
    try:
        blobs, steps = _key_set(client)
        first = _register(client, blobs, steps)
        assert _register(client, blobs, steps[::-1]) == first
        assert _register(client, dict(reversed(blobs.items())), steps) == first
        assert len(list((Path(server.store.root) / "keys").glob("*.blob"))) == 1
    finally:
        client.close()


def test_new_key_sets_per_address_are_bounded_without_authentication(server: Running) -> None:
    """RELIABILITY.md line 42: with no authentication, an address registers at most its daily
    number of new key sets (two here); registering a known one again does not count."""
    client = CryptoRecClient(f"127.0.0.1:{server.port}")
    try:
        sets = [_key_set(client) for _ in range(3)]
        first = _register(client, *sets[0])
        _register(client, *sets[1])
        assert _register(client, *sets[0]) == first  # known: refreshed, not counted
        with pytest.raises(grpc.RpcError) as refused:
            _register(client, *sets[2])
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "new key sets" in str(refused.value.details())
    finally:
        client.close()
