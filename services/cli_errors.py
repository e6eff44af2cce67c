"""What a failed `cryptorec` command tells its user: one line and an exit code.

2 means the input was wrong (a file, a flag, ratings, an id), 3 that something needed is
unavailable (network, store, a service), 1 anything unforeseen (a bug: CRYPTOREC_DEBUG=1
shows its traceback). Secrets never appear: store URLs are not echoed.
"""

from __future__ import annotations

import grpc

from cryptorec.services.client.library import InputError, ReplyError
from cryptorec.services.rpc.errors import retry_after
from cryptorec.services.rpc.request_id import request_id_of
from cryptorec.services.store.base import (
    InvalidIdError,
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
    if isinstance(exc, DatasetError | ChecksumError | ArtifactError | InputError | InvalidIdError):
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


def _rpc(exc: grpc.Call) -> tuple[str, int]:
    code = exc.code()
    details = (exc.details() or "").strip()
    wait = retry_after(exc)
    if code == grpc.StatusCode.UNAVAILABLE:
        advice = "is the service running and the target right?"
    elif wait is not None:
        advice = f"try again in {_duration(wait)}"
    elif code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        advice = "the service is busy; try again later"
    elif code == grpc.StatusCode.UNAUTHENTICATED:
        advice = "pass the token the operator gave you (--token or CRYPTOREC_TOKEN)"
    else:
        advice = ""
    message = f"{code.name}: {details}" + (f"; {advice}" if advice else "")
    request_id = request_id_of(exc)
    if request_id:
        message += f" (request id {request_id})"
    if code in _UNAVAILABLE_STATUSES:
        return message, UNAVAILABLE
    if code in _BAD_INPUT_STATUSES:
        return message, BAD_INPUT
    return message, UNEXPECTED


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
