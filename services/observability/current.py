"""The call being served, as the observer sees it: what the servicers and handlers learn along
the way (scheme, mode, model version, client, refusal reason) they `note` here, and the phases
they time. Nothing from a payload is ever recorded: sizes, never contents. No gRPC here, so
handlers may use it."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context

from cryptorec.services.observability.tracing import current_trace_id, tracer


@dataclass
class Call:
    """What is known of one call."""

    request_id: str
    service: str
    method: str
    peer: str
    fields: dict[str, Any] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    refusal: str | None = None
    reason: str | None = None
    cause: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    messages_in: int = 0
    messages_out: int = 0
    grpc_type: str = "unary"


_current: contextvars.ContextVar[Call | None] = contextvars.ContextVar("call", default=None)


def note(**fields: Any) -> None:
    """Record facts about the current call (scheme, mode, model_version, client) for its log
    line and span; nothing happens outside a call."""
    call = _current.get()
    if call is not None:
        call.fields.update(fields)


def note_failure(reason: str, cause: str, refusal: str | None = None) -> None:
    """Why the current call failed: its ErrorInfo `reason`, the `cause` for the log line (never
    a payload) and, for RESOURCE_EXHAUSTED, the refusal counter's label (a small fixed set)."""
    call = _current.get()
    if call is not None:
        call.reason, call.cause, call.refusal = reason, cause, refusal


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Time a phase of the current call (a metric and a span)."""
    started = time.perf_counter()
    with tracer.start_as_current_span(name):
        try:
            yield
        finally:
            call = _current.get()
            if call is not None:
                call.phases[name] = time.perf_counter() - started


class Timer:
    """A phase begun on the serving thread and ended wherever its work ends (a producer
    thread): its seconds go to the call it began in, and its span under that call's span."""

    def __init__(self, name: str) -> None:
        self.name, self.call = name, _current.get()
        self._parent = otel_context.get_current()
        self._started, self._started_ns = time.perf_counter(), time.time_ns()
        self._done = False

    def finish(self) -> None:
        """End the phase (once; later calls do nothing)."""
        if self._done:
            return
        self._done = True
        if self.call is not None:
            self.call.phases[self.name] = time.perf_counter() - self._started
        span = tracer.start_span(self.name, context=self._parent, start_time=self._started_ns)
        span.end()


def request_id() -> str | None:
    """The request id of the call being served, if any."""
    call = _current.get()
    return call.request_id if call is not None else None


@contextlib.contextmanager
def serving(call: Call) -> Iterator[Call]:
    """Make `call` the current one for the code inside (the observer's job)."""
    reset = _current.set(call)
    try:
        yield call
    finally:
        _current.reset(reset)


class RequestIdFilter(logging.Filter):
    """Gives every log record made while serving a call that call's request id and trace id,
    so a handler's own lines (a key registered, an error) join its access line, and the lines
    of one query join across the processes it crossed."""

    def filter(self, record: logging.LogRecord) -> bool:
        call = _current.get()
        if call is not None and not hasattr(record, "request_id"):
            record.request_id = call.request_id
        trace_id = current_trace_id()
        if trace_id is not None and not hasattr(record, "trace_id"):
            record.trace_id = trace_id
        return True
