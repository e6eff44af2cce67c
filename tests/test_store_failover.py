"""The store's primary dies mid-run (RELIABILITY.md line 33): a Sentinel group (primary,
replica, Sentinel) and a Redis Cluster (three primaries, one replica each), as real local
processes, with a service answering encrypted queries on top. SIGKILL the primary that holds
the client's budget while queries run: queries resume on the promoted replica, and every
acknowledged model version, key set and spent query is still there, none counted twice."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest

from cryptorec.services import versions
from cryptorec.services.app.server import ServerConfig, start
from cryptorec.services.client.library import CryptoRecClient
from cryptorec.services.credentials import add_client
from cryptorec.services.store.base import Quotas
from cryptorec.services.store.redis_store import RedisStore
from tests.redis_server import Topology, current_primary, start_cluster, start_sentinel_group
from tests.test_service_e2e import ITEMS, RATINGS, _packed

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.he]


def _topology(kind: str, directory: Path) -> tuple[Topology, str]:
    if kind == "sentinel":
        group = start_sentinel_group(directory, replicas=1)
        return group, group.url  # Sentinel: every write waits for one replica by default
    cluster = start_cluster(directory, masters=3, replicas=1)
    return cluster, cluster.url + "?wait_replicas=1"


def _victim(kind: str, topology: Topology, store: RedisStore, client: str) -> int:
    """The port of the primary that holds `client`'s budget."""
    if kind == "sentinel":
        return current_primary(topology)
    return int(
        store._slot_owner(
            store._k(f"client:{client}", "queries")
        ).connection_pool.connection_kwargs["port"]
    )


@pytest.mark.parametrize("kind", ["sentinel", "cluster"])
def test_queries_resume_after_the_primary_dies_and_nothing_acknowledged_is_lost(
    kind: str, tmp_path: Path
) -> None:
    topology, url = _topology(kind, tmp_path)
    store = RedisStore(url, prefix="failover:")
    running = None
    client = None
    try:
        versions.publish(store, "v1", _packed(), [(i + 1, f"Item {i + 1}") for i in range(ITEMS)])
        running = start(("key", "model", "evaluator"), store, config=ServerConfig(auth=True))
        token = add_client(store, "ivan", Quotas(queries_per_day=10_000))
        client = CryptoRecClient(f"127.0.0.1:{running.port}", token=token, timeout=60)
        client.predict(RATINGS)
        client.predict(RATINGS, scheme="bfv")  # a second key set, acknowledged just now
        answered, failed = 2, 0
        key_ids = sorted(k.key_id for k in client.key_sets())
        victim = _victim(kind, topology, store, "ivan")

        outcomes: list[grpc.StatusCode] = []
        stop = threading.Event()

        def load() -> None:
            assert client is not None
            while not stop.is_set():
                try:
                    client.predict(RATINGS)
                    outcomes.append(grpc.StatusCode.OK)
                except grpc.RpcError as exc:
                    outcomes.append(exc.code())  # type: ignore[attr-defined]

        worker = threading.Thread(target=load)
        worker.start()
        while len(outcomes) < 3:
            time.sleep(0.05)
        topology.kill(victim)  # mid-run: a query is in flight
        before = len(outcomes)
        deadline = time.time() + 90
        while outcomes[before:].count(grpc.StatusCode.OK) < 5 and time.time() < deadline:
            time.sleep(0.1)
        stop.set()
        worker.join(timeout=120)
        assert outcomes[before:].count(grpc.StatusCode.OK) >= 5, outcomes[before:]
        answered += outcomes.count(grpc.StatusCode.OK)
        failed = len(outcomes) - outcomes.count(grpc.StatusCode.OK)

        if kind == "sentinel":
            assert current_primary(topology) != victim  # a replica took over
        assert store.current() == "v1"
        assert store.read("v1")[0].version == "v1"
        assert sorted(store.client_keys("ivan")) == key_ids
        for key_id in key_ids:
            assert store.get_key(key_id).key_id == key_id
        spent = store.usage("ivan").queries_today
        assert answered <= spent <= answered + failed, (answered, spent, failed)
    finally:
        if client is not None:
            client.close()
        if running is not None:
            running.stop(grace=1.0)
        topology.stop()
