"""What the web port checks before the Connect app reads a request: the things that cost the
server nothing to check and a lot to skip.

In order, for every call of a browser service: the path and the forwarded header values are
sane (else 400, never a 500); with authentication on, the bearer token belongs to a client
(UNAUTHENTICATED before a body byte is read); the body is not compressed (a 509 KiB gzip body
can inflate to 512 MiB); its declared length, and then the bytes as they stream in, stay under
the message limit; it holds part of the process' upload budget while it is read and answered
(RESOURCE_EXHAUSTED when there is none, never a queue); and it keeps arriving at the slowest
rate served. Refusals are spoken in the caller's protocol: a gRPC-web status in headers, or a
Connect error with its HTTP status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cryptorec.services.credentials import parse_bearer
from cryptorec.services.errors import RefusedError
from cryptorec.services.rpc.admission import CLIENT_ADDRESS, Limits, UploadBudget
from cryptorec.services.rpc.options import MAX_MESSAGE_BYTES
from cryptorec.services.rpc.request_id import REQUEST_ID

# Connect's HTTP status for each code it refuses with here (connectrpc.com/docs/protocol).
HTTP_STATUS = {
    "unauthenticated": 401,
    "resource_exhausted": 429,
    "unimplemented": 501,
    "deadline_exceeded": 504,
}
GRPC_CODE = {
    "deadline_exceeded": 4,
    "resource_exhausted": 8,
    "unimplemented": 12,
    "unauthenticated": 16,
}
# A gRPC-web or Connect-streaming body is framed: a flags byte and a 4-byte length.
FRAME = struct.Struct(">BI")
COMPRESSED_FLAG = 0x01
# What the front holds of a body while it forwards it: the bytes read, the message decoded
# from them, and the message serialized again for the gRPC server.
WEB_BODY_MEMORY = 3
ENCODING_HEADERS = (b"content-encoding", b"connect-content-encoding", b"grpc-encoding")
# Before answering a refused request whose body is still arriving, read and drop at most this
# much of it for at most this long, so a client that is still sending gets to read the answer
# (uvicorn hangs up once a response is complete): bandwidth, never memory.
LINGER_BYTES = 64 << 20
LINGER_SECONDS = 5.0


class ClientLeftError(Exception):
    """The client went away before its body was in: nobody to answer."""


class RefusedRequestError(Exception):
    """A request refused before the app sees it, with a Connect code name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def printable(value: bytes) -> bool:
    """Whether a header value is visible ASCII (what gRPC metadata may carry)."""
    return all(0x20 <= b < 0x7F for b in value)


@dataclass(frozen=True)
class GuardConfig:
    """What the guard enforces: authentication (`authenticate(token)`: whether a bearer
    token belongs to a client; None: no authentication), the shared upload budget, and the
    transfer deadlines of the gRPC port."""

    authenticate: Callable[[str | None], bool] | None
    budget: UploadBudget
    limits: Limits
    max_body: int = MAX_MESSAGE_BYTES


