"""Domain exceptions become gRPC status codes here, at the boundary, and nowhere else."""

from __future__ import annotations

import functools
import logging
import traceback
from collections.abc import Callable, Iterator
from typing import NoReturn, TypeVar

import grpc
from cryptorec.services.errors import BadRequestError, RefusedError, TooLargeError
from cryptorec.services.store.base import (
    CorruptError,
    InvalidIdError,
    NotFoundError,
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


def status_for(exc: BaseException) -> grpc.StatusCode:
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
    message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    context.abort(code, message[:500])
    raise AssertionError("context.abort returned")


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
