"""What an operator sees: Prometheus metrics after real Predict calls, one JSON log line per
call carrying the request id the client saw (and nothing secret), the refusal counter, and
the dashboard and alert rules using only metrics the servers export."""

from __future__ import annotations

import io
import json
import logging
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cryptorec.services import versions
from cryptorec.services.app.server import Running, ServerConfig, start
from cryptorec.services.client.library import CryptoRecClient
from cryptorec.services.credentials import add_client
from cryptorec.services.observability import logs
from cryptorec.services.observability.metrics import Metrics
from cryptorec.services.store.base import Quotas
from cryptorec.services.store.file_store import FileStore
from cryptorec.v1 import model_service_pb2 as model_pb
from cryptorec.v1 import model_service_pb2_grpc as model_grpc
from tests.test_service_e2e import ITEMS, RATINGS, _packed

pytestmark = [pytest.mark.integration, pytest.mark.he]
ROOT = Path(__file__).resolve().parents[1]
QUERIES = 2  # the client's budget: two answered, the third refused


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A server with /metrics on a free port and JSON logs captured, after a client spent
    its budget of QUERIES fast-mode queries and was refused one more."""
    store = FileStore(tmp_path_factory.mktemp("store"))
    versions.publish(store, "v1", _packed(), [(i + 1, f"Item {i + 1}") for i in range(ITEMS)])
    token = add_client(store, "alice", Quotas(queries_per_day=QUERIES))
    captured = io.StringIO()
    logs.configure("json", "INFO", stream=captured)
    running = start(
        ("key", "model", "evaluator"),
        store,
        config=ServerConfig(auth=True, metrics_port=_free_port(), metrics_host="127.0.0.1"),
    )
    client = CryptoRecClient(f"127.0.0.1:{running.port}", token=token, timeout=60)
    try:
        results = [client.recommend(RATINGS, "ckks", "fast") for _ in range(QUERIES)]
        with pytest.raises(grpc.RpcError) as refused:
            client.recommend(RATINGS, "ckks", "fast")
        yield {
            "running": running,
            "results": results,
            "refused": refused.value,
            "token": token,
            "metrics": _scrape(running),
            "log": captured.getvalue(),
        }
    finally:
        client.close()
        running.stop(grace=1.0)
        logging.getLogger().handlers.clear()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(running: Running) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample on /metrics, by (name, labels)."""
    url = f"http://127.0.0.1:{running.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(metrics: dict[Any, float], name: str, **labels: str) -> float:
    """The sum of `name` over samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in metrics.items() if n == name and wanted <= ls)


PREDICT = {"grpc_service": "cryptorec.v1.EvaluatorService", "grpc_method": "Predict"}


def test_metrics_count_predicts_their_latency_and_refusals(observed: dict[str, Any]) -> None:
    m = observed["metrics"]
    # The standard gRPC server metrics (go-grpc-prometheus' names and labels).
    streaming = {**PREDICT, "grpc_type": "bidi_stream"}
    assert _value(m, "grpc_server_started_total", **streaming) == QUERIES + 1
    assert _value(m, "grpc_server_handled_total", **streaming, grpc_code="OK") == QUERIES
    assert _value(m, "grpc_server_handled_total", **PREDICT, grpc_code="RESOURCE_EXHAUSTED") == 1
    assert _value(m, "cryptorec_rpc_refused_total", **PREDICT, reason="quota") == 1
    # Every Predict (answered and refused) is in the latency histogram, in its +Inf bucket.
    assert _value(m, "grpc_server_handling_seconds_count", **PREDICT) == QUERIES + 1
    assert _value(m, "grpc_server_handling_seconds_bucket", **PREDICT, le="+Inf") == QUERIES + 1
    assert _value(m, "grpc_server_msg_sent_total", **PREDICT) >= QUERIES
    # Phases of answered queries, per scheme and mode; the refused one never reached them.
    for phase in ("receive", "evaluate", "send"):
        count = _value(
            m, "cryptorec_predict_phase_seconds_count", scheme="ckks", mode="fast", phase=phase
        )
        assert count == QUERIES, phase
    assert _value(m, "cryptorec_rpc_received_bytes_total", **PREDICT) > QUERIES * 100_000
    assert _value(m, "cryptorec_rpc_in_flight", **PREDICT) == 0
    assert _value(m, "cryptorec_model_info", version="v1") == 1
    assert _value(m, "cryptorec_key_registrations_total", outcome="registered") == 1
    # The encoding is built once, as the model is loaded (before the first query: RELIABILITY
    # line 44), and then found by every query; the client's loaded keys are built by the first.
    assert _value(m, "cryptorec_cache_misses_total", kind="encoding") == 1
    assert _value(m, "cryptorec_cache_hits_total", kind="encoding") == QUERIES
    assert _value(m, "cryptorec_cache_hits_total", kind="keys") == QUERIES - 1
    assert _value(m, "cryptorec_cache_bytes") > 0
    assert _value(m, "cryptorec_ready", role="evaluator") == 1
    assert _value(m, "cryptorec_store_up") == 1
    assert _value(m, "process_resident_memory_bytes") > 0


def test_no_label_holds_an_id_a_token_or_a_client_name(observed: dict[str, Any]) -> None:
    allowed = {
        "grpc_service",
        "grpc_method",
        "grpc_code",
        "role",
        "reason",
        "scheme",
        "mode",
        "phase",
        "kind",
        "outcome",
        "le",
    }
    for name, labels in observed["metrics"]:
        if name.startswith("cryptorec_") and name != "cryptorec_model_info":
            assert {k for k, _ in labels} <= allowed, (name, labels)
            assert not any("alice" in v or "crt_" in v for _, v in labels)


def _lines(observed: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in observed["log"].splitlines()]


def test_log_lines_are_json_with_the_request_id_the_client_saw(observed: dict[str, Any]) -> None:
    lines = _lines(observed)
    assert lines, "nothing was logged"
    predicts = [x for x in lines if x.get("method") == "Predict"]
    by_id = {x["request_id"]: x for x in predicts}
    for result in observed["results"]:
        line = by_id[result.request_id]
        assert line["code"] == "OK"
        assert (line["scheme"], line["mode"], line["model_version"]) == ("ckks", "fast", "v1")
        assert line["client"] == "alice"
        assert line["level"] == "INFO"
        assert line["duration_ms"] > 0
        assert line["peer"]
    refused = observed["refused"]
    assert refused.request_id, "the error carries no request id"
    assert str(refused).endswith(f"(request id {refused.request_id})")
    assert by_id[refused.request_id]["code"] == "RESOURCE_EXHAUSTED"
    from cryptorec.services.rpc.details import retry_after

    assert retry_after(refused) is not None  # RetryInfo survives beside the request id


def test_log_lines_hold_no_ciphertext_key_or_token_bytes(observed: dict[str, Any]) -> None:
    text = observed["log"]
    assert observed["token"] not in text
    assert "Bearer" not in text
    # Ciphertexts and keys are hundreds of kilobytes: any of their bytes, raw or as hex or
    # base64, would show as a long run; the longest legitimate run is a 32-digit request id.
    assert not re.search(r"[A-Za-z0-9+/=]{48,}", text)
    assert all(len(line) < 1000 for line in text.splitlines())
    assert all(ord(ch) < 128 for ch in text), "raw bytes in the log"


def test_a_request_id_sent_by_the_caller_is_kept(observed: dict[str, Any]) -> None:
    from cryptorec.v1 import model_service_pb2 as model_pb
    from cryptorec.v1 import model_service_pb2_grpc as model_grpc

    running: Running = observed["running"]
    token = observed["token"]
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = model_grpc.ModelServiceStub(channel)
        metadata = (("authorization", f"Bearer {token}"), ("x-request-id", "trace-me-42"))
        _, call = stub.ListModels.with_call(
            model_pb.ListModelsRequest(), metadata=metadata, timeout=10
        )
        assert ("x-request-id", "trace-me-42") in tuple(call.trailing_metadata())
        # Hostile ids (forged log fields, megabytes of log) are replaced by the server's own.
        for hostile in ('x code=OK client="bob"', "x" * 200):
            metadata = (("authorization", f"Bearer {token}"), ("x-request-id", hostile))
            _, call = stub.ListModels.with_call(
                model_pb.ListModelsRequest(), metadata=metadata, timeout=10
            )
            returned = dict(call.trailing_metadata())["x-request-id"]
            assert re.fullmatch(r"[0-9a-f]{32}", returned)


def _exported_names() -> set[str]:
    """Every sample name the servers can export (a fresh registry with one of each)."""
    metrics = Metrics()
    names = set()
    for family in metrics.registry.collect():
        names.add(family.name)
        kinds = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_count", "_sum", "_created"),
            "info": ("_info",),
        }
        for suffix in kinds.get(family.type, ()):
            names.add(family.name + suffix)
    return names


def _expressions() -> list[str]:
    dashboard = json.loads((ROOT / "k8s/monitoring/dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    import yaml

    rules = yaml.safe_load((ROOT / "k8s/monitoring/alerts.yaml").read_text())
    groups = rules["spec"]["groups"] if "spec" in rules else rules["groups"]
    exprs += [rule["expr"] for group in groups for rule in group["rules"]]
    return exprs


def test_dashboard_and_alerts_use_only_exported_metrics() -> None:
    exported = _exported_names()
    exprs = _expressions()
    assert len(exprs) >= 8
    used = {
        name
        for expr in exprs
        for name in re.findall(r"\b((?:cryptorec|grpc_server)_[a-z_]+)", expr)
    }
    assert used, "no metric of ours is used"
    assert used <= exported, used - exported
    # Beyond ours, the process metrics our servers export, redis_exporter's (its sidecar in
    # k8s/base/redis.yaml) and Prometheus' own scrape health.
    others = {
        name
        for expr in exprs
        for name in re.findall(r"\b([a-z_]+)(?:\{|\[)", expr)
        if not name.startswith(("cryptorec_", "grpc_server_"))
    }
    redis_exporter = {
        "redis_memory_used_bytes",
        "redis_memory_max_bytes",
        "redis_connected_slaves",
        "redis_up",
    }
    assert others <= exported | {"up"} | redis_exporter, others - exported


@pytest.mark.slow
def test_traces_are_off_by_default_and_follow_otel_variables(tmp_path: Path) -> None:
    """With OTEL_TRACES_EXPORTER=console a server prints a span per call and per Predict
    phase, children of the call's span; without it, nothing."""
    import os
    import subprocess
    import sys

    from cryptorec.services.rpc.health import wait_for

    store = FileStore(tmp_path / "store")
    versions.publish(store, "v1", _packed(), [(i + 1, f"Item {i + 1}") for i in range(ITEMS)])
    spans: dict[str, list[dict[str, Any]]] = {}
    for exporter in ("console", "none"):
        port = _free_port()
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "cryptorec.services.cli", "serve", "--role", "all"),
                *("--store", f"file://{tmp_path / 'store'}", "--host", "127.0.0.1"),
                *("--port", str(port)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "OTEL_TRACES_EXPORTER": exporter, "OTEL_SERVICE_NAME": "t"},
            text=True,
        )
        try:
            wait_for(f"127.0.0.1:{port}", timeout=60)
            client = CryptoRecClient(f"127.0.0.1:{port}", timeout=60)
            try:
                client.recommend(RATINGS, "ckks", "fast")
            finally:
                client.close()
        finally:
            server.terminate()
            out, _ = server.communicate(timeout=60)
        decoder, found, at = json.JSONDecoder(), [], 0
        while (start := out.find("{", at)) >= 0:
            span, at = decoder.raw_decode(out, start)
            found.append(span)
        spans[exporter] = found
    assert spans["none"] == []
    by_name = {s["name"]: s for s in spans["console"]}
    predict = by_name["cryptorec.v1.EvaluatorService/Predict"]
    assert predict["resource"]["attributes"]["service.name"] == "t"
    assert predict["attributes"]["cryptorec.scheme"] == "ckks"
    for phase in ("receive", "evaluate", "send"):
        assert by_name[phase]["parent_id"] == predict["context"]["span_id"], phase
        assert by_name[phase]["context"]["trace_id"] == predict["context"]["trace_id"]


