"""Uploads cannot take a server's memory (RELIABILITY.md lines 39, 40): eight concurrent key
sets of 208 MB of junk (valid SEAL headers, correct checksums), and on the web port oversized
bodies, a frame that declares 4 GiB and a gzip bomb, each leave the server process' peak
resident memory within its configured upload budget plus 10%. A real `cryptorec serve`."""

from __future__ import annotations

import gzip
import hashlib
import socket
import struct
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from cryptorec.services import versions
from cryptorec.services.credentials import add_client
from cryptorec.services.rpc.convert import mode_enum, scheme_enum
from cryptorec.services.store.base import Quotas
from cryptorec.services.store.file_store import FileStore
from cryptorec.v1 import key_service_pb2 as key_pb
from cryptorec.v1 import key_service_pb2_grpc as key_grpc
from libcryptorec.he import registry, seal_format
from tests.redis_server import free_port
from tests.test_attacks import Server
from tests.test_service_e2e import ITEMS, _packed

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BUDGET = 700 << 20  # room for one junk key set's three-fold reservation: it is received
CHUNK = 1 << 20
UPLOADS = 8


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


class Peak:
    """The growth of a process' peak resident memory from now (Linux: clear_refs resets the
    high-water mark)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        self.base = _status(pid, "VmRSS")

    def growth(self) -> int:
        return _status(self.pid, "VmHWM") - self.base


def _junk_blob(size: int) -> Iterator[bytes]:
    """A blob of `size` bytes that begins as a SEAL object of that size and is zeros after."""
    header = seal_format.HEADER.pack(seal_format.MAGIC, seal_format.HEADER.size, 4, 1, 0, 0, size)
    yield header
    left = size - len(header)
    zeros = bytes(CHUNK)
    while left > 0:
        yield zeros[: min(CHUNK, left)]
        left -= min(CHUNK, left)


def _junk_key_set() -> tuple[key_pb.KeyHeader, list[tuple[str, int]]]:
    """The header of the largest key set CKKS accurate allows (every rotation step, every
    blob at its cap), all junk, with correct checksums."""
    backend = registry.get("ckks", "accurate")
    steps = tuple(1 << k for k in range(13))  # every power of two below n/2 = 8192
    sizes = [(name, cap) for name, cap in backend.blob_caps(steps).items()]
    blobs = []
    for name, size in sizes:
        digest = hashlib.sha256()
        for piece in _junk_blob(size):
            digest.update(piece)
        blobs.append(key_pb.KeyBlob(name=name, size=size, sha256=digest.digest()))
    header = key_pb.KeyHeader(
        scheme=scheme_enum("ckks"),
        mode=mode_enum("accurate"),
        parameter_set=backend.parameter_set,
        rotation_steps=list(steps),
        blobs=blobs,
    )
    return header, sizes


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    store = FileStore(tmp_path / "store")
    versions.publish(store, "v1", _packed(), [(i + 1, f"Item {i + 1}") for i in range(ITEMS)])
    running = Server(
        f"file://{tmp_path / 'store'}",
        "memory:",
        tmp_path / "server.log",
        *("--upload-budget", str(BUDGET), "--web-port", str(free_port()), "--web-page", "none"),
        env={"CRYPTOREC_TRANSFER_GRACE_SECONDS": "60"},
    )
    yield running
    running.stop()


def test_concurrent_junk_key_sets_stay_within_the_upload_budget(server: Server) -> None:
    """RELIABILITY.md line 39: eight concurrent 208 MB junk key sets: at most the budget's
    worth is received (the others are refused at once with RESOURCE_EXHAUSTED), what is
    received is refused for what it is (INVALID_ARGUMENT), never INTERNAL, and the peak stays
    within the budget plus 10%."""
    header, sizes = _junk_key_set()
    assert sum(size for _, size in sizes) > 200e6
    peak = Peak(server.proc.pid)
    codes: list[grpc.StatusCode] = []

    def upload() -> None:
        def requests() -> Iterator[key_pb.RegisterKeysRequest]:
            yield key_pb.RegisterKeysRequest(header=header)
            for _, size in sizes:
                for piece in _junk_blob(size):
                    yield key_pb.RegisterKeysRequest(chunk=piece)

        with grpc.insecure_channel(server.target) as channel:
            try:
                key_grpc.KeyServiceStub(channel).RegisterKeys(requests(), timeout=120)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.append(exc.code())

    threads = [threading.Thread(target=upload) for _ in range(UPLOADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert len(codes) == UPLOADS
    assert set(codes) <= {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT}
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
    assert peak.growth() <= 1.1 * BUDGET, (peak.growth() / 1e6, codes)


def _web_post(
    url: str, path: str, body: Any, headers: dict[str, str]
) -> tuple[int, dict[str, str]]:
    """POST to the web port; (HTTP status, response headers) however early it answers."""
    request = urllib.request.Request(
        url.rstrip("/") + path, data=body, method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, {k.lower(): v for k, v in reply.headers.items()}
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}


def _stream_body(port: int, path: str, headers: dict[str, str], total: int) -> bytes:
    """Send `total` body bytes (chunked, no length) over a raw socket; the response's start."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Transfer-Encoding: chunked"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        piece = b"\0" * CHUNK
        try:
            for _ in range(total // CHUNK):
                s.sendall(b"%x\r\n" % CHUNK + piece + b"\r\n")
            s.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # refused and closed before the whole body: what is wanted
        try:
            return s.recv(4096)
        except OSError:
            return b""


def test_web_port_bodies_and_bombs_stay_within_the_upload_budget(tmp_path: Path) -> None:
    """RELIABILITY.md lines 39, 40: on the web port, under --auth: a 256 MiB Connect body
    without a token, the same with one, a gRPC-web frame declaring 2^32-1 bytes, and a gzip
    body that would inflate to 512 MiB, four of each at once: each refused (before reading,
    or as soon as the cap is passed), the peak within the budget plus 10%."""
    store = FileStore(tmp_path / "store")
    versions.publish(store, "v1", _packed(), [(i + 1, f"Item {i + 1}") for i in range(ITEMS)])
    token = add_client(store, "web", Quotas())
    web_port = free_port()
    server = Server(
        f"file://{tmp_path / 'store'}",
        "web-memory:",
        tmp_path / "server.log",
        *("--auth", "--upload-budget", str(BUDGET), "--web-port", str(web_port)),
        *("--web-page", "none"),
    )
    try:
        peak = Peak(server.proc.pid)
        url = f"http://127.0.0.1:{web_port}"
        path = "/cryptorec.v1.KeyService/RegisterKeysWhole"
        bomb = gzip.compress(b"\0" * (512 << 20), compresslevel=9)
        frame = b"\x00" + struct.pack(">I", 2**32 - 1) + b"\0" * (1 << 20)
        auth = {"authorization": f"Bearer {token}"}
        connect = {"content-type": "application/proto", "connect-protocol-version": "1"}
        grpc_web = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"}
        outcomes: list[Any] = []

        def attack(kind: str) -> None:
            if kind == "anonymous body":
                outcomes.append(_stream_body(web_port, path, connect, 256 << 20)[:12])
            elif kind == "body":
                outcomes.append(_stream_body(web_port, path, {**connect, **auth}, 256 << 20)[:12])
            elif kind == "frame":
                outcomes.append(_web_post(url, path, frame, {**grpc_web, **auth}))
            else:
                headers = {**connect, **auth, "content-encoding": "gzip"}
                outcomes.append(_web_post(url, path, bomb, headers))

        threads = [
            threading.Thread(target=attack, args=(kind,))
            for kind in ("anonymous body", "body", "frame", "gzip")
            for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert len(outcomes) == 16
        for outcome in outcomes:
            if isinstance(outcome, bytes):  # raw HTTP: the status line, if it got that far
                assert not outcome or outcome.startswith((b"HTTP/1.1 4", b"HTTP/1.1 2")), outcome
            else:
                status, headers = outcome
                assert status in (200, 429, 501), outcome
                if status == 200:  # gRPC-web: the status in headers
                    assert headers.get("grpc-status") == "8", outcome
        assert peak.growth() <= 1.1 * BUDGET, peak.growth() / 1e6
        # ... and the front still serves.
        reply = _web_post(url, "/cryptorec.v1.ModelService/GetModel", b"", {**connect, **auth})
        assert reply[0] == 200
    finally:
        server.stop()
