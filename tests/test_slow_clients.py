"""Clients that take a server's threads and keep them (RELIABILITY.md lines 38, 41): slow
readers over raw HTTP/2, and one client holding many calls. A real `cryptorec serve` process;
the attacker connects from another loopback address than the legitimate client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cryptorec.services import versions
from cryptorec.services.client.library import CryptoRecClient, model_kind, ratings_row
from cryptorec.services.credentials import add_client
from cryptorec.services.rpc.convert import kind_enum, mode_enum, scheme_enum
from cryptorec.services.store.base import Quotas
from cryptorec.services.store.file_store import FileStore
from cryptorec.v1 import evaluator_service_pb2 as ev_pb
from cryptorec.v1 import key_service_pb2 as key_pb
from cryptorec.v1 import key_service_pb2_grpc as key_grpc
from cryptorec.v1 import model_service_pb2 as model_pb
from cryptorec.v1 import model_service_pb2_grpc as model_grpc
from tests.raw_http2 import SlowReader
from tests.test_attacks import TRANSFER_GRACE, Server
from tests.test_service_e2e import ITEMS, RATINGS, _library_prediction, _packed

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.he]
ATTACKER = "127.0.0.2"  # Linux routes all of 127/8 to loopback
HOLD_SECONDS = 25.0
READERS = 30


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    store = FileStore(tmp_path / "store")
    versions.publish(store, "v1", _packed(), [(i + 1, f"Item {i + 1}") for i in range(ITEMS)])
    running = Server(f"file://{tmp_path / 'store'}", "slow:", tmp_path / "server.log")
    yield running
    running.stop()


def _healthy(target: str) -> bool:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        return reply.status == health_pb2.HealthCheckResponse.SERVING


def _answered(client: CryptoRecClient, attempts: int = 10) -> np.ndarray:
    """A legitimate query's predictions; a moment of overload (every work slot busy) is
    retried, as a client does."""
    for attempt in range(attempts):
        try:
            predictions, _ = client.predict(RATINGS)
            return predictions
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or attempt == attempts - 1:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def test_slow_readers_hold_no_thread_for_long(server: Server) -> None:
    """RELIABILITY.md line 38: 30 PredictWhole calls whose replies are never read (the client
    answers PINGs but never opens its flow-control window), renewed as the server ends them,
    held 25 s: health checks and a legitimate client on the same port are answered
    throughout, the attacker's address never holds more than its share, and every reply it
    stalled is ended within the transfer grace period."""
    client = CryptoRecClient(server.target, timeout=30)
    info = client.model_info()
    keys = client.ensure_keys(info, "ckks", "fast", {}, {})
    query, _ = keys.client.encrypt(ratings_row(info, RATINGS))
    header = ev_pb.PredictHeader(
        model_version=info.version,
        key_id=keys.key_id,
        scheme=scheme_enum("ckks"),
        mode=mode_enum("fast"),
        ciphertext_count=len(query),
        input_offset=info.inputs.input_offset,
        model_kind=kind_enum(model_kind(info)),
    )
    request = ev_pb.PredictWholeRequest(header=header, ciphertexts=query).SerializeToString()
    path = "/cryptorec.v1.EvaluatorService/PredictWhole"
    expected = _library_prediction("fast")
    readers = [SlowReader(server.port, path, request, ATTACKER) for _ in range(READERS)]
    finished: list[SlowReader] = []
    checks = 0
    try:
        until = time.monotonic() + HOLD_SECONDS
        while time.monotonic() < until:
            assert _healthy(server.target)
            np.testing.assert_allclose(_answered(client), expected, atol=1e-3)
            checks += 1
            for k, reader in enumerate(readers):
                if reader.ended:  # the server let it go: open another in its place
                    finished.append(reader)
                    reader.close()
                    readers[k] = SlowReader(server.port, path, request, ATTACKER)
            time.sleep(0.5)
    finally:
        for reader in readers:
            reader.close()
        client.close()
    assert checks >= 10
    # A stalled reply is ended by the server's watchdog with DEADLINE_EXCEEDED in trailers.
    stalled = [r for r in finished if r.status == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]]
    assert stalled, "no reply was ever stalled: the attack did not happen"
    for reader in stalled:
        assert reader.ended_at is not None
        assert reader.headers_at is not None
        assert reader.ended_at - reader.headers_at < TRANSFER_GRACE + 5
    refused = [r for r in finished if r.status == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]]
    assert refused, "the attacker's address was never refused a call"


def test_one_client_holds_a_bounded_share_of_calls(tmp_path: Path) -> None:
    """RELIABILITY.md lines 38, 41: with --auth, one client's idle uploads stop at its own cap
    (another client is served meanwhile); reflection needs a token like the API."""
    store = FileStore(tmp_path / "store")
    versions.publish(store, "v1", _packed(), [(i + 1, f"Item {i + 1}") for i in range(ITEMS)])
    greedy = add_client(store, "greedy", Quotas())
    other = add_client(store, "other", Quotas())
    server = Server(
        f"file://{tmp_path / 'store'}",
        "calls:",
        tmp_path / "server.log",
        "--auth",
        env={"CRYPTOREC_MAX_CALLS_PER_CLIENT": "3", "CRYPTOREC_TRANSFER_GRACE_SECONDS": "30"},
    )
    try:
        with grpc.insecure_channel(server.target) as channel:
            keys = key_grpc.KeyServiceStub(channel)

            def idle() -> Iterator[key_pb.RegisterKeysRequest]:
                time.sleep(60)  # never sends its header
                yield key_pb.RegisterKeysRequest()

            auth = (("authorization", f"Bearer {greedy}"),)
            held = [keys.RegisterKeys.future(idle(), metadata=auth, timeout=60) for _ in range(5)]
            time.sleep(2)
            refused = [f for f in held if f.done()]
            assert len(refused) == 2
            for f in refused:
                assert f.exception().code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "per client" in f.exception().details()
            models = model_grpc.ModelServiceStub(channel)
            reply = models.GetModel(
                model_pb.GetModelRequest(), metadata=(("authorization", f"Bearer {other}"),)
            )
            assert reply.version == "v1"
            from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

            reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
            ask = reflection_pb2.ServerReflectionRequest(list_services="")
            with pytest.raises(grpc.RpcError) as anonymous:
                list(reflect.ServerReflectionInfo(iter([ask]), timeout=10))
            assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
            replies = reflect.ServerReflectionInfo(
                iter([ask]), metadata=(("authorization", f"Bearer {other}"),), timeout=10
            )
            names = {s.name for r in replies for s in r.list_services_response.service}
            assert "cryptorec.v1.EvaluatorService" in names
            assert "cryptorec.v1.ShardService" not in names  # no peer secret: not served
            for f in held:
                f.cancel()
    finally:
        server.stop()