def test_cut_off_uploads_are_counted_as_what_they_are(tmp_path: Path) -> None:
    """RELIABILITY.md line 21: an upload the client cancels is CANCELLED and one the server's
    watchdog cuts is DEADLINE_EXCEEDED, in the log line and the request counter: never an
    ERROR "internal error" an attacker could trip alerts with."""
    import threading
    import time

    from cryptorec.services.rpc.admission import Limits
    from cryptorec.v1 import key_service_pb2 as key_pb
    from cryptorec.v1 import key_service_pb2_grpc as key_grpc

    store = FileStore(tmp_path / "store")
    captured = io.StringIO()
    logs.configure("json", "INFO", stream=captured)
    config = ServerConfig(
        limits=Limits(transfer_grace_seconds=1.0),
        metrics_port=_free_port(),
        metrics_host="127.0.0.1",
    )
    running = start(("key",), store, config=config)
    header = key_pb.RegisterKeysRequest(
        header=key_pb.KeyHeader(
            scheme=1,
            mode=1,
            parameter_set="ckks-8192-fast",
            rotation_steps=[1],
            blobs=[
                key_pb.KeyBlob(name="public_key", size=100, sha256=b"\0" * 32),
                key_pb.KeyBlob(name="rotation_keys", size=100, sha256=b"\0" * 32),
            ],
        )
    )
    stop = threading.Event()

    def stalled() -> Iterator[key_pb.RegisterKeysRequest]:
        yield header
        stop.wait(30)  # the declared bytes never come

    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = key_grpc.KeyServiceStub(channel)
            cancelled = stub.RegisterKeys.future(stalled(), timeout=30)
            # Cancel once the server handles the call (on a busy machine a call cancelled
            # before its handler starts is never counted, which is not what is tested here).
            until = time.monotonic() + 30
            while (
                _value(_scrape(running), "grpc_server_started_total", grpc_method="RegisterKeys")
                < 1
            ):
                assert time.monotonic() < until, "the server never started the first call"
                time.sleep(0.1)
            cancelled.cancel()
        # The watchdog's cut on a connection of its own, so nothing of the cancelled call's
        # stream can stand in its way.
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = key_grpc.KeyServiceStub(channel)
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as cut:
                stub.RegisterKeys(stalled(), timeout=30)
            cut_after = time.monotonic() - started
            assert cut.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, cut_after
        register = {"grpc_method": "RegisterKeys"}

        def count(code: str) -> float:
            return _value(metrics, "grpc_server_handled_total", grpc_code=code, **register)

        # The server records a call once its handler has unwound: wait for both (bounded).
        until = time.monotonic() + 30
        metrics = _scrape(running)
        while (count("CANCELLED"), count("DEADLINE_EXCEEDED")) != (1, 1):
            assert time.monotonic() < until, (
                cut_after,
                {k: v for k, v in metrics.items() if k[0].startswith("grpc_server_")},
            )
            time.sleep(0.2)
            metrics = _scrape(running)
    finally:
        stop.set()
        running.stop(grace=1.0)
        logging.getLogger().handlers.clear()
    assert _value(metrics, "grpc_server_handled_total", grpc_code="INTERNAL") == 0
    lines = [json.loads(line) for line in captured.getvalue().splitlines() if line.strip()]
    assert not [line for line in lines if line.get("level") == "ERROR"], lines


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_every_call_has_a_trace_id_the_caller_may_give(tmp_path: Path) -> None:
    """A W3C traceparent sent by the caller is continued: the call's log lines carry its trace
    id; a call without one gets a trace id of its own, different each time."""
    store = FileStore(tmp_path / "store")
    versions.publish(store, "v1", _packed(), [(i + 1, f"Item {i + 1}") for i in range(ITEMS)])
    captured = io.StringIO()
    logs.configure("json", "INFO", stream=captured)
    running = start(("model",), store, config=ServerConfig())
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = model_grpc.ModelServiceStub(channel)
            stub.ListModels(model_pb.ListModelsRequest(), metadata=[("traceparent", TRACEPARENT)])
            for _ in range(2):
                stub.ListModels(model_pb.ListModelsRequest())
    finally:
        running.stop(grace=1.0)
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in captured.getvalue().splitlines() if line.strip()]
    calls = [line for line in lines if line.get("method") == "ListModels"]
    assert calls[0]["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    own = [line["trace_id"] for line in calls[1:]]
    assert all(re.fullmatch("[0-9a-f]{32}", t) for t in own)
    assert len(set(own)) == 2


def test_shard_calls_carry_the_query_s_trace_context() -> None:
    """An evaluator's calls to its shard peers send the query's traceparent (and request id),
    so the peers' log lines join the query's."""
    from cryptorec.services.evaluator.shards.peers import Peers
    from cryptorec.services.evaluator.shards.remote import RemoteShards
    from cryptorec.services.evaluator.shards.task import ShardTask
    from cryptorec.services.observability.tracing import incoming_context, tracer
    from libcryptorec.he import registry

    peers = Peers("127.0.0.1:1,127.0.0.1:2", secret="s")
    task = ShardTask("v1", "0" * 32, registry.get("ckks", "fast"), 0, 2)
    try:
        with tracer.start_as_current_span(
            "Predict", context=incoming_context({"traceparent": TRACEPARENT})
        ):
            metadata = dict(RemoteShards(peers, task, "req-1").metadata)
    finally:
        peers.close()
    assert metadata["x-request-id"] == "req-1"
    assert metadata["traceparent"].split("-")[1] == "4bf92f3577b34da6a3ce929d0e0e4736"
