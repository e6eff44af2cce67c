"""Who may ask, and how much (RELIABILITY.md lines 9, 29): bearer tokens checked before any
work, key sets owned by the client that registered them, quotas and query budgets counted in
the store so that every replica sees the same count. Real gRPC on both stores, then real
processes on a real Redis."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cryptorec.services import versions
from cryptorec.services.app.server import Running, ServerConfig, start
from cryptorec.services.client import library
from cryptorec.services.client.errors import ServiceError, reported
from cryptorec.services.client.library import CryptoRecClient
from cryptorec.services.credentials import add_client, revoke_client, rotate_client, token_sha256
from cryptorec.services.rpc.details import retry_after
from cryptorec.services.store.base import DAY_SECONDS, Quotas
from cryptorec.services.store.file_store import FileStore
from cryptorec.services.store.redis_store import RedisStore
from cryptorec.v1 import key_service_pb2 as key_pb
from cryptorec.v1 import model_service_pb2 as model_pb
from tests.test_service_e2e import ITEMS, RATINGS, _library_prediction, _packed
from tests.test_service_faults import serve, stop

pytestmark = [pytest.mark.integration, pytest.mark.he]


@pytest.fixture(scope="module", params=["redis", "file"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Running, Any]]:
    if request.param == "redis":
        prefix = f"auth-{uuid.uuid4().hex[:8]}:"
        store: Any = RedisStore(request.getfixturevalue("redis_url"), prefix=prefix)
    else:
        store = FileStore(tmp_path_factory.mktemp("store"))
    versions.publish(store, "v1", _packed(), [(i + 1, f"Item {i + 1}") for i in range(ITEMS)])
    running = start(("key", "model", "evaluator"), store, config=ServerConfig(auth=True))
    yield running, store
    running.stop(grace=1.0)
    if isinstance(store, RedisStore):
        for key in store._r.scan_iter(match=store.prefix + "*"):
            store._r.delete(key)


def _client(running: Running, token: str | None) -> CryptoRecClient:
    return CryptoRecClient(f"127.0.0.1:{running.port}", token=token, timeout=60)


def _code(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def test_missing_or_unknown_tokens_are_unauthenticated_health_stays_open(server) -> None:  # type: ignore[no-untyped-def]
    """RELIABILITY.md line 9: missing credentials are UNAUTHENTICATED, before any work."""
    running, _ = server
    for token in (None, "crt_not-a-token", "x" * 300):
        c = _client(running, token)
        try:
            refused = _code(lambda c=c: c.models.ListModels(model_pb.ListModelsRequest()))
            assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
            refused = _code(lambda c=c: c.predict(RATINGS))
            assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
        finally:
            c.close()
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)  # type: ignore[attr-defined]
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_key_sets_belong_to_whoever_registered_them(server) -> None:  # type: ignore[no-untyped-def]
    """RELIABILITY.md line 9: another client's key id is PERMISSION_DENIED."""
    running, store = server
    alice = _client(running, add_client(store, "alice", Quotas()))
    bob_token = add_client(store, "bob", Quotas())
    bob = _client(running, bob_token)
    try:
        predictions, _ = alice.predict(RATINGS)
        np.testing.assert_allclose(predictions, _library_prediction("fast"), atol=1e-3)
        (key_id,) = [k.key_id for k in alice.key_sets()]
        listed = alice.keys.ListKeys(key_pb.ListKeysRequest()).keys
        assert [k.key_id for k in listed] == [key_id]
        assert bob.keys.ListKeys(key_pb.ListKeysRequest()).keys == []
        request = key_pb.GetKeyInfoRequest(key_id=key_id)
        for call in (
            lambda: bob.keys.GetKeyInfo(request),
            lambda: bob.keys.DeleteKeys(key_pb.DeleteKeysRequest(key_id=key_id)),
            lambda: bob.evaluate("v1", alice.key_sets()[0], "ckks", "fast", [b"x"] * 1, ITEMS),
        ):
            assert _code(call).code() == grpc.StatusCode.PERMISSION_DENIED
        # Bob registering the very same public keys: the same id, a second ownership.
        keys = alice.key_sets()[0]
        assert bob.register(keys.client.spec, keys.client.key_blobs()) == key_id
        assert bob.keys.GetKeyInfo(request).key_id == key_id
        alice.keys.DeleteKeys(key_pb.DeleteKeysRequest(key_id=key_id))
        assert _code(lambda: alice.keys.GetKeyInfo(request)).code() == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        assert bob.keys.GetKeyInfo(request).key_id == key_id  # still bob's
        bob.keys.DeleteKeys(key_pb.DeleteKeysRequest(key_id=key_id))
        assert _code(lambda: bob.keys.GetKeyInfo(request)).code() == grpc.StatusCode.NOT_FOUND
    finally:
        alice.close()
        bob.close()


