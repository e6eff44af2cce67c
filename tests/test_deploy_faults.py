"""Replica faults (RELIABILITY.md lines 16, 19, 20): SIGKILL mid-request, SIGTERM draining, a
stalled Redis. Real `cryptorec serve` processes, real signals."""

from __future__ import annotations

import re
import shutil
import signal
import threading
import time
import uuid
from pathlib import Path

import grpc
import numpy as np
import pytest

from cryptorec.services import versions
from cryptorec.services.client.library import CryptoRecClient
from cryptorec.services.rpc.health import NOT_SERVING, SERVING, status
from cryptorec.services.store.redis_store import RedisStore
from tests.redis_server import start_redis
from tests.test_service_e2e import ITEMS, RATINGS, _library_prediction, _packed
from tests.test_service_faults import free_port, serve, stop, wait_serving

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.he]


@pytest.fixture
def store_url(redis_url: str):  # type: ignore[no-untyped-def]
    prefix = f"deploy-{uuid.uuid4().hex[:8]}:"
    store = RedisStore(redis_url, prefix=prefix)
    versions.publish(store, "v1", _packed(), [(i + 1, f"Item {i + 1}") for i in range(ITEMS)])
    yield redis_url, prefix
    for key in store._r.scan_iter(match=prefix + "*"):
        store._r.delete(key)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, clock ticks


def test_evaluator_killed_mid_request_the_client_retries_on_the_other_replica(store_url) -> None:  # type: ignore[no-untyped-def]
    url, prefix = store_url
    front, front_port = serve("all", url, prefix)
    evaluators = [serve("evaluator", url, prefix) for _ in range(2)]
    target = "ipv4:" + ",".join(f"127.0.0.1:{port}" for _, port in evaluators)
    client = CryptoRecClient(f"127.0.0.1:{front_port}", evaluator_target=target, timeout=60)
    try:
        client.predict(RATINGS, mode="accurate")  # warm both paths: keys registered
        expected = _library_prediction("accurate")
        before = {p.pid: _cpu_seconds(p.pid) for p, _ in evaluators}
        result: dict[str, object] = {}

        def run() -> None:
            result["predictions"] = client.predict(RATINGS, mode="accurate")[0]

        worker = threading.Thread(target=run)
        worker.start()
        time.sleep(0.4)
        busy = max(evaluators, key=lambda e: _cpu_seconds(e[0].pid) - before[e[0].pid])
        busy[0].send_signal(signal.SIGKILL)  # the replica computing this request
        worker.join(timeout=60)
        np.testing.assert_allclose(result["predictions"], expected, atol=1e-3)  # type: ignore[arg-type]
        assert client.retries >= 1
    finally:
        client.close()
        for proc, _ in [*evaluators, (front, front_port)]:
            stop(proc)


def _wait_in_flight(metrics_port: int, method: str, timeout: float = 60.0) -> None:
    """Until the server's in-flight gauge shows a `method` call (its /metrics)."""
    import urllib.request

    pattern = re.compile(
        rf'^cryptorec_rpc_in_flight{{[^}}]*grpc_method="{method}"[^}}]*}} 1\.0$', re.M
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            if pattern.search(reply.read().decode()):
                return
        time.sleep(0.01)
    raise AssertionError(f"no {method} call in flight after {timeout} s")


def test_sigterm_drains_in_flight_work_while_health_reports_not_serving(store_url) -> None:  # type: ignore[no-untyped-def]
    url, prefix = store_url
    metrics_port = free_port()
    proc, port = serve("all", url, prefix, "--metrics-port", str(metrics_port))
    client = CryptoRecClient(f"127.0.0.1:{port}", timeout=60)
    client.predict(RATINGS, mode="accurate")  # keys registered, model encoded
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["predictions"] = client.predict(RATINGS, mode="accurate")[0]
        except grpc.RpcError as exc:
            result["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    _wait_in_flight(metrics_port, "Predict")  # the server has the call: SIGTERM now
    proc.send_signal(signal.SIGTERM)
    # Readiness flips as the drain begins. How soon the signal handler runs depends on how busy
    # the machine is, so wait for it (generously) rather than for a fixed time.
    deadline = time.monotonic() + 30
    while status(f"127.0.0.1:{port}") not in (NOT_SERVING, None):
        assert time.monotonic() < deadline, "still SERVING 30 s after SIGTERM"
        time.sleep(0.02)
    worker.join(timeout=60)
    assert "error" not in result, result.get("error")
    np.testing.assert_allclose(result["predictions"], _library_prediction("accurate"), atol=1e-3)  # type: ignore[arg-type]
    assert proc.wait(timeout=30) == 0  # drained and exited cleanly within the grace period
    client.close()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_stalled_redis_fails_readiness_and_recovery_restores_it(tmp_path: Path) -> None:
    redis_proc, url = start_redis(tmp_path)
    server = None
    try:
        versions.publish(RedisStore(url), "v1", _packed(), [(i + 1, "x") for i in range(ITEMS)])
        server, sport = serve("evaluator", url, "cryptorec:")
        redis_proc.send_signal(signal.SIGSTOP)  # alive but answering nothing
        wait_serving(sport, timeout=30, want=NOT_SERVING)
        redis_proc.send_signal(signal.SIGCONT)
        wait_serving(sport, timeout=30, want=SERVING)
    finally:
        redis_proc.send_signal(signal.SIGCONT)
        if server is not None:
            stop(server)
        redis_proc.terminate()
        redis_proc.wait(timeout=10)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_store_outage_fails_readiness_but_never_liveness(tmp_path: Path) -> None:
    """RELIABILITY.md line 27: with the probe names the manifests use, a killed Redis takes
    the pod out of rotation (readiness NOT_SERVING) and never gets it restarted (liveness
    stays SERVING); readiness returns with Redis."""
    from tests.test_k8s import by_kind, render

    container = by_kind(render("base"), "Deployment")["evaluator"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    liveness = container["livenessProbe"]["grpc"]["service"]
    readiness = container["readinessProbe"]["grpc"]["service"]
    redis_proc, url = start_redis(tmp_path, persist=True)
    port_url = url
    server = None
    try:
        versions.publish(RedisStore(url), "v1", _packed(), [(i + 1, "x") for i in range(ITEMS)])
        server, sport = serve("evaluator", url, "cryptorec:")
        target = f"127.0.0.1:{sport}"
        assert status(target, liveness) == SERVING
        assert status(target, readiness) == SERVING
        redis_proc.kill()
        redis_proc.wait(timeout=10)
        deadline = time.time() + 30
        while status(target, readiness) != NOT_SERVING:
            assert status(target, liveness) == SERVING
            assert time.time() < deadline, "readiness never noticed the outage"
            time.sleep(0.2)
        for _ in range(10):  # for several watcher rounds, the process stays alive to kubelet
            assert status(target, liveness) == SERVING
            time.sleep(0.3)
        port = int(port_url.rsplit(":", 1)[1].split("/")[0])
        redis_proc, _ = start_redis(tmp_path, port=port, persist=True)
        wait_serving(sport, timeout=30, want=SERVING)
        assert status(target, readiness) == SERVING
    finally:
        if server is not None:
            stop(server)
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
