"""Fuzzing of every request parser and validator at the gRPC boundary (RELIABILITY.md line 10):
random and mutated headers, chunks, key blobs and tokens against a real server with
authentication on. Nothing escapes as UNKNOWN or INTERNAL, every refusal has a precise status,
and afterwards the server still answers a legitimate query correctly."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryptorec.services import versions
from cryptorec.services.app.server import Running, ServerConfig, start
from cryptorec.services.client.library import CryptoRecClient, ratings_row
from cryptorec.services.credentials import add_client
from cryptorec.services.store.base import Quotas
from cryptorec.services.store.file_store import FileStore
from cryptorec.v1 import evaluator_service_pb2 as ev_pb
from cryptorec.v1 import evaluator_service_pb2_grpc as ev_grpc
from cryptorec.v1 import key_service_pb2 as key_pb
from cryptorec.v1 import key_service_pb2_grpc as key_grpc
from cryptorec.v1 import model_service_pb2 as model_pb
from cryptorec.v1 import model_service_pb2_grpc as model_grpc
from tests.test_service_e2e import ITEMS, RATINGS, _library_prediction, _packed

pytestmark = [pytest.mark.integration, pytest.mark.he, pytest.mark.slow]
PRECISE = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION,
}
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)


class Target:
    """A server with authentication on, a client with a token, its keys and a valid query."""

    def __init__(self, folder: Path) -> None:
        store = FileStore(folder)
        versions.publish(store, "v1", _packed(), [(i + 1, f"Item {i + 1}") for i in range(ITEMS)])
        self.running: Running = start(
            ("key", "model", "evaluator"), store, config=ServerConfig(auth=True)
        )
        self.token = add_client(store, "fuzzer", Quotas(queries_per_day=1_000_000))
        self.client = CryptoRecClient(f"127.0.0.1:{self.running.port}", token=self.token)
        info = self.client.model_info()
        self.keys = self.client.ensure_keys(info, "ckks", "fast", {}, {})
        self.query, _ = self.keys.client.encrypt(ratings_row(info, RATINGS))
        self.blobs = self.keys.client.key_blobs()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.running.port}")

    def metadata(self, token: str | None) -> list[tuple[str, str]]:
        return [] if token is None else [("authorization", f"Bearer {token}")]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    t = Target(tmp_path_factory.mktemp("fuzz"))
    yield t
    t.client.close()
    t.channel.close()
    t.running.stop(grace=1.0)


def _status(call: Any) -> grpc.StatusCode:
    try:
        result = call()
        if isinstance(result, Iterator):
            list(result)
        return grpc.StatusCode.OK
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]


def _mutated(blob: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=64),
        st.integers(0, max(0, len(blob) - 1)).map(lambda k: blob[:k]),
        st.tuples(st.integers(0, len(blob) - 1), st.integers(1, 255)).map(
            lambda t: blob[: t[0]] + bytes([blob[t[0]] ^ t[1]]) + blob[t[0] + 1 :]
        ),
    )


ascii_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
tokens = st.one_of(st.none(), ascii_text, st.just("fuzz"))  # replaced by the real one


@FUZZ
@given(
    data=st.data(),
    token=tokens,
    version=st.one_of(st.just("v1"), st.just(""), st.text(max_size=70)),
    scheme=st.integers(-3, 120),
    mode=st.integers(-3, 5),
    count=st.integers(-2, 5),
    header_first=st.booleans(),
    indices=st.lists(st.integers(-2, 4), max_size=3),
)
def test_fuzzed_predict_requests_get_precise_statuses(
    target: Target,
    data: st.DataObject,
    token: str | None,
    version: str,
    scheme: int,
    mode: int,
    count: int,
    header_first: bool,
    indices: list[int],
) -> None:
    token = target.token if token == "fuzz" else token
    key_id = data.draw(st.one_of(st.just(target.keys.key_id), st.text(max_size=40)))
    cts = [data.draw(_mutated(target.query[0])) for _ in indices]
    header = ev_pb.PredictHeader(
        model_version=version, key_id=key_id, scheme=scheme, mode=mode, ciphertext_count=count
    )

    def requests() -> Iterator[ev_pb.PredictRequest]:
        if header_first:
            yield ev_pb.PredictRequest(header=header)
        for index, ct in zip(indices, cts, strict=True):
            yield ev_pb.PredictRequest(
                chunk=ev_pb.CiphertextChunk(chunk_index=index, ciphertexts=[ct])
            )

    stub = ev_grpc.EvaluatorServiceStub(target.channel)
    code = _status(lambda: stub.Predict(requests(), timeout=30, metadata=target.metadata(token)))
    assert code in PRECISE, code


@FUZZ
@given(
    data=st.data(),
    token=tokens,
    scheme=st.integers(-3, 5),
    mode=st.integers(-3, 5),
    parameter_set=st.one_of(st.just("ckks-8192-fast"), ascii_text),
    steps=st.one_of(st.none(), st.lists(st.integers(-5, 10_000), max_size=20)),
    sizes=st.lists(st.integers(-(2**40), 2**40), max_size=3),
)
def test_fuzzed_key_registrations_get_precise_statuses(
    target: Target,
    data: st.DataObject,
    token: str | None,
    scheme: int,
    mode: int,
    parameter_set: str,
    steps: list[int] | None,
    sizes: list[int],
) -> None:
    token = target.token if token == "fuzz" else token
    blobs = {n: data.draw(_mutated(b)) for n, b in target.blobs.items()}
    names = data.draw(st.sampled_from([list(blobs), ["secret_key"], [*blobs, "extra"]]))
    declared = [
        key_pb.KeyBlob(
            name=n,
            size=sizes[k] if k < len(sizes) else len(blobs.get(n, b"")),
            sha256=hashlib.sha256(blobs.get(n, b"")).digest(),
        )
        for k, n in enumerate(names)
    ]
    header = key_pb.KeyHeader(
        scheme=scheme,
        mode=mode,
        parameter_set=parameter_set,
        rotation_steps=list(target.keys.client.spec.rotation_steps) if steps is None else steps,
        blobs=declared,
    )

    def requests() -> Iterator[key_pb.RegisterKeysRequest]:
        yield key_pb.RegisterKeysRequest(header=header)
        yield key_pb.RegisterKeysRequest(chunk=b"".join(blobs.values()))

    stub = key_grpc.KeyServiceStub(target.channel)
    code = _status(
        lambda: stub.RegisterKeys(requests(), timeout=30, metadata=target.metadata(token))
    )
    assert code in PRECISE, code


@FUZZ
@given(token=tokens, text=st.text(max_size=300), which=st.integers(0, 3))
def test_fuzzed_unary_requests_get_precise_statuses(
    target: Target, token: str | None, text: str, which: int
) -> None:
    token = target.token if token == "fuzz" else token
    metadata = target.metadata(token)
    keys, models = (
        key_grpc.KeyServiceStub(target.channel),
        model_grpc.ModelServiceStub(target.channel),
    )
    calls = [
        lambda: keys.GetKeyInfo(key_pb.GetKeyInfoRequest(key_id=text), metadata=metadata),
        lambda: keys.DeleteKeys(key_pb.DeleteKeysRequest(key_id=text), metadata=metadata),
        lambda: models.GetModel(model_pb.GetModelRequest(version=text), metadata=metadata),
        lambda: keys.ListKeys(key_pb.ListKeysRequest(), metadata=metadata),
    ]
    assert _status(calls[which]) in PRECISE


def test_after_the_fuzzing_a_legitimate_query_is_answered_correctly(target: Target) -> None:
    predictions, _ = target.client.predict(RATINGS)
    np.testing.assert_allclose(predictions, _library_prediction("fast"), atol=1e-3)
