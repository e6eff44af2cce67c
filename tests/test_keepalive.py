"""RELIABILITY.md line 22: an idle channel outlives the keepalive settings with no
`too_many_pings`, and a dead peer is detected within keepalive time plus timeout. With the
project's own channel and server options, against a real server process (frozen with
SIGSTOP to play a dead peer: its socket stays open, nothing answers)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from cryptorec.services import versions
from cryptorec.services.rpc.health import wait_for
from cryptorec.services.rpc.options import CHANNEL_OPTIONS
from cryptorec.services.store.file_store import FileStore
from cryptorec.v1 import model_service_pb2 as model_pb
from cryptorec.v1 import model_service_pb2_grpc as model_grpc
from tests.redis_server import free_port
from tests.test_service_e2e import ITEMS, _packed

pytestmark = [pytest.mark.integration, pytest.mark.slow]
OPTIONS = dict(CHANNEL_OPTIONS)
PING_S = int(OPTIONS["grpc.keepalive_time_ms"]) / 1000
TIMEOUT_S = int(OPTIONS["grpc.keepalive_timeout_ms"]) / 1000


def test_idle_channel_outlives_keepalive_and_a_dead_peer_is_detected(tmp_path: Path) -> None:
    port = free_port()
    # A model in the store, so the model role reports ready (readiness needs one).
    store = FileStore(tmp_path)
    versions.publish(store, "v1", _packed(), [(i + 1, f"Item {i + 1}") for i in range(ITEMS)])
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "cryptorec.services.cli", "serve", "--role", "model"),
            *("--host", "127.0.0.1", "--port", str(port), "--store", f"file://{tmp_path}"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    states: list[tuple[float, grpc.ChannelConnectivity]] = []
    lock = threading.Lock()

    def watch(state: grpc.ChannelConnectivity) -> None:
        with lock:
            states.append((time.monotonic(), state))

    try:
        wait_for(f"127.0.0.1:{port}", timeout=60)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS)
        stub = model_grpc.ModelServiceStub(channel)
        stub.ListModels(model_pb.ListModelsRequest(), timeout=10)
        channel.subscribe(watch, try_to_connect=False)
        # Idle for more than two keepalive pings (gRPC stops pinging after two pings without
        # data unless told otherwise, and a server that minds the pings would send GOAWAY).
        idle_since = time.monotonic()
        time.sleep(2 * PING_S + 5)
        with lock:
            dropped = [
                s for t, s in states if t > idle_since and s != grpc.ChannelConnectivity.READY
            ]
        assert dropped == [], "the idle connection was dropped"
        stub.ListModels(model_pb.ListModelsRequest(), timeout=10)  # same connection, still fine
        # A dead peer: frozen, its socket open. Detected within one ping period plus the timeout.
        frozen_at = time.monotonic()
        server.send_signal(signal.SIGSTOP)
        limit = PING_S + TIMEOUT_S + 10
        while time.monotonic() - frozen_at < limit:
            with lock:
                lost = [
                    t for t, s in states if t > frozen_at and s != grpc.ChannelConnectivity.READY
                ]
            if lost:
                break
            time.sleep(0.5)
        assert lost, f"a dead peer went unnoticed for {limit:.0f} s"
        assert lost[0] - frozen_at <= PING_S + TIMEOUT_S + 5
        channel.close()
    finally:
        server.send_signal(signal.SIGCONT)
        server.kill()
        server.wait(timeout=30)
