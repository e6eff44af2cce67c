"""Item shards through the real service (RELIABILITY.md line 30): evaluator processes that
compute shards for each other, the client unchanged; each process encodes only the shards it
serves; a shard replica killed mid-request is replaced by the next one ranked for the shard;
peers without the secret are refused."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import scipy.sparse as sp

from cryptorec.services import versions
from cryptorec.services.client.library import CryptoRecClient
from cryptorec.services.evaluator.shards.peers import assign
from cryptorec.services.rpc.health import wait_for
from cryptorec.services.store.redis_store import RedisStore
from cryptorec.v1 import shard_service_pb2 as shard_pb
from cryptorec.v1 import shard_service_pb2_grpc as shard_grpc
from cryptorec.v1 import types_pb2
from libcryptorec.compression import compress
from libcryptorec.he import registry
from tests.redis_server import free_port
from tests.test_model import make_model

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.he]
ROOT = Path(__file__).resolve().parents[1]
ITEMS, DIM, SHARDS = 4 * 4096 - 700, 128, 3  # four CKKS/BFV blocks in three shards
SECRET = "peer-secret-for-tests"
RATINGS = {i: float(1 + i % 5) for i in range(1, ITEMS, 97)}


def _packed():  # type: ignore[no-untyped-def]
    model = make_model(m=ITEMS, d=DIM, seed=11)
    model.A *= 0.2
    model.Q *= 0.2
    return compress(model, 0.0005, 256)


@pytest.fixture(scope="module")
def published(redis_url: str) -> Iterator[tuple[str, str, Any]]:
    prefix = f"shards-{uuid.uuid4().hex[:8]}:"
    store = RedisStore(redis_url, prefix=prefix)
    packed = _packed()
    catalogue = [(i + 1, f"Item {i + 1}") for i in range(ITEMS)]
    versions.publish(store, "v1", packed, catalogue, shards=SHARDS)
    yield redis_url, prefix, packed
    for key in store._r.scan_iter(match=prefix + "*"):
        store._r.delete(key)


class Evaluators:
    """`count` evaluator processes that are each other's shard peers, and a front (model and
    key services) process."""

    def __init__(self, url: str, prefix: str, count: int, *extra: str) -> None:
        self.logs = Path(tempfile.mkdtemp(prefix="shard-logs-"))
        self.ports = [free_port() for _ in range(count)]
        self.metrics = [free_port() for _ in range(count)]
        self.peers = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        self.procs = [
            self._serve(url, prefix, "evaluator", port, metrics, *extra)
            for port, metrics in zip(self.ports, self.metrics, strict=True)
        ]
        self.front_port = free_port()
        self.procs.append(self._serve(url, prefix, "all", self.front_port, 0))
        for port in [*self.ports, self.front_port]:
            wait_for(f"127.0.0.1:{port}", timeout=60)

    def _serve(
        self, url: str, prefix: str, role: str, port: int, metrics: int, *extra: str
    ) -> subprocess.Popen[bytes]:
        with (self.logs / f"{port}.log").open("wb") as log:
            return subprocess.Popen(
                [
                    *(sys.executable, "-m", "cryptorec.services.cli", "serve", "--role", role),
                    *("--host", "127.0.0.1", "--port", str(port), "--store", url),
                    *("--store-prefix", prefix, "--metrics-port", str(metrics)),
                    *("--shard-peers", self.peers, "--peer-secret", SECRET, *extra),
                ],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    def log(self, index: int) -> str:
        return (self.logs / f"{self.ports[index]}.log").read_text()

    def client(self, router: int) -> CryptoRecClient:
        return CryptoRecClient(
            f"127.0.0.1:{self.front_port}",
            evaluator_target=f"127.0.0.1:{self.ports[router]}",
            timeout=120,
        )

    def scrape(self, index: int) -> str:
        url = f"http://127.0.0.1:{self.metrics[index]}/metrics"
        with urllib.request.urlopen(url, timeout=10) as reply:
            return str(reply.read().decode())

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _expected(packed: Any) -> np.ndarray:
    row = np.zeros((1, ITEMS), dtype=np.float32)
    for item, r in RATINGS.items():
        row[0, item - 1] = r
    return np.asarray(packed.model.predict(sp.csr_matrix(row))[0])


def _value(metrics: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize("scheme", ["ckks", "bfv"])
def test_shards_across_processes_equal_the_library(published, scheme: str) -> None:  # type: ignore[no-untyped-def]
    url, prefix, packed = published
    group = Evaluators(url, prefix, 2)
    try:
        for router in (0, 1):  # any replica routes
            client = group.client(router)
            try:
                predictions, result = client.predict(RATINGS, scheme=scheme)
            finally:
                client.close()
            tolerance = registry.get(scheme, "fast").tolerance
            np.testing.assert_allclose(predictions, _expected(packed), atol=tolerance)
            assert result.timings["first_reply"] <= result.timings["evaluate"] + 1e-3
        # Each process encoded only the shards assigned to it, and together all of them.
        keys = [f"v1|{scheme}|fast|{s}|{SHARDS}" for s in range(SHARDS)]
        owners = [candidates[0] for candidates in assign(keys, group.peers.split(","))]
        assert len(set(owners)) == 2  # three shards over two peers: both take some
        for index, port in enumerate(group.ports):
            served = owners.count(f"127.0.0.1:{port}")
            misses = _value(group.scrape(index), "cryptorec_cache_misses_total", kind="encoding")
            assert misses == served, (index, owners)
    finally:
        group.stop()


def test_a_shard_replica_killed_mid_request_is_replaced(published) -> None:  # type: ignore[no-untyped-def]
    """RELIABILITY.md line 30: the shard is retried on the next replica ranked for it, and
    the query completes correctly."""
    url, prefix, packed = published
    group = Evaluators(url, prefix, 3)
    try:
        peers = group.peers.split(",")
        keys = [f"v1|ckks|fast|{s}|{SHARDS}" for s in range(SHARDS)]
        owners = [candidates[0] for candidates in assign(keys, peers)]
        victim = next(i for i, p in enumerate(peers) if p in owners)
        router = next(i for i in range(3) if i != victim)
        client = group.client(router)
        client.predict(RATINGS)  # keys registered, shards encoded where they are served
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                result["predictions"] = client.predict(RATINGS)[0]
            except grpc.RpcError as exc:
                result["error"] = exc

        worker = threading.Thread(target=run)
        worker.start()
        pattern = re.compile(r"^cryptorec_rpc_in_flight\{[^}]*ShardService[^}]*\} 1\.0$", re.M)
        deadline = time.monotonic() + 60
        while not pattern.search(group.scrape(victim)):
            assert time.monotonic() < deadline, "the victim never computed a shard"
            time.sleep(0.005)
        group.procs[victim].send_signal(signal.SIGKILL)
        worker.join(timeout=120)
        assert "error" not in result, result.get("error")
        np.testing.assert_allclose(result["predictions"], _expected(packed), atol=1e-3)
        assert group.procs[victim].wait(timeout=10) == -signal.SIGKILL
        assert "trying the next peer" in group.log(router)
        client.close()
    finally:
        group.stop()


def test_shard_calls_without_the_peer_secret_are_refused(published) -> None:  # type: ignore[no-untyped-def]
    """A partial product decrypts to rows of the model: only peers may ask for one."""
    url, prefix, _ = published
    group = Evaluators(url, prefix, 1, "--auth")
    try:
        ref = shard_pb.ShardRef(
            model_version="v1",
            key_id="0" * 32,
            scheme=types_pb2.SCHEME_CKKS,
            mode=types_pb2.MODE_FAST,
            shard=0,
            shard_count=SHARDS,
        )
        with grpc.insecure_channel(f"127.0.0.1:{group.ports[0]}") as channel:
            stub = shard_grpc.ShardServiceStub(channel)
            for token in (None, "crt_a-client-token", SECRET + "x"):
                metadata = (("authorization", f"Bearer {token}"),) if token else ()
                with pytest.raises(grpc.RpcError) as refused:
                    stub.FirstProduct(
                        shard_pb.FirstProductRequest(shard=ref), metadata=metadata, timeout=10
                    )
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            # With the secret, the call gets as far as the (unknown) key set.
            with pytest.raises(grpc.RpcError) as found:
                stub.FirstProduct(
                    shard_pb.FirstProductRequest(shard=ref),
                    metadata=(("authorization", f"Bearer {SECRET}"),),
                    timeout=10,
                )
            assert found.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        group.stop()


def test_ml_latest_small_sharded_in_two_matches_the_library(
    movielens_dir: Path, redis_url: str
) -> None:
    """The real multi-block catalogue we have (about 9,700 movies, three CKKS blocks), in two
    shards on two evaluator processes, through real gRPC: within 1e-3 of the library."""
    from cryptorec.services.trainer.publish import small_config
    from libcryptorec.data import load_movielens
    from libcryptorec.training import train

    ratings = load_movielens("ml-latest-small", movielens_dir)
    R = ratings.to_csr()
    user = int(np.argmax(np.diff(R.indptr)[:50]))  # a user with many ratings, held out
    rows = np.setdiff1d(np.arange(R.shape[0]), [user])
    model = train(R[rows], small_config(), scale=ratings.scale).model
    packed = compress(model, 0.0005, 512)
    prefix = f"mls-{uuid.uuid4().hex[:8]}:"
    store = RedisStore(redis_url, prefix=prefix)
    catalogue = [(int(i), ratings.titles.get(int(i), "")) for i in ratings.item_ids]
    versions.publish(store, "v1", packed, catalogue, shards=2)
    known = {
        int(ratings.item_ids[j]): float(v)
        for j, v in zip(R[user].indices, R[user].data, strict=True)
    }
    group = Evaluators(redis_url, prefix, 2)
    try:
        client = group.client(0)
        try:
            predictions, _ = client.predict(known)
        finally:
            client.close()
        expected = packed.model.predict(R[user])[0]
        np.testing.assert_allclose(predictions, expected, atol=1e-3)
        assert len(predictions) == len(catalogue) > 2 * 4096
    finally:
        group.stop()
        for key in store._r.scan_iter(match=prefix + "*"):
            store._r.delete(key)
