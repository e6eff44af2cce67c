"""What a failed `cryptorec` command tells its user: one line and an exit code.

2 means the input was wrong (a file, a flag, ratings, an id), 3 that something needed is
unavailable (network, store, a service), 1 anything unforeseen (a bug: CRYPTOREC_DEBUG=1
shows its traceback). Secrets never appear: store URLs are not echoed.
"""

from __future__ import annotations

import grpc

from cryptorec.services.client.library import InputError, ReplyError
from cryptorec.services.errors import BadRequestError
from cryptorec.services.rpc.details import details_of
from cryptorec.services.rpc.request_id import request_id_of
from cryptorec.services.store.base import (
    NotFoundError,
    StoreError,
    StoreFullError,
)
from libcryptorec.artifact import ArtifactError
from libcryptorec.data import DatasetError
from libcryptorec.download import ChecksumError, DownloadError

BAD_INPUT, UNAVAILABLE, UNEXPECTED = 2, 3, 1

# gRPC statuses that mean "try again later or elsewhere" rather than "you sent something wrong".
_UNAVAILABLE_STATUSES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
}
_BAD_INPUT_STATUSES = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
}


class CliError(Exception):
    """A failure the command explains itself: `message` is the whole story."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def explain(exc: BaseException) -> tuple[str, int]:
    """(one-line message, exit code) for a failure of a command."""
    if isinstance(exc, CliError):
        return str(exc), exc.code
    if isinstance(exc, DownloadError):
        return str(exc), UNAVAILABLE
    if isinstance(exc, StoreFullError):
        return f"store full: {exc}; free space or raise the store's limit", UNAVAILABLE
    if isinstance(exc, StoreError):
        return f"store unavailable: {exc}; check --store (CRYPTOREC_STORE)", UNAVAILABLE
    if isinstance(exc, grpc.RpcError) and isinstance(exc, grpc.Call):
        return _rpc(exc)
    if isinstance(exc, ReplyError):
        return f"the evaluator's reply was damaged: {exc}; try again", UNAVAILABLE
    if isinstance(exc, DatasetError | ChecksumError | ArtifactError | InputError | BadRequestError):
        return str(exc), BAD_INPUT
    if isinstance(exc, NotFoundError):
        return str(exc.args[0] if exc.args else exc), BAD_INPUT
    if isinstance(exc, ValueError) and "exists already" in str(exc):
        return str(exc), BAD_INPUT
    if isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError):
        return f"{exc.filename or exc}: {exc.strerror or 'cannot open'}", BAD_INPUT
    if isinstance(exc, PermissionError):
        return f"{exc.filename or exc}: permission denied", BAD_INPUT
    return (
        f"unexpected error ({type(exc).__name__}: {str(exc)[:300]}); rerun with "
        "CRYPTOREC_DEBUG=1 for the traceback and report it",
        UNEXPECTED,
    )


# What a user can do about a refusal, by its ErrorInfo reason (services/rpc/details.py).
_ADVICE = {
    "QUOTA_EXCEEDED": "your budget is spent",
    "OVERLOADED": "the service is busy",
    "STORE_FULL": "the service's store is full (the operator is alerted)",
    "STORE_UNAVAILABLE": "the service's store is down",
    "KEY_NOT_FOUND": "the key set expired or was deleted: run the command again to register it",
    "TRANSFER_TOO_SLOW": "the connection is too slow for this request",
}


def _rpc(exc: grpc.Call) -> tuple[str, int]:
    code = exc.code()
    message = (exc.details() or "").strip()
    details = details_of(exc)
    advice = [_ADVICE[details.reason]] if details.reason in _ADVICE else []
    if details.retry_after is not None:
        advice.append(f"try again in {_duration(details.retry_after)}")
    elif code == grpc.StatusCode.UNAVAILABLE:
        advice.append("is the service running and the target right?")
    elif code == grpc.StatusCode.RESOURCE_EXHAUSTED and not advice:
        advice.append("the service is busy; try again later")
    elif code == grpc.StatusCode.UNAUTHENTICATED:
        advice.append("pass the token the operator gave you (--token or CRYPTOREC_TOKEN)")
    fields = ", ".join(f for f, _ in details.fields if f)
    what = f"{code.name} ({details.reason})" if details.reason else code.name
    text = f"{what}: {message}" + (f" [field {fields}]" if fields else "")
    text += "".join(f"; {a}" for a in advice)
    request_id = request_id_of(exc)
    if request_id:
        text += f" (request id {request_id})"
    if code in _UNAVAILABLE_STATUSES:
        return text, UNAVAILABLE
    if code in _BAD_INPUT_STATUSES:
        return text, BAD_INPUT
    return text, UNEXPECTED


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
