"""Why a service refuses a request, in the services' own terms (no gRPC here):
services/rpc/errors.py turns each into its status code at the boundary."""

from __future__ import annotations


class BadRequestError(ValueError):
    """Malformed or inconsistent: a missing header, an unknown enum, counts that disagree
    (INVALID_ARGUMENT)."""


class TooLargeError(Exception):
    """More than the service accepts for this kind of request (RESOURCE_EXHAUSTED)."""


class RefusedError(Exception):
    """Overload: refused before any work; retrying later can succeed (RESOURCE_EXHAUSTED);
    `retry_after`: seconds after which it likely will, where known."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StreamCutError(Exception):
    """The client's request stream ended before the request did: the client cancelled, its
    upload ran past the server's deadline (`timed_out`), or it sent a message over the size
    limit, which the transport refused with RESOURCE_EXHAUSTED (the server cannot tell that
    from a cancel). CANCELLED, or DEADLINE_EXCEEDED; never an internal error."""

    def __init__(self, message: str, timed_out: bool) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class PermissionDeniedError(Exception):
    """The caller is known but may not touch this (another client's key set):
    PERMISSION_DENIED."""


class PreconditionError(Exception):
    """The request cannot be served in the server's present configuration
    (FAILED_PRECONDITION)."""


class PeerError(Exception):
    """A call to another evaluator (a shard) failed on every peer tried; `status` is the
    name of the last peer's gRPC status, passed on to the client as is."""

    def __init__(self, status: str, details: str) -> None:
        super().__init__(details)
        self.status = status
