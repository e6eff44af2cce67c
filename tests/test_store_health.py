"""What the logs, health and metrics say about the store (RELIABILITY.md lines 16, 34): a
store going down and coming back is logged (WARNING), a store that lost its data (flushed)
never looks ready to roles that serve a model and is logged as an ERROR, and a caller without
credentials learns nothing of the deployment's internal addresses. A real redis-server."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis

from cryptorec.services import versions
from cryptorec.services.app.server import ServerConfig, check_store, start
from cryptorec.services.observability import logs
from cryptorec.services.rpc.health import NOT_SERVING, SERVING, status
from cryptorec.services.store.redis_store import RedisStore
from cryptorec.v1 import model_service_pb2 as model_pb
from cryptorec.v1 import model_service_pb2_grpc as model_grpc
from tests.redis_server import start_redis
from tests.test_service_e2e import ITEMS, _packed

pytestmark = [pytest.mark.integration]
EVALUATOR, MODELS, KEYS = (
    "cryptorec.v1.EvaluatorService",
    "cryptorec.v1.ModelService",
    "cryptorec.v1.KeyService",
)


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.configure("json", "INFO", stream=stream)
    yield stream
    logging.getLogger().handlers.clear()


def _lines(stream: io.StringIO) -> list[dict[str, str]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def _ready(port: int) -> dict[str, int]:
    target = f"127.0.0.1:{port}"
    return {name: status(target, name) for name in ("", EVALUATOR, MODELS, KEYS)}


def test_a_store_that_lost_its_data_is_never_ready_and_says_so(
    tmp_path: Path, captured: io.StringIO
) -> None:
    """RELIABILITY.md line 34: no model yet, or none any more after a FLUSHALL: the model and
    evaluator roles are NOT_SERVING (the key role, which needs none, serves), the metric says
    so, and the loss is an ERROR in the log; a new publication makes them ready again."""
    proc, url = start_redis(tmp_path)
    store = RedisStore(url)
    running = start(("key", "model", "evaluator"), store, config=ServerConfig())
    try:
        assert _ready(running.port) == {
            "": NOT_SERVING,
            EVALUATOR: NOT_SERVING,
            MODELS: NOT_SERVING,
            KEYS: SERVING,
        }
        versions.publish(store, "v1", _packed(), [(i + 1, f"Item {i + 1}") for i in range(ITEMS)])
        check_store(running)
        assert set(_ready(running.port).values()) == {SERVING}
        redis.Redis.from_url(url).flushall()
        check_store(running)
        assert _ready(running.port)[EVALUATOR] == NOT_SERVING
        assert _ready(running.port)[MODELS] == NOT_SERVING
        assert _ready(running.port)[KEYS] == SERVING
        assert running.metrics.store_has_model._value.get() == 0
        assert running.metrics.store_up._value.get() == 1
        errors = [line for line in _lines(captured) if line["level"] == "ERROR"]
        assert len(errors) == 1
        assert "lost its data" in errors[0]["message"]
        check_store(running)  # said once, not every check
        assert len([line for line in _lines(captured) if line["level"] == "ERROR"]) == 1
        versions.publish(store, "v2", _packed(), [(i + 1, f"Item {i + 1}") for i in range(ITEMS)])
        check_store(running)
        assert set(_ready(running.port).values()) == {SERVING}
    finally:
        running.stop(grace=1.0)
        proc.terminate()
        proc.wait(timeout=10)


def test_the_store_going_and_coming_back_is_logged_once_each(
    tmp_path: Path, captured: io.StringIO
) -> None:
    """RELIABILITY.md line 16: WARNING when the store stops answering (with the cause) and
    when it answers again; nothing while nothing changes."""
    proc, url = start_redis(tmp_path, persist=True)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    store = RedisStore(url)
    versions.publish(store, "v1", _packed(), [(i + 1, f"Item {i + 1}") for i in range(ITEMS)])
    running = start(("model",), store, config=ServerConfig())
    try:
        proc.terminate()
        proc.wait(timeout=10)
        for _ in range(3):
            check_store(running)
        assert _ready(running.port)[MODELS] == NOT_SERVING
        proc, _ = start_redis(tmp_path, port=port, persist=True)
        for _ in range(3):
            check_store(running)
        assert _ready(running.port)[MODELS] == SERVING
        warnings = [
            line["message"]
            for line in _lines(captured)
            if line["level"] == "WARNING" and line["logger"] == "cryptorec.store"
        ]
        assert len(warnings) == 2, warnings
        assert "unreachable" in warnings[0]
        assert "Connection refused" in warnings[0] or "Error" in warnings[0]
        assert "reachable again" in warnings[1]
    finally:
        running.stop(grace=1.0)
        proc.terminate()
        proc.wait(timeout=10)


def test_callers_never_see_internal_addresses_in_errors(
    tmp_path: Path, captured: io.StringIO
) -> None:
    """With the store down, a caller (authenticated or not) is told UNAVAILABLE, why in words
    and when to retry, never the store's address; the log line has the cause, at WARNING."""
    proc, url = start_redis(tmp_path)
    port = url.rsplit(":", 1)[1].split("/")[0]
    store = RedisStore(url)
    versions.publish(store, "v1", _packed(), [(i + 1, f"Item {i + 1}") for i in range(ITEMS)])
    for auth in (False, True):
        running = start(("model",), store, config=ServerConfig(auth=auth))
        proc.terminate()
        proc.wait(timeout=10)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                stub = model_grpc.ModelServiceStub(channel)
                metadata = [("authorization", "Bearer crt_anything")] if auth else []
                with pytest.raises(grpc.RpcError) as refused:
                    stub.GetModel(model_pb.GetModelRequest(), metadata=metadata, timeout=30)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            details = refused.value.details()
            assert port not in details
            assert "127.0.0.1" not in details
            assert details == "the service's store is unavailable"
        finally:
            running.stop(grace=1.0)
            proc, url = start_redis(tmp_path, port=int(port))
            versions.publish(
                RedisStore(url),
                f"v{time.time_ns()}",
                _packed(),
                [(i + 1, f"Item {i + 1}") for i in range(ITEMS)],
            )
    proc.terminate()
    proc.wait(timeout=10)
    failed = [
        line
        for line in _lines(captured)
        if line["logger"] == "cryptorec.access" and line.get("code") == "UNAVAILABLE"
    ]
    assert failed
    assert all(line["level"] == "WARNING" for line in failed)
    assert all(port in line["message"] for line in failed)  # the operator's log has it
