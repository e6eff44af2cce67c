"""The browser's way in: gRPC-web (and Connect) for the RPCs a browser can call, forwarded to
this process's own gRPC server.

Browsers cannot stream requests, so only unary and server-streaming methods are offered
(GetModel, RegisterKeysWhole, PredictWhole, ...); the client-streaming ones and the
evaluators' internal ShardService are not. The protocols are connect-python's (Connect,
gRPC-web and gRPC on one ASGI app); the endpoints are built from the protos' descriptors, so
a browser-callable RPC added to the API is served here with no change.

Each call is forwarded, message for message, to the gRPC server over a private channel: the
interceptors there (authentication, budgets, admission, metrics, logs) and the handlers see
every browser call exactly as they see a gRPC one, and the two ports cannot drift apart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import grpc
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.method import IdempotencyLevel, MethodInfo
from connectrpc.request import RequestContext
from connectrpc.server import ConnectASGIApplication, Endpoint
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message_factory import GetMessageClass
from google.rpc import status_pb2
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from cryptorec.services.rpc.admission import CLIENT_ADDRESS
from cryptorec.services.rpc.options import CHANNEL_OPTIONS, MAX_MESSAGE_BYTES
from cryptorec.services.rpc.request_id import REQUEST_ID
from cryptorec.services.web.guard import Guard, GuardConfig, plain_response
from cryptorec.v1 import (
    account_service_pb2,
    evaluator_service_pb2,
    key_service_pb2,
    model_service_pb2,
)

BROWSER_SERVICES: tuple[ServiceDescriptor, ...] = (
    account_service_pb2.DESCRIPTOR.services_by_name["AccountService"],
    model_service_pb2.DESCRIPTOR.services_by_name["ModelService"],
    key_service_pb2.DESCRIPTOR.services_by_name["KeyService"],
    evaluator_service_pb2.DESCRIPTOR.services_by_name["EvaluatorService"],
)
# Request headers passed on as gRPC metadata; nothing else reaches the gRPC server. The client
# address is the guard's (services/web/guard.py), never the browser's own claim; a browser's
# W3C trace context continues on the server.
FORWARDED_HEADERS = ("authorization", REQUEST_ID, CLIENT_ADDRESS, "traceparent", "tracestate")
# What a browser may send and read across origins (with --web-origins).
CORS_REQUEST_HEADERS = (
    "authorization",
    "content-type",
    "connect-protocol-version",
    "connect-timeout-ms",
    "grpc-timeout",
    "x-grpc-web",
    "x-user-agent",
    "traceparent",
    "tracestate",
    REQUEST_ID,
)
STATUS_DETAILS = "grpc-status-details-bin"
CORS_RESPONSE_HEADERS = ("grpc-status", "grpc-message", STATUS_DETAILS, REQUEST_ID)
DEFAULT_TIMEOUT_SECONDS = 120.0


def browser_methods(service: ServiceDescriptor) -> list[MethodDescriptor]:
    """The methods of `service` a browser can call: no request streaming."""
    return [m for m in service.methods if not m.client_streaming]


def code_of(status: grpc.StatusCode) -> Code:
    """The Connect code of a gRPC status (the same names; Connect spells CANCELED once)."""
    if status == grpc.StatusCode.CANCELLED:
        return Code.CANCELED
    return Code[status.name] if status.name in Code.__members__ else Code.UNKNOWN


class Forwarder:
    """Sends browser calls on to the gRPC server at `target` (an address grpc understands,
    e.g. "unix:/run/cryptorec.sock") over one channel, opened in the serving event loop."""

    def __init__(self, target: str, default_timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.target, self.default_timeout = target, default_timeout
        self._channel: grpc.aio.Channel | None = None

    @property
    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        return self._channel

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    def endpoint(self, method: MethodDescriptor) -> Endpoint[Any, Any]:
        """A connect-python endpoint for `method` that forwards each call."""
        request, response = GetMessageClass(method.input_type), GetMessageClass(method.output_type)
        info = MethodInfo(
            name=method.name,
            service_name=method.containing_service.full_name,
            input=request,
            output=response,
            idempotency_level=IdempotencyLevel.UNKNOWN,
        )
        path = f"/{method.containing_service.full_name}/{method.name}"
        codec: dict[str, Any] = {
            "request_serializer": request.SerializeToString,
            "response_deserializer": response.FromString,
        }
        if method.server_streaming:

            async def stream(request: Any, ctx: RequestContext[Any, Any]) -> AsyncIterator[Any]:
                call = self.channel.unary_stream(path, **codec)(request, **self._options(ctx))
                try:
                    async for reply in call:
                        yield reply
                except grpc.aio.AioRpcError as exc:
                    raise _connect_error(exc) from None
                finally:
                    call.cancel()  # a browser that went away stops the computation too

            return Endpoint.server_stream(method=info, function=stream)

        async def unary(request: Any, ctx: RequestContext[Any, Any]) -> Any:
            try:
                return await self.channel.unary_unary(path, **codec)(request, **self._options(ctx))
            except grpc.aio.AioRpcError as exc:
                raise _connect_error(exc) from None

        return Endpoint.unary(method=info, function=unary)

    def _options(self, ctx: RequestContext[Any, Any]) -> dict[str, Any]:
        """The call's metadata (the forwarded headers) and deadline (the browser's, or the
        default)."""
        headers = ctx.request_headers()
        metadata = [(h, headers[h]) for h in FORWARDED_HEADERS if h in headers]
        remaining = ctx.timeout_ms()
        timeout = self.default_timeout if remaining is None else max(remaining / 1000, 0.001)
        return {"metadata": metadata, "timeout": timeout}


def _connect_error(exc: grpc.aio.AioRpcError) -> ConnectError:
    """The browser's error for a failed call: its code, message and google.rpc details."""
    details: list[Any] = []
    for key, value in exc.trailing_metadata() or ():
        if key == STATUS_DETAILS and isinstance(value, bytes):
            details = list(status_pb2.Status.FromString(value).details)
    return ConnectError(code_of(exc.code()), exc.details() or "", details)