class Guard:
    """ASGI middleware: calls of the browser services (`is_api(path)`) pass the checks above
    before `app` reads them; everything else (the page) goes straight through."""

    def __init__(self, app: ASGIApp, config: GuardConfig, is_api: Callable[[str], bool]) -> None:
        self.app, self.config, self.is_api = app, config, is_api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if not isinstance(path, str) or not path.startswith("/"):
            await plain_response(send, 400, "bad request target")
            return
        if not self.is_api(path):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        body_done = False
        try:
            scope = await self._checked(scope, headers)
            with self.config.budget.reserve(self._reserved(headers), "this request"):
                body = await self._body(receive, headers)
                body_done = True
                await self.app(scope, _replay(body, receive), send)
            return
        except ClientLeftError:
            return
        except RefusedRequestError as refusal:
            code, message = refusal.code, str(refusal)
        except RefusedError as exc:
            code, message = "resource_exhausted", str(exc)
        if not body_done:
            await _drain(receive)
        await _refuse(send, headers, code, message)

    async def _checked(self, scope: Scope, headers: dict[bytes, bytes]) -> Scope:
        """The scope to pass on (with a request id only if sane), after the header checks and
        authentication."""
        authorization = headers.get(b"authorization")
        if authorization is not None and not printable(authorization):
            raise RefusedRequestError("unauthenticated", "malformed authorization header")
        for name in ENCODING_HEADERS:
            if headers.get(name, b"identity").lower() not in (b"identity", b""):
                raise RefusedRequestError("unimplemented", "compressed requests are not accepted")
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self._cap()):
            raise RefusedRequestError(
                "resource_exhausted", f"request bodies are limited to {self.config.max_body} bytes"
            )
        if self.config.authenticate is not None:
            token = parse_bearer(authorization.decode()) if authorization else None
            known = await asyncio.to_thread(self.config.authenticate, token)
            if not known:
                raise RefusedRequestError(
                    "unauthenticated",
                    "missing credentials: send 'authorization: Bearer <token>'"
                    if authorization is None
                    else "unknown or revoked token",
                )
        # The browser's address, as the gRPC server's admission counts calls by it: set here,
        # never taken from the request.
        client = scope.get("client") or ("", 0)
        kept = [
            (k, v)
            for k, v in scope["headers"]
            if k.lower() != CLIENT_ADDRESS.encode()
            and (k.lower() != REQUEST_ID.encode() or printable(v))
        ]
        kept.append((CLIENT_ADDRESS.encode(), str(client[0]).encode()))
        return {**scope, "headers": kept}

    def _cap(self) -> int:
        """The most body bytes a call may send: one message and its frame."""
        return self.config.max_body + FRAME.size

    def _reserved(self, headers: dict[bytes, bytes]) -> int:
        declared = headers.get(b"content-length")
        size = int(declared) if declared is not None else self._cap()
        return WEB_BODY_MEMORY * size

    async def _body(self, receive: Receive, headers: dict[bytes, bytes]) -> bytes:
        """The whole body, read within the cap and the transfer deadline; a framed body's
        declared length and compression flag are checked as soon as its frame header is in."""
        framed = headers.get(b"content-type", b"").startswith(
            (b"application/grpc-web", b"application/connect+")
        )
        limits, chunks, size = self.config.limits, [], 0
        head = b"" if framed else None  # the frame header, until it is checked
        declared = headers.get(b"content-length")
        expected = int(declared) if declared is not None else self._cap()
        deadline = asyncio.get_running_loop().time() + limits.transfer_seconds(expected)
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(remaining, 0.001))
            except TimeoutError:
                raise RefusedRequestError(
                    "deadline_exceeded", "request body not complete in time"
                ) from None
            if message["type"] == "http.disconnect":
                raise ClientLeftError
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._cap():
                raise RefusedRequestError(
                    "resource_exhausted",
                    f"request bodies are limited to {self.config.max_body} bytes",
                )
            chunks.append(chunk)
            if head is not None:
                head += chunk[: FRAME.size - len(head)]
                if len(head) == FRAME.size:
                    self._check_frame(head)
                    head = None
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _check_frame(self, head: bytes) -> None:
        """Refuse a framed body whose first frame is compressed or declares more than a
        message may hold, before the rest of it is read."""
        flags, length = FRAME.unpack(head)
        if flags & COMPRESSED_FLAG:
            raise RefusedRequestError("unimplemented", "compressed messages are not accepted")
        if length > self.config.max_body:
            raise RefusedRequestError(
                "resource_exhausted", f"messages are limited to {self.config.max_body} bytes"
            )


async def _drain(receive: Receive) -> None:
    """Read and drop the rest of a refused request's body, within LINGER_BYTES and
    LINGER_SECONDS."""
    dropped = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(LINGER_SECONDS):
            while dropped < LINGER_BYTES:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return
                dropped += len(message.get("body", b""))


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {k.lower(): v for k, v in scope.get("headers", [])}


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the whole `body` first, then hands on to the connection's own
    (which says when the client goes away, so its call is cancelled)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(send: Send, headers: dict[bytes, bytes], code: str, message: str) -> None:
    """Answer `code` in the caller's protocol: gRPC-web carries the status in headers
    (trailers-only), Connect in an HTTP status and a JSON body."""
    content_type = headers.get(b"content-type", b"")
    with contextlib.suppress(OSError):
        if content_type.startswith(b"application/grpc-web"):
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", content_type),
                        (b"grpc-status", str(GRPC_CODE[code]).encode()),
                        (b"grpc-message", quote(message, safe=" ").encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        body = json.dumps({"code": code, "message": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": HTTP_STATUS[code],
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def plain_response(send: Send, status: int, text: str) -> None:
    """A plain-text HTTP response."""
    body = text.encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"%d" % len(body)),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
