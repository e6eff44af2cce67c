"""How the client library reports a failed call: as gRPC reported it, with the request id
the server logged it under and the machine-readable details the server attached (why, and
when retrying can succeed)."""

from __future__ import annotations

from typing import Any

import grpc

from cryptorec.services.rpc.details import ErrorDetails, details_of
from cryptorec.services.rpc.request_id import request_id_of


class ServiceError(grpc.RpcError, grpc.Call):
    """A call that failed, as gRPC reported it (`code()`, `details()`, trailing metadata),
    shown with the request id the server logged it under: quote it to the operator.
    `reason` (ErrorInfo: "QUOTA_EXCEEDED", "OVERLOADED", ...) and `retry_after` (seconds,
    None if retrying cannot help) are what programs should read, never the message."""

    def __init__(self, error: grpc.Call) -> None:
        super().__init__()
        self.error = error
        self.request_id = request_id_of(error)
        self.error_details: ErrorDetails = details_of(error)

    @property
    def reason(self) -> str:
        return self.error_details.reason

    @property
    def retry_after(self) -> float | None:
        return self.error_details.retry_after

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
