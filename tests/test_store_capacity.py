"""Capacity that adds up (k8s/README.md, Memory): key sets never take the room kept for
model versions, so however many clients register, the trainer's next version fits. A real
redis-server with maxmemory and noeviction, as k8s/base/redis.yaml runs it."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from cryptorec.services import versions
from cryptorec.services.app.server import ServerConfig, start
from cryptorec.services.client.library import CryptoRecClient
from cryptorec.services.credentials import key_allowance
from cryptorec.services.rpc.details import details_of
from cryptorec.services.store.redis_store import RedisStore
from tests.redis_server import start_redis
from tests.test_service_e2e import ITEMS, RATINGS, _packed

pytestmark = [pytest.mark.integration, pytest.mark.he]
MiB = 1 << 20


def test_key_sets_leave_the_model_reserve_free(tmp_path: Path) -> None:
    proc, url = start_redis(
        tmp_path, extra=["--maxmemory", "64mb", "--maxmemory-policy", "noeviction"]
    )
    store = RedisStore(url)
    catalogue = [(i + 1, f"Item {i + 1}") for i in range(ITEMS)]
    versions.publish(store, "v1", _packed(), catalogue)
    reserve = 40 * MiB
    config = ServerConfig(model_reserve_bytes=reserve)
    running = start(("key", "model", "evaluator"), store, config=config)
    refused, answered = None, 0
    try:
        for _ in range(40):  # each client makes its own keys: a new key set each time
            client = CryptoRecClient(f"127.0.0.1:{running.port}", timeout=60)
            try:
                client.predict(RATINGS)
                answered += 1
            except grpc.RpcError as exc:
                refused = exc
                break
            finally:
                client.close()
        assert refused is not None, "the store never filled"
        assert answered >= 1
        assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
        assert details_of(refused).reason == "STORE_FULL"  # type: ignore[arg-type]
        space = store.space()
        assert space is not None
        assert space.used <= space.limit - reserve
        # The reserve is there for the trainer: a version of the same size fits, twice.
        versions.publish(store, "v2", _packed(), catalogue)
        versions.publish(store, "v3", _packed(), catalogue)
        assert store.current() == "v3"
        # A new client's default allowance is an eighth of what key sets may use.
        assert key_allowance(store, reserve) == max(MiB, (64 * MiB - reserve) // 8)
    finally:
        running.stop(grace=1.0)
        proc.terminate()
        proc.wait(timeout=10)
