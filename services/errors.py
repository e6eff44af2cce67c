"""Why a service refuses a request, in the services' own terms (no gRPC here):
services/rpc/errors.py turns each into its status code at the boundary."""

from __future__ import annotations


class BadRequestError(ValueError):
    """Malformed or inconsistent: a missing header, an unknown enum, counts that disagree
    (INVALID_ARGUMENT)."""


class TooLargeError(Exception):
    """More than the service accepts for this kind of request (RESOURCE_EXHAUSTED)."""


class RefusedError(Exception):
    """Overload: refused before any work; retrying later can succeed (RESOURCE_EXHAUSTED)."""


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
