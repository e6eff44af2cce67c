"""Request ids: the `x-request-id` metadata that ties a client's call to the server's log
line, trace and metrics. Clients send one (the client library a new one per call), servers
keep a sane one or make their own, and return it in trailing metadata."""

from __future__ import annotations

import re
import uuid
from typing import Any

import grpc

REQUEST_ID = "x-request-id"
# What a server accepts from a caller: short, and nothing a log line could be forged with.
_SANE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def new_request_id() -> str:
    """A fresh random request id (32 hex digits)."""
    return uuid.uuid4().hex


def request_id_from(metadata: Any) -> str:
    """The `x-request-id` in `metadata` ((key, value) pairs) if it is a sane one, else a new
    one."""
    for key, value in metadata or ():
        if key == REQUEST_ID and isinstance(value, str) and _SANE.match(value):
            return value
    return new_request_id()


def request_id_of(call: grpc.Call) -> str | None:
    """The request id a server returned with a finished call (or its error), if any."""
    try:
        metadata = call.trailing_metadata() or ()
    except Exception:  # a call that never reached a server has none to give
        return None
    for key, value in metadata:
        if key == REQUEST_ID:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None
