"""What the client library sends with every call (a fresh `x-request-id`, and the bearer
token when the services require one) and how it reports a failed call: with the request id the
server logged it under."""

from __future__ import annotations

import collections
from typing import Any

import grpc

from cryptorec.services.rpc.request_id import REQUEST_ID, new_request_id, request_id_of


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


class ServiceError(grpc.RpcError, grpc.Call):
    """A call that failed, as gRPC reported it (`code()`, `details()`, trailing metadata),
    shown with the request id the server logged it under: quote it to the operator."""

    def __init__(self, error: grpc.Call) -> None:
        super().__init__()
        self.error = error
        self.request_id = request_id_of(error)

    def __str__(self) -> str:
        seen = f" (request id {self.request_id})" if self.request_id else ""
        return f"{self.code().name}: {self.details()}{seen}"

    def __repr__(self) -> str:
        return f"ServiceError({self})"

    def code(self) -> grpc.StatusCode:
        return self.error.code()

    def details(self) -> str:
        return self.error.details() or ""

    def initial_metadata(self) -> Any:
        return self.error.initial_metadata()

    def trailing_metadata(self) -> Any:
        return self.error.trailing_metadata()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return 0.0

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False


def reported(error: grpc.RpcError) -> grpc.RpcError:
    """`error` as a ServiceError (once), if it is a finished call's error."""
    if isinstance(error, ServiceError) or not isinstance(error, grpc.Call):
        return error
    return ServiceError(error)
