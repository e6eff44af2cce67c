"""Why a service refuses a request, in the services' own terms (no gRPC here):
services/rpc/errors.py turns each into its status code at the boundary."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class BadRequestError(ValueError):
    """Malformed or inconsistent: a missing header, an unknown enum, counts that disagree
    (INVALID_ARGUMENT); `field`: the request field at fault (a path such as
    "header.key_id"), where known, for the status' BadRequest details."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@contextlib.contextmanager
def about(field: str) -> Iterator[None]:
    """Name `field` as the culprit of a BadRequestError raised inside that names none: the
    checks deep down know what is wrong, the caller knows which field it was."""
    try:
        yield
    except BadRequestError as exc:
        if exc.field is None:
            exc.field = field
        raise


class UnauthenticatedError(Exception):
    """No credentials, or credentials nobody issued (UNAUTHENTICATED)."""


class TooLargeError(Exception):
    """More than the service accepts for this kind of request (RESOURCE_EXHAUSTED)."""


# When an overloaded process suggests trying again: calls last about a second (HE-NOTES.md),
# so a slot is likely free by then; clients add jitter.
OVERLOAD_RETRY_SECONDS = 1.0


class RefusedError(Exception):
    """Overload: refused before any work; retrying later can succeed (RESOURCE_EXHAUSTED);
    `retry_after`: seconds after which it likely will."""

    def __init__(self, message: str, retry_after: float = OVERLOAD_RETRY_SECONDS) -> None:
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