class ServiceApp(ConnectASGIApplication[Forwarder]):
    """One browser-facing service: its browser-callable methods, each forwarded."""

    def __init__(self, service: ServiceDescriptor, forwarder: Forwarder) -> None:
        self._path = f"/{service.full_name}"
        methods = browser_methods(service)

        # Mapping[str, Any]: connect-python types this with its private Endpoint subclasses.
        def endpoints(f: Forwarder) -> Mapping[str, Any]:
            return {f"{self._path}/{m.name}": f.endpoint(m) for m in methods}

        super().__init__(service=forwarder, endpoints=endpoints, read_max_bytes=MAX_MESSAGE_BYTES)

    @property
    def path(self) -> str:
        return self._path


class WebFront:
    """The ASGI app: the browser services this process serves (`served`: full service names;
    None: all), by path, and the page's static files (if a directory is given) for everything
    else."""

    def __init__(
        self, forwarder: Forwarder, page_dir: Path | None = None, served: set[str] | None = None
    ) -> None:
        self.services: dict[str, ASGIApp] = {
            s.full_name: ServiceApp(s, forwarder)
            for s in BROWSER_SERVICES
            if served is None or s.full_name in served
        }
        self.page: ASGIApp | None = StaticFiles(directory=page_dir, html=True) if page_dir else None

    def serves(self, path: str) -> bool:
        """Whether `path` is a call of one of the browser services offered here."""
        return _service_name(path) in self.services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        service = self.services.get(_service_name(scope.get("path", "")))
        if service is not None:
            await service(scope, receive, send)
            return
        try:
            if self.page is None:
                raise HTTPException(404)
            await self.page(scope, receive, send)
        except HTTPException as exc:  # StaticFiles' missing file or wrong method
            await plain_response(send, exc.status_code, exc.detail)


def _service_name(path: str) -> str:
    """The service a request path names: "/cryptorec.v1.ModelService/GetModel" ->
    "cryptorec.v1.ModelService" ("" for any other path)."""
    parts = path.split("/")
    return parts[1] if len(parts) > 2 and not parts[0] else ""


def web_app(
    forwarder: Forwarder,
    page_dir: Path | None,
    origins: tuple[str, ...],
    guard: GuardConfig,
    served: set[str] | None = None,
) -> ASGIApp:
    """The front for the `served` services, behind the guard's checks (services/web/guard.py)
    and CORS for `origins` (none: same-origin pages only)."""
    front = WebFront(forwarder, page_dir, served)
    app: ASGIApp = Guard(front, guard, front.serves)
    if origins:
        app = CORSMiddleware(
            app,
            allow_origins=list(origins),
            allow_methods=["GET", "POST"],
            allow_headers=list(CORS_REQUEST_HEADERS),
            expose_headers=list(CORS_RESPONSE_HEADERS),
            max_age=3600,
        )
    return app
