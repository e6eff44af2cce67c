"""Real processes, real Redis, real signals (RELIABILITY.md lines 16, 17, 18, 24)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from cryptorec.services import versions
from cryptorec.services.client.library import CryptoRecClient, ratings_row, receive_replies
from cryptorec.services.rpc.health import NOT_SERVING, SERVING, wait_for
from cryptorec.services.store.redis_store import RedisStore
from cryptorec.v1 import evaluator_service_pb2 as ev_pb
from cryptorec.v1 import types_pb2
from tests.redis_server import free_port, start_redis
from tests.test_service_e2e import ITEMS, RATINGS, _library_prediction, _packed

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.he]
ROOT = Path(__file__).resolve().parents[1]


def wait_serving(port: int, timeout: float = 30.0, want: int = SERVING) -> None:
    wait_for(f"127.0.0.1:{port}", want, timeout)


def serve(
    role: str, store_url: str, prefix: str, *extra: str
) -> tuple[subprocess.Popen[bytes], int]:
    """A real `cryptorec serve --role ROLE` process (with `extra` flags), once it serves."""
    port = free_port()
    env = {**os.environ, "CRYPTOREC_STORE_PREFIX": prefix}
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "cryptorec.services.cli", "serve", "--role", role),
            *("--port", str(port), "--host", "127.0.0.1", "--store", store_url, *extra),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_serving(port)
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def published(redis_url: str) -> Iterator[tuple[str, str]]:
    prefix = f"faults-{uuid.uuid4().hex[:8]}:"
    store = RedisStore(redis_url, prefix=prefix)
    versions.publish(store, "v1", _packed(), [(i + 1, f"Item {i + 1}") for i in range(ITEMS)])
    yield redis_url, prefix
    for key in store._r.scan_iter(match=prefix + "*"):
        store._r.delete(key)


def test_two_evaluator_processes_serve_interleaved_requests(published: tuple[str, str]) -> None:
    url, prefix = published
    procs = [serve(role, url, prefix) for role in ("model", "key", "evaluator", "evaluator")]
    try:
        model_port, key_port = procs[0][1], procs[1][1]
        clients = [
            CryptoRecClient(
                f"127.0.0.1:{model_port}",
                key_target=f"127.0.0.1:{key_port}",
                evaluator_target=f"127.0.0.1:{port}",
            )
            for _, port in procs[2:]
        ]
        clients[1].share_keys(clients[0])  # one client's keys, used on both replicas
        expected = _library_prediction("fast")
        for i in range(6):
            predictions, _ = clients[i % 2].predict(RATINGS)
            np.testing.assert_allclose(predictions, expected, atol=1e-3)
        for c in clients:
            c.close()
    finally:
        for proc, _ in procs:
            stop(proc)


def test_publishing_during_a_stream_leaves_it_wholly_on_one_version(
    published: tuple[str, str],
) -> None:
    url, prefix = published
    procs = [serve("all", url, prefix)]
    port = procs[0][1]
    try:
        client = CryptoRecClient(f"127.0.0.1:{port}")
        info = client.model_info()
        keys = client.ensure_keys(info, "ckks", "fast", {}, {})
        query, _ = keys.client.encrypt(ratings_row(info, RATINGS))
        store = RedisStore(url, prefix=prefix)

        def stream() -> Iterator[ev_pb.PredictRequest]:
            yield ev_pb.PredictRequest(
                header=ev_pb.PredictHeader(
                    model_version="",
                    key_id=keys.key_id,
                    scheme=types_pb2.SCHEME_CKKS,
                    mode=types_pb2.MODE_FAST,
                    ciphertext_count=len(query),
                    input_offset=info.inputs.input_offset,
                )
            )
            time.sleep(0.5)  # the server has resolved "current" by now
            model = _packed()
            model.model.A[:] = 0.0  # a visibly different v2
            versions.publish(store, "v2", model, [(i + 1, f"Item {i + 1}") for i in range(ITEMS)])
            yield ev_pb.PredictRequest(
                chunk=ev_pb.CiphertextChunk(chunk_index=0, ciphertexts=query)
            )

        calls = client.evaluator.Predict(stream(), timeout=60)
        received = receive_replies(calls, "v1", ITEMS, keys.client.decrypt_part)
        np.testing.assert_allclose(
            received.values + np.mean(list(RATINGS.values())),
            _library_prediction("fast"),
            atol=1e-3,
        )
        assert store.current() == "v2"
        client.close()
    finally:
        for proc, _ in procs:
            stop(proc)


def test_trainer_killed_before_the_pointer_moves_leaves_the_old_version_serving(
    published: tuple[str, str],
) -> None:
    url, prefix = published
    script = textwrap.dedent(f"""
        import os, signal
        from cryptorec.services import versions
        from cryptorec.services.store import base
        from cryptorec.services.store.redis_store import RedisStore
        from tests.test_service_e2e import _packed, ITEMS
        def die(*_):
            os.kill(os.getpid(), signal.SIGKILL)  # after every part is written
        base.verify_parts = die
        store = RedisStore({url!r}, prefix={prefix!r})
        versions.publish(store, "v2", _packed(), [(i + 1, "x") for i in range(ITEMS)])
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, timeout=60)
    assert done.returncode == -signal.SIGKILL
    store = RedisStore(url, prefix=prefix)
    assert store.current() == "v1"
    assert [v.version for v in store.versions()] == ["v1"]
    assert store._r.exists(prefix + "{model:v2}:manifest")  # the orphan exists, invisible
    proc, port = serve("all", url, prefix)
    try:
        client = CryptoRecClient(f"127.0.0.1:{port}")
        predictions, result = client.predict(RATINGS)
        assert result.model_version == "v1"
        np.testing.assert_allclose(predictions, _library_prediction("fast"), atol=1e-3)
        client.close()
    finally:
        stop(proc)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_redis_restarted_mid_run_is_survived(tmp_path: Path) -> None:
    port = free_port()
    redis_proc, url = start_redis(tmp_path, port=port, persist=True)
    server = None
    try:
        store = RedisStore(url)
        versions.publish(store, "v1", _packed(), [(i + 1, f"Item {i + 1}") for i in range(ITEMS)])
        server, sport = serve("all", url, "cryptorec:")
        client = CryptoRecClient(f"127.0.0.1:{sport}", timeout=20)
        client.predict(RATINGS)  # keys registered, model cached
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
        with pytest.raises(grpc.RpcError) as info:
            client.model_info("")  # the current pointer lives in Redis
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        wait_serving(sport, want=NOT_SERVING)  # health reports NOT_SERVING while Redis is gone
        redis_proc, _ = start_redis(tmp_path, port=port, persist=True)  # same data, same port
        wait_serving(sport)  # and SERVING again once it is back
        predictions, result = client.predict(RATINGS)  # nothing lost: model and keys are there
        assert result.model_version == "v1"
        np.testing.assert_allclose(predictions, _library_prediction("fast"), atol=1e-3)
        client.close()
    finally:
        if server is not None:
            stop(server)
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
