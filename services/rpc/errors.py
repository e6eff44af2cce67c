"""Domain exceptions become gRPC status codes here, at the boundary, and nowhere else."""

from __future__ import annotations

import collections
import functools
import logging
import traceback
from collections.abc import Callable, Iterator
from typing import NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from cryptorec.services.errors import (
    BadRequestError,
    PeerError,
    PermissionDeniedError,
    PreconditionError,
    RefusedError,
    StreamCutError,
    TooLargeError,
)
from cryptorec.services.observability.current import note_refusal
from cryptorec.services.store.base import (
    CorruptError,
    InvalidIdError,
    NotFoundError,
    QuotaExceededError,
    StoreError,
    StoreFullError,
    shown,
)
from libcryptorec.artifact import ArtifactError
from libcryptorec.he.errors import (
    CancelledError,
    InsecureParametersError,
    InvalidCiphertextError,
    InvalidKeyError,
)

log = logging.getLogger("cryptorec.rpc")


STATUS_FOR: list[tuple[type[BaseException], grpc.StatusCode]] = [
    (CancelledError, grpc.StatusCode.CANCELLED),
    (RefusedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (TooLargeError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (QuotaExceededError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (PreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (BadRequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidCiphertextError, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidKeyError, grpc.StatusCode.INVALID_ARGUMENT),
    (InsecureParametersError, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidIdError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (StoreFullError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (CorruptError, grpc.StatusCode.DATA_LOSS),
    (ArtifactError, grpc.StatusCode.FAILED_PRECONDITION),
    (StoreError, grpc.StatusCode.UNAVAILABLE),
]


# Why a call was refused with RESOURCE_EXHAUSTED, for the refusal counter's `reason` label.
REFUSAL_FOR: list[tuple[type[BaseException], str]] = [
    (RefusedError, "overload"),
    (QuotaExceededError, "quota"),
    (TooLargeError, "too_large"),
    (StoreFullError, "store_full"),
]


def status_for(exc: BaseException) -> grpc.StatusCode:
    if isinstance(exc, PeerError):  # a peer's own status, passed on
        return grpc.StatusCode[exc.status]
    if isinstance(exc, StreamCutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED if exc.timed_out else grpc.StatusCode.CANCELLED
    for kind, code in STATUS_FOR:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


def abort_for(context: grpc.ServicerContext, exc: BaseException) -> NoReturn:
    """Abort the call with the status that fits `exc` (INTERNAL, logged, for the unexpected)."""
    code = status_for(exc)
    if code == grpc.StatusCode.INTERNAL:
        # Where it happened, and the message cut short: a message can carry what a client sent.
        where = "".join(traceback.format_tb(exc.__traceback__)[-8:])
        log.error("internal error %s: %s\n%s", type(exc).__name__, shown(str(exc), 300), where)
        context.abort(code, "internal error")
    for kind, reason in REFUSAL_FOR:
        if isinstance(exc, kind):
            note_refusal(reason)
            break
    message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        status = with_retry_info(code, message[:500], retry_after)
        # abort_with_status replaces the trailing metadata: keep what was set (the request id).
        kept = tuple(context.trailing_metadata() or ())
        context.abort_with_status(_Status(code, message[:500], kept + status.trailing_metadata))
    context.abort(code, message[:500])
    raise AssertionError("context.abort returned")


class _Status(
    collections.namedtuple("_Status", ("code", "details", "trailing_metadata")), grpc.Status
):
    """A status as `abort_with_status` takes it (what grpc_status builds, with our metadata)."""


def with_retry_info(code: grpc.StatusCode, message: str, seconds: float) -> grpc.Status:
    """A status carrying google.rpc.RetryInfo: when trying again can succeed."""
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(max(0.0, seconds) * 1e9))
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    return rpc_status.to_status(status)


def retry_after(error: grpc.Call) -> float | None:
    """Seconds until retrying can succeed, if the status carries google.rpc.RetryInfo."""
    status = rpc_status.from_call(error)
    for detail in status.details if status is not None else ():
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return float(info.retry_delay.ToNanoseconds()) / 1e9
    return None


Req = TypeVar("Req")
Resp = TypeVar("Resp")
S = TypeVar("S")


def unary(
    fn: Callable[[S, Req, grpc.ServicerContext], Resp],
) -> Callable[[S, Req, grpc.ServicerContext], Resp]:
    """Decorate a unary-response handler: exceptions become precise statuses."""

    @functools.wraps(fn)
    def wrapper(self: S, request: Req, context: grpc.ServicerContext) -> Resp:
        try:
            return fn(self, request, context)
        except Exception as exc:
            abort_for(context, exc)

    return wrapper


def streaming(
    fn: Callable[[S, Req, grpc.ServicerContext], Iterator[Resp]],
) -> Callable[[S, Req, grpc.ServicerContext], Iterator[Resp]]:
    """Decorate a response-streaming handler the same way."""

    @functools.wraps(fn)
    def wrapper(self: S, request: Req, context: grpc.ServicerContext) -> Iterator[Resp]:
        try:
            yield from fn(self, request, context)
        except Exception as exc:
            abort_for(context, exc)

    return wrapper
