"""What every outgoing call carries: a fresh `x-request-id` (unless the caller set one) and,
with a token, `authorization: Bearer TOKEN` (the client library's channels, and evaluators'
shard calls to each other)."""

from __future__ import annotations

import collections
from typing import Any

import grpc

from cryptorec.services.rpc.request_id import REQUEST_ID, new_request_id


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class CallMetadata(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds `x-request-id` (new per call, unless the caller set one) and, with a token,
    `authorization: Bearer TOKEN` to every call of a channel. The token travels as any
    metadata does: use TLS outside a trusted network."""

    def __init__(self, token: str | None = None) -> None:
        self._auth = [("authorization", f"Bearer {token}")] if token else []

    def _with_metadata(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = list(details.metadata or ())
        if not any(key == REQUEST_ID for key, _ in metadata):
            metadata.append((REQUEST_ID, new_request_id()))
        return _CallDetails(
            details.method,
            details.timeout,
            metadata + self._auth,
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )

    def intercept_unary_unary(
        self, continuation: Any, client_call_details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        return continuation(self._with_metadata(client_call_details), request)

    def intercept_unary_stream(
        self, continuation: Any, client_call_details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        return continuation(self._with_metadata(client_call_details), request)

    def intercept_stream_unary(
        self, continuation: Any, client_call_details: grpc.ClientCallDetails, request_iterator: Any
    ) -> Any:
        return continuation(self._with_metadata(client_call_details), request_iterator)

    def intercept_stream_stream(
        self, continuation: Any, client_call_details: grpc.ClientCallDetails, request_iterator: Any
    ) -> Any:
        return continuation(self._with_metadata(client_call_details), request_iterator)