def test_budget_then_resource_exhausted_with_a_retry_time(server) -> None:  # type: ignore[no-untyped-def]
    """RELIABILITY.md line 29: the query after the budget is refused, with when to retry."""
    running, store = server
    carol = _client(running, add_client(store, "carol", Quotas(queries_per_day=3)))
    try:
        for _ in range(3):
            carol.predict(RATINGS)
        refused = _code(lambda: carol.predict(RATINGS))
        assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        wait = retry_after(refused)
        assert wait is not None
        assert DAY_SECONDS - 300 < wait <= DAY_SECONDS
    finally:
        carol.close()


def _refusal(call: Any) -> ServiceError:
    """The error the client library reports for `call`, which must fail."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    error = reported(info.value)
    assert isinstance(error, ServiceError)
    return error


def test_refused_queries_spend_no_budget_and_say_why(server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """RELIABILITY.md line 32: queries refused for overload (every work slot busy) leave the
    budget as it was, with ErrorInfo OVERLOADED and RetryInfo; the budget then buys exactly
    as many answers as it says, and the query after it is QUOTA_EXCEEDED with QuotaFailure
    and when to retry. Bad input (a wrong ciphertext count) spends nothing either."""
    running, store = server
    monkeypatch.setattr(library, "PREDICT_ATTEMPTS", 1)  # see each refusal, no retries
    name = f"heidi-{uuid.uuid4().hex[:6]}"
    heidi = _client(running, add_client(store, name, Quotas(queries_per_day=3)))
    try:
        heidi.predict(RATINGS)
        assert store.usage(name).queries_today == 1
        with contextlib.ExitStack() as busy:
            for _ in range(running.work.slots):
                busy.enter_context(running.work.hold())
            with ThreadPoolExecutor(10) as pool:
                refusals = list(
                    pool.map(lambda _: _refusal(lambda: heidi.predict(RATINGS)), range(10))
                )
        for refused in refusals:
            assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert refused.reason == "OVERLOADED"
            assert 0 < (refused.retry_after or 0) <= 10
        assert store.usage(name).queries_today == 1
        keys = heidi.key_sets()[0]
        bad = _refusal(lambda: heidi.evaluate("v1", keys, "ckks", "fast", [b"x"] * 2, ITEMS))
        assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad.reason == "BAD_REQUEST"
        assert [f for f, _ in bad.error_details.fields] == ["header.ciphertext_count"]
        assert store.usage(name).queries_today == 1
        for _ in range(2):
            heidi.predict(RATINGS)
        spent = _refusal(lambda: heidi.predict(RATINGS))
        assert spent.reason == "QUOTA_EXCEEDED"
        assert spent.error_details.quotas[0][0] == f"client:{name}"
        assert spent.error_details.metadata == {"quota": "queries_per_day"}
        assert (spent.retry_after or 0) > DAY_SECONDS - 300
        assert store.usage(name).queries_today == 3
    finally:
        heidi.close()


def test_key_set_quota_refuses_the_next_registration(server) -> None:  # type: ignore[no-untyped-def]
    running, store = server
    dave = _client(running, add_client(store, "dave", Quotas(max_key_sets=1)))
    try:
        dave.predict(RATINGS, scheme="ckks", mode="fast")
        refused = _code(lambda: dave.predict(RATINGS, scheme="bfv", mode="fast"))
        assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "key sets" in (refused.details() or "")
    finally:
        dave.close()


def test_a_revoked_token_stops_working_at_once(server) -> None:  # type: ignore[no-untyped-def]
    running, store = server
    erin = _client(running, add_client(store, "erin", Quotas()))
    try:
        erin.models.ListModels(model_pb.ListModelsRequest())
        store.remove_client("erin")
        refused = _code(lambda: erin.models.ListModels(model_pb.ListModelsRequest()))
        assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        erin.close()


@pytest.mark.slow
def test_budget_and_ownership_hold_across_two_evaluator_processes(
    redis_url: str, tmp_path: Path
) -> None:
    """RELIABILITY.md line 29, with real processes behind one round-robin channel: a budget of
    3 gives 3 answers, then RESOURCE_EXHAUSTED with a retry time on whichever process the
    query reaches; no token is UNAUTHENTICATED and another client's key PERMISSION_DENIED on
    every process; a revoked token stops at once."""
    prefix = f"auth-procs-{uuid.uuid4().hex[:8]}:"
    store = RedisStore(redis_url, prefix=prefix)
    versions.publish(store, "v1", _packed(), [(i + 1, f"Item {i + 1}") for i in range(ITEMS)])
    front, front_port = serve("all", redis_url, prefix, "--auth")
    evaluators = [serve("evaluator", redis_url, prefix, "--auth") for _ in range(2)]
    target = "ipv4:" + ",".join(f"127.0.0.1:{port}" for _, port in evaluators)

    def client(token: str | None) -> CryptoRecClient:
        return CryptoRecClient(
            f"127.0.0.1:{front_port}", evaluator_target=target, token=token, timeout=60
        )

    frank = client(add_client(store, "frank", Quotas(queries_per_day=3)))
    grace = client(add_client(store, "grace", Quotas()))
    anonymous = client(None)
    try:
        for _ in range(3):
            predictions, _ = frank.predict(RATINGS)
            np.testing.assert_allclose(predictions, _library_prediction("fast"), atol=1e-3)
        for _ in range(4):  # round robin: both processes refuse
            refused = _code(lambda: frank.predict(RATINGS))
            assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert (retry_after(refused) or 0) > DAY_SECONDS - 300
        keys = frank.key_sets()[0]
        for _ in range(2):
            refused = _code(lambda: grace.evaluate("v1", keys, "ckks", "fast", [b"x"], ITEMS))
            assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
            refused = _code(lambda: anonymous.evaluate("v1", keys, "ckks", "fast", [b"x"], ITEMS))
            assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
        grace.predict(RATINGS)
        store.remove_client("grace")
        for _ in range(2):
            assert _code(lambda: grace.predict(RATINGS)).code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        for c in (frank, grace, anonymous):
            c.close()
        for proc, _ in [*evaluators, (front, front_port)]:
            stop(proc)
        for key in store._r.scan_iter(match=prefix + "*"):
            store._r.delete(key)


def test_rotated_tokens_overlap_for_the_grace_then_the_old_one_stops(  # type: ignore[no-untyped-def]
    server, caplog
) -> None:
    """A rotation gives a new token and keeps the old one for its grace period; an expired
    token and a replaced one past its grace are UNAUTHENTICATED and say which; every add,
    rotation and revocation is an audit line naming the token by fingerprint only."""
    running, store = server
    name = f"judy-{uuid.uuid4().hex[:6]}"
    with caplog.at_level(logging.INFO, logger="cryptorec.audit"):
        old = add_client(store, name, Quotas(), expires_in=3600)
        new, record = rotate_client(store, name, grace_seconds=3600, expires_in=7200)
    for token in (old, new):
        c = _client(running, token)
        try:
            c.models.ListModels(model_pb.ListModelsRequest())
            assert (
                abs(c.usage().token_expires_unix - time.time() - (3600 if token == old else 7200))
                < 60
            )
        finally:
            c.close()
    # The grace over, and the new token past its expiry: both refused, each saying why.
    store.replace_client(
        dataclasses.replace(
            record, previous_valid_until=time.time() - 1, expires_unix=time.time() - 1
        )
    )
    for token, why in ((old, "replaced"), (new, "expired")):
        c = _client(running, token)
        try:
            refused = _code(lambda c=c: c.models.ListModels(model_pb.ListModelsRequest()))
            assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
            assert why in (refused.details() or "")
        finally:
            c.close()
    with caplog.at_level(logging.INFO, logger="cryptorec.audit"):
        revoke_client(store, name)
    actions = [(r.audit_action, r.client) for r in caplog.records if r.name == "cryptorec.audit"]  # type: ignore[attr-defined]
    assert actions == [("add", name), ("rotate", name), ("revoke", name)]
    text = "\n".join(str(r.__dict__) for r in caplog.records)
    assert old not in text  # tokens never reach a log
    assert new not in text
    assert token_sha256(new)[:12] in text


def test_a_client_reads_its_own_usage_and_budget(server) -> None:  # type: ignore[no-untyped-def]
    """GetUsage: what the store counts for the caller (queries answered today, when the next
    one fits once the budget is spent, key sets), from whichever role it asks."""
    running, store = server
    name = f"kim-{uuid.uuid4().hex[:6]}"
    kim = _client(running, add_client(store, name, Quotas(queries_per_day=2, max_key_sets=3)))
    try:
        fresh = kim.usage()
        assert (fresh.client, fresh.queries_today, fresh.queries_per_day) == (name, 0, 2)
        assert (fresh.key_sets, fresh.max_key_sets, fresh.next_query_unix) == (0, 3, 0)
        for _ in range(2):
            kim.predict(RATINGS)
        spent = kim.usage()
        assert (spent.queries_today, spent.key_sets) == (2, 1)
        assert spent.key_bytes > 0
        assert DAY_SECONDS - 300 < spent.next_query_unix - time.time() <= DAY_SECONDS
        assert spent.token_expires_unix == 0  # this token does not expire
    finally:
        kim.close()


def test_usage_without_authentication_is_a_failed_precondition(tmp_path: Path) -> None:
    running = start(("model",), FileStore(tmp_path), config=ServerConfig())
    client = CryptoRecClient(f"127.0.0.1:{running.port}", timeout=30)
    try:
        refused = _code(client.usage)
        assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        client.close()
        running.stop(grace=1.0)


def test_reflection_lists_the_public_services_never_the_internal_one(tmp_path: Path) -> None:
    """RELIABILITY.md line 41: an evaluator that serves ShardService to its peers (it has the
    peer secret) still lists only the public API through reflection."""
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    running = start(("evaluator",), FileStore(tmp_path), config=ServerConfig(peer_secret="s"))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
            ask = reflection_pb2.ServerReflectionRequest(list_services="")
            replies = reflect.ServerReflectionInfo(iter([ask]), timeout=10)
            names = {s.name for r in replies for s in r.list_services_response.service}
    finally:
        running.stop(grace=1.0)
    assert names == {
        "cryptorec.v1.EvaluatorService",
        "cryptorec.v1.AccountService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }
