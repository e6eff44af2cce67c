"""The gRPC-web front (cryptorec serve --web-port): browser calls reach the same handlers and
interceptors as gRPC ones and get the same answers and statuses; only browser-callable RPCs
are offered; CORS only for the origins given. Also: the page's parameter table agrees with
the library's, and SEAL's seeded form (what the page uploads) is read and checked."""

from __future__ import annotations

import base64
import re
import struct
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.rpc import status_pb2

from cryptorec.services.client.library import CryptoRecClient
from cryptorec.services.rpc.details import read_details, reason_of
from cryptorec.services.rpc.options import MAX_MESSAGE_BYTES
from cryptorec.v1 import evaluator_service_pb2 as ev_pb
from cryptorec.v1 import key_service_pb2 as key_pb
from cryptorec.v1 import model_service_pb2 as model_pb
from cryptorec.v1 import types_pb2
from libcryptorec.he import ckks, params, seal_format
from libcryptorec.he.errors import InvalidCiphertextError, InvalidKeyError
from tests.web_front import Served, grpc_web_call, serve

pytestmark = [pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[1]
ORIGIN = "https://app.example.org"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = serve(tmp_path_factory.mktemp("store"), origins=(ORIGIN,))
    yield s
    s.running.stop(grace=1.0)


def _auth(s: Served) -> dict[str, str]:
    return {"authorization": f"Bearer {s.token}"}


def _grpc_status(s: Served, method: str, request: bytes) -> tuple[grpc.StatusCode, str]:
    """The status and ErrorInfo reason the gRPC port gives the same request."""
    channel = grpc.insecure_channel(s.grpc_target)
    streaming = method.endswith("PredictWhole")
    call = (channel.unary_stream if streaming else channel.unary_unary)(method)
    try:
        answer = call(request, metadata=[("authorization", f"Bearer {s.token}")], timeout=30)
        if streaming:
            list(answer)
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as exc:
        return exc.code(), reason_of(exc)  # type: ignore[attr-defined,arg-type]
    finally:
        channel.close()


def test_get_model_over_grpc_web_equals_grpc(served: Served) -> None:
    reply = grpc_web_call(
        served.url,
        "/cryptorec.v1.ModelService/GetModel",
        model_pb.GetModelRequest().SerializeToString(),
        _auth(served),
    )
    assert reply.http_status == 200
    assert reply.grpc_status == 0
    over_web = model_pb.GetModelResponse.FromString(reply.messages[0])
    client = CryptoRecClient(served.grpc_target, token=served.token)
    try:
        assert over_web == client.model_info()
    finally:
        client.close()
    assert len(over_web.catalogue) == 300


def _web_reason(trailers: dict[str, str]) -> str:
    """The ErrorInfo reason in a gRPC-web reply's trailers (binary values are base64)."""
    packed = trailers.get("grpc-status-details-bin", "")
    raw = base64.b64decode(packed + "=" * (-len(packed) % 4))
    return read_details(status_pb2.Status.FromString(raw)).reason


def test_bad_input_grpc_web_statuses_equal_the_grpc_ones(served: Served) -> None:
    # RELIABILITY.md lines 2, 5 and 9 over the web port: every status as the gRPC port gives
    # it, with the same machine-readable reason (line 32).
    header = ev_pb.PredictHeader(
        model_version="v1",
        key_id="0" * 64,
        scheme=types_pb2.SCHEME_CKKS,
        mode=types_pb2.MODE_FAST,
        ciphertext_count=1,
        input_offset=0.5,
    )
    cases = {
        "/cryptorec.v1.EvaluatorService/PredictWhole": ev_pb.PredictWholeRequest(
            header=header, ciphertexts=[b"x"]
        ),
        "/cryptorec.v1.KeyService/GetKeyInfo": key_pb.GetKeyInfoRequest(key_id="nope"),
        "/cryptorec.v1.ModelService/GetModel": model_pb.GetModelRequest(version="v404"),
        "/cryptorec.v1.KeyService/RegisterKeysWhole": key_pb.RegisterKeysWholeRequest(
            header=key_pb.KeyHeader(scheme=types_pb2.SCHEME_CKKS, parameter_set="ckks-1-weak")
        ),
    }
    for path, request in cases.items():
        body = request.SerializeToString()
        expected, reason = _grpc_status(served, path, body)
        assert expected != grpc.StatusCode.OK, path
        assert reason, path
        reply = grpc_web_call(served.url, path, body, _auth(served))
        assert reply.grpc_status == expected.value[0], (path, reply.trailers, expected)
        assert reply.trailers.get("grpc-message"), path
        assert _web_reason(reply.trailers) == reason, path


def test_web_calls_pass_the_grpc_authentication(served: Served) -> None:
    """RELIABILITY.md line 9: missing or unknown credentials are UNAUTHENTICATED here too."""
    path, body = "/cryptorec.v1.ModelService/GetModel", b""
    for headers in ({}, {"authorization": "Bearer cr_not-a-token"}):
        reply = grpc_web_call(served.url, path, body, headers)
        assert reply.grpc_status == grpc.StatusCode.UNAUTHENTICATED.value[0]


def test_oversized_web_message_is_resource_exhausted(served: Served) -> None:
    """RELIABILITY.md line 7 on the web port."""
    too_big = key_pb.RegisterKeysWholeRequest(keys=b"\0" * (MAX_MESSAGE_BYTES + 1))
    reply = grpc_web_call(
        served.url,
        "/cryptorec.v1.KeyService/RegisterKeysWhole",
        too_big.SerializeToString(),
        _auth(served),
    )
    assert reply.grpc_status == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    # ... and the front keeps serving.
    ok = grpc_web_call(served.url, "/cryptorec.v1.ModelService/GetModel", b"", _auth(served))
    assert ok.grpc_status == 0


def test_only_browser_callable_rpcs_are_offered(served: Served) -> None:
    for path in (
        "/cryptorec.v1.EvaluatorService/Predict",  # client streaming: use PredictWhole
        "/cryptorec.v1.KeyService/RegisterKeys",  # client streaming: use RegisterKeysWhole
        "/cryptorec.v1.ShardService/FirstProduct",  # the evaluators' own, never a browser's
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ):
        reply = grpc_web_call(served.url, path, b"", _auth(served))
        assert reply.http_status == 404, path


def test_a_single_role_web_port_offers_only_its_service(tmp_path: Path) -> None:
    from cryptorec.services.app.server import start
    from cryptorec.services.store.file_store import FileStore
    from cryptorec.services.web.server import WebConfig
    from tests.web_front import publish_model

    store = FileStore(tmp_path)
    publish_model(store)
    running = start(("model",), store, web=WebConfig(0))
    try:
        assert running.web is not None
        url = running.web.url
        assert grpc_web_call(url, "/cryptorec.v1.ModelService/GetModel", b"").grpc_status == 0
        for path in (
            "/cryptorec.v1.KeyService/GetKeyInfo",
            "/cryptorec.v1.EvaluatorService/PredictWhole",
        ):
            assert grpc_web_call(url, path, b"").http_status == 404, path
    finally:
        running.stop(grace=1.0)


def test_cors_only_for_the_configured_origins(served: Served) -> None:
    def preflight(origin: str) -> dict[str, str]:
        request = urllib.request.Request(
            served.url + "cryptorec.v1.ModelService/GetModel",
            method="OPTIONS",
            headers={
                "origin": origin,
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type,x-grpc-web,authorization",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return {k.lower(): v for k, v in response.headers.items()}
        except urllib.error.HTTPError as exc:
            return {k.lower(): v for k, v in exc.headers.items()}

    allowed = preflight(ORIGIN)
    assert allowed["access-control-allow-origin"] == ORIGIN
    assert "authorization" in allowed["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in preflight("https://evil.example.com")
    reply = grpc_web_call(
        served.url, "/cryptorec.v1.ModelService/GetModel", b"", _auth(served) | {"origin": ORIGIN}
    )
    assert reply.headers["access-control-allow-origin"] == ORIGIN
    assert "grpc-status" in reply.headers["access-control-expose-headers"]


def test_page_parameter_sets_match_the_library() -> None:
    source = (ROOT / "web" / "src" / "params.ts").read_text()
    found = re.findall(
        r'"([\w-]+)": \{ n: (\d+), primes: \[([\d, ]+)\], inputBits: (\d+) \}', source
    )
    library = {
        p.name: (p.n, p.primes, p.input_bits)
        for p in vars(params).values()
        if isinstance(p, params.CkksParams)
    }
    page = {
        name: (int(n), tuple(int(x) for x in primes.split(",")), int(bits))
        for name, n, primes, bits in found
    }
    assert page
    assert page.items() <= library.items()


def _seeded(blob: bytes, prng: int = 2, seed: bytes = b"\x07" * 64) -> bytes:
    """`blob` (an unseeded 2-polynomial ciphertext) rewritten in SEAL's seeded form."""
    ct = seal_format.read_whole_ciphertext(blob)
    half = 8 * ct.degree * ct.limbs
    fields_end = 16 + seal_format.CIPHERTEXT_FIELDS.size
    seed_object = seal_format.HEADER.pack(seal_format.MAGIC, 16, 4, 1, 0, 0, 16 + 65)
    seed_object += struct.pack("<B", prng) + seed
    array = seal_format.HEADER.pack(seal_format.MAGIC, 16, 4, 1, 0, 0, 16 + 8 + half)
    first = blob[fields_end + 24 : fields_end + 24 + half]  # after the array's header and count
    array += struct.pack("<Q", ct.degree * ct.limbs) + first
    body = blob[16:fields_end] + array + seed_object
    return seal_format.HEADER.pack(seal_format.MAGIC, 16, 4, 1, 0, 0, 16 + len(body)) + body


@pytest.mark.he
def test_seeded_ciphertexts_and_keys_are_read_and_checked() -> None:
    p = params.CKKS_FAST_8192
    he = ckks._context(p)
    he.keyGen()
    blob = bytes(
        he.encryptFrac(np.zeros(p.slots), scale=2.0**p.input_bits).to_bytes(compr_mode="none")
    )
    seeded = _seeded(blob)
    assert len(seeded) < 0.51 * len(blob)
    ct = seal_format.check_ciphertext(
        seeded, degree=p.n, limbs=2, ntt=True, scale=2.0**p.input_bits
    )
    assert ct.seed == b"\x07" * 64
    assert not ct.is_transparent()
    public = bytes(he.to_bytes_public_key(compr_mode="none"))
    seal_format.check_public_key(_seeded(public), degree=p.n, limbs=3)
    for bad, why in (
        (_seeded(blob, prng=9), "PRNG"),
        (_seeded(blob, seed=b"\0" * 64), "zero seed"),
        (_seeded(blob)[:-1], "size"),
        (_seeded(blob) + b"\0", "after"),
    ):
        with pytest.raises(InvalidCiphertextError, match=why):
            seal_format.check_ciphertext(bad, degree=p.n, limbs=2, ntt=True, scale=None)
    with pytest.raises(InvalidKeyError):
        seal_format.check_public_key(_seeded(public, prng=0), degree=p.n, limbs=3)


def test_every_grpc_status_keeps_its_name_over_the_web() -> None:
    from connectrpc.code import Code

    from cryptorec.services.web.front import code_of

    for status in grpc.StatusCode:
        if status != grpc.StatusCode.OK:
            expected = "CANCELED" if status == grpc.StatusCode.CANCELLED else status.name
            assert code_of(status) == Code[expected]


def _raw(port: int, data: bytes, source: str = "127.0.0.1", wait: float = 5.0) -> bytes:
    """Send raw bytes to the web port; what comes back within `wait` seconds ("" if the
    connection is closed without an answer)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), source_address=(source, 0)) as s:
        s.settimeout(wait)
        s.sendall(data)
        try:
            return s.recv(4096)
        except (TimeoutError, OSError):
            return b""


def test_malformed_requests_get_a_4xx_never_a_500(served: Served) -> None:
    """RELIABILITY.md line 40: an HTTP/2 preface on the HTTP/1.1 port, header values that are
    not visible ASCII: 4xx answers (or the call as if the bad value were absent), never 500."""
    assert served.running.web is not None
    port = served.running.web.port
    preface = _raw(port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert preface.startswith(b"HTTP/1.1 4"), preface
    path = "/cryptorec.v1.ModelService/GetModel"
    bad_token = grpc_web_call(served.url, path, b"", {"authorization": "Bearer \xe9t\xe9"})
    assert bad_token.grpc_status == grpc.StatusCode.UNAUTHENTICATED.value[0]
    for request_id in ("caf\xe9", "a\tb"):
        headers = {**_auth(served), "x-request-id": request_id}
        reply = grpc_web_call(served.url, path, b"", headers)
        assert reply.grpc_status == 0  # the call goes on, with a request id of the server's
        assert reply.trailers.get("x-request-id", reply.headers.get("x-request-id")) != request_id


def test_web_port_limits_connections_per_address_and_header_time(tmp_path: Path) -> None:
    """RELIABILITY.md line 40: 300 idle connections from one address, and one trickling a
    header line at a time, lock nobody out: connections beyond the address's cap are closed at
    once, and a connection without a whole request head after the header timeout is closed
    however slowly it trickles; meanwhile another address's calls are answered."""
    import socket
    import time

    s = serve(tmp_path / "store", connections_per_address=8, header_timeout=1.5)
    try:
        assert s.running.web is not None
        port = s.running.web.port
        idle = [
            socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.2", 0))
            for _ in range(300)
        ]
        trickler = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.3", 0))
        trickler.sendall(b"GET / HTTP/1.1\r\n")
        started = time.monotonic()
        closed_at = None
        path = "/cryptorec.v1.ModelService/GetModel"
        while time.monotonic() - started < 4:
            reply = grpc_web_call(s.url, path, b"", _auth(s))
            assert reply.http_status == 200
            assert reply.grpc_status == 0
            if closed_at is None:
                try:
                    trickler.sendall(b"X-Slow: 1\r\n")
                    trickler.settimeout(0.01)
                    if trickler.recv(1) == b"":
                        closed_at = time.monotonic()
                except (TimeoutError, BlockingIOError):
                    pass
                except OSError:
                    closed_at = time.monotonic()
            time.sleep(0.2)
        assert closed_at is not None
        assert closed_at - started < 1.5 + 1.5
        alive = 0
        for conn in idle:
            conn.settimeout(0.05)
            try:
                alive += conn.recv(1) != b""
            except TimeoutError:
                alive += 1  # still open
            except OSError:
                pass
            conn.close()
        assert alive == 0  # 292 closed at once, the other 8 at the header timeout
        trickler.close()
    finally:
        s.running.stop(grace=1.0)
