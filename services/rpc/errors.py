"""Domain exceptions become gRPC statuses here, at the boundary, and nowhere else: a code, a
message, and machine-readable details (services/rpc/details.py)."""

from __future__ import annotations

import collections
import functools
import logging
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NoReturn, TypeVar

import grpc
from grpc_status import rpc_status

from cryptorec.services.errors import (
    OVERLOAD_RETRY_SECONDS,
    BadRequestError,
    PeerError,
    PermissionDeniedError,
    PreconditionError,
    RefusedError,
    StreamCutError,
    TooLargeError,
    UnauthenticatedError,
)
from cryptorec.services.observability.current import note_failure
from cryptorec.services.rpc.details import ErrorDetails, status_with
from cryptorec.services.store.base import (
    CorruptError,
    InvalidIdError,
    KeyNotFoundError,
    ModelNotFoundError,
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

# When a store outage is likely over (a Redis restart, a Sentinel failover: seconds) and
# when a full store may have room again (an operator, or expiring key sets: minutes).
STORE_RETRY_SECONDS = 5.0
STORE_FULL_RETRY_SECONDS = 60.0


@dataclass(frozen=True)
class Failure:
    """How one kind of exception leaves the server: its status code, its ErrorInfo reason,
    RetryInfo's delay when the exception carries none (None: not retryable), the refusal
    counter's label (RESOURCE_EXHAUSTED only) and, for failures of the server's own
    machinery, the message sent instead of the exception's (which may name internal
    addresses; the log line has it)."""

    kind: type[BaseException]
    code: grpc.StatusCode
    reason: str
    retry_after: float | None = None
    refusal: str | None = None
    public_message: str | None = None


_S = grpc.StatusCode
# First match wins: subclasses before their bases.
FAILURES: tuple[Failure, ...] = (
    Failure(CancelledError, _S.CANCELLED, "CANCELLED"),
    Failure(UnauthenticatedError, _S.UNAUTHENTICATED, "UNAUTHENTICATED"),
    Failure(RefusedError, _S.RESOURCE_EXHAUSTED, "OVERLOADED", OVERLOAD_RETRY_SECONDS, "overload"),
    Failure(TooLargeError, _S.RESOURCE_EXHAUSTED, "TOO_LARGE", None, "too_large"),
    Failure(QuotaExceededError, _S.RESOURCE_EXHAUSTED, "QUOTA_EXCEEDED", None, "quota"),
    Failure(
        StoreFullError,
        _S.RESOURCE_EXHAUSTED,
        "STORE_FULL",
        STORE_FULL_RETRY_SECONDS,
        "store_full",
        "the service's store is full; the operator has been alerted",
    ),
    Failure(PermissionDeniedError, _S.PERMISSION_DENIED, "NOT_OWNER"),
    Failure(PreconditionError, _S.FAILED_PRECONDITION, "FAILED_PRECONDITION"),
    Failure(InvalidCiphertextError, _S.INVALID_ARGUMENT, "INVALID_CIPHERTEXT"),
    Failure(InvalidKeyError, _S.INVALID_ARGUMENT, "INVALID_KEY"),
    Failure(InsecureParametersError, _S.INVALID_ARGUMENT, "INSECURE_PARAMETERS"),
    Failure(InvalidIdError, _S.INVALID_ARGUMENT, "INVALID_ID"),
    Failure(BadRequestError, _S.INVALID_ARGUMENT, "BAD_REQUEST"),
    Failure(KeyNotFoundError, _S.NOT_FOUND, "KEY_NOT_FOUND"),
    Failure(ModelNotFoundError, _S.NOT_FOUND, "MODEL_NOT_FOUND"),
    Failure(NotFoundError, _S.NOT_FOUND, "NOT_FOUND"),
    Failure(
        CorruptError,
        _S.DATA_LOSS,
        "DATA_CORRUPT",
        None,
        None,
        "stored data failed its checksum; the operator has been alerted",
    ),
    Failure(ArtifactError, _S.FAILED_PRECONDITION, "MODEL_UNREADABLE"),
    Failure(
        StoreError,
        _S.UNAVAILABLE,
        "STORE_UNAVAILABLE",
        STORE_RETRY_SECONDS,
        None,
        "the service's store is unavailable",
    ),
)
INTERNAL = Failure(Exception, _S.INTERNAL, "INTERNAL", None, None, "internal error")
# Statuses whose messages come from the server's machinery, not from what the client sent.
_SERVER_SIDE = {_S.UNAVAILABLE, _S.INTERNAL, _S.UNKNOWN, _S.DATA_LOSS}


def failure_of(exc: BaseException) -> Failure:
    """How `exc` leaves the server (INTERNAL for the unexpected)."""
    if isinstance(exc, PeerError):  # a peer's own status, passed on
        code = grpc.StatusCode[exc.status]
        hidden = "a shard of the computation failed" if code in _SERVER_SIDE else None
        retry = STORE_RETRY_SECONDS if code == _S.UNAVAILABLE else None
        return Failure(PeerError, code, "SHARD_FAILED", retry, None, hidden)
    if isinstance(exc, StreamCutError):
        if exc.timed_out:
            return Failure(StreamCutError, _S.DEADLINE_EXCEEDED, "TRANSFER_TOO_SLOW")
        return Failure(StreamCutError, _S.CANCELLED, "CANCELLED")
    for failure in FAILURES:
        if isinstance(exc, failure.kind):
            return failure
    return INTERNAL


def status_for(exc: BaseException) -> grpc.StatusCode:
    """The status code `exc` ends a call with."""
    return failure_of(exc).code


def details_for(exc: BaseException, failure: Failure) -> ErrorDetails:
    """The machine-readable details of a failure: its reason, when to retry, and which
    quota or request field it is about."""
    retry = getattr(exc, "retry_after", None)
    retry = failure.retry_after if retry is None else retry
    quotas: tuple[tuple[str, str], ...] = ()
    metadata: dict[str, str] = {}
    if isinstance(exc, QuotaExceededError):
        quotas = ((exc.subject, _message(exc)),) if exc.subject else ()
        metadata = {"quota": exc.quota} if exc.quota else {}
    fields: tuple[tuple[str, str], ...] = ()
    if isinstance(exc, BadRequestError):
        fields = ((exc.field or "", _message(exc)),)
    return ErrorDetails(failure.reason, retry, metadata, fields, quotas)


def abort_for(context: grpc.ServicerContext, exc: BaseException) -> NoReturn:
    """Abort the call with the status that fits `exc`, with google.rpc details (ErrorInfo,
    RetryInfo, QuotaFailure, BadRequest as they apply). The cause goes to the call's log
    line; failures of the server's own machinery send a fixed message instead of theirs,
    and the unexpected (INTERNAL) is logged with where it happened."""
    failure = failure_of(exc)
    cause = shown(_message(exc), 300)
    if failure is INTERNAL:
        # Where it happened, and the message cut short: a message can carry what a client sent.
        where = "".join(traceback.format_tb(exc.__traceback__)[-8:])
        log.error("internal error %s: %s\n%s", type(exc).__name__, cause, where)
    note_failure(failure.reason, cause, failure.refusal)
    message = failure.public_message or _message(exc)[:500]
    status = rpc_status.to_status(status_with(failure.code, message, details_for(exc, failure)))
    # abort_with_status replaces the trailing metadata: keep what was set (the request id).
    kept = tuple(context.trailing_metadata() or ())
    context.abort_with_status(_Status(failure.code, message, kept + status.trailing_metadata))
    raise AssertionError("context.abort_with_status returned")


def _message(exc: BaseException) -> str:
    # KeyError's str() is the repr of its argument: quoted. Its argument is the message.
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


class _Status(
    collections.namedtuple("_Status", ("code", "details", "trailing_metadata")), grpc.Status
):
    """A status as `abort_with_status` takes it (what grpc_status builds, with our metadata)."""


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
            abort_for(context, _judged(exc, request, context))

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
            abort_for(context, _judged(exc, request, context))

    return wrapper


# How long a request stream that ended short may take to show it was cancelled: gRPC can hand
# the server the empty read of a cancelled stream before the cancellation itself.
CUT_GRACE_SECONDS = 0.25


def _judged(exc: Exception, request: object, context: grpc.ServicerContext) -> Exception:
    """`exc`, unless it blames the input of a request stream whose client left (cancelled):
    then what it is, a cut stream (CANCELLED), not bad input. Only failures wait, and only
    for request streams (`request` an iterator)."""
    if not isinstance(exc, BadRequestError) or not hasattr(request, "__next__"):
        return exc
    ended = threading.Event()
    left = not context.is_active() or not context.add_callback(ended.set)
    if not left and not ended.wait(CUT_GRACE_SECONDS):
        return exc
    cut = StreamCutError(f"the client left before its request was complete ({exc})", False)
    cut.__cause__ = exc
    return cut
