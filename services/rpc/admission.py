"""Admission: what a client may hold in one server process, so that idle or slow clients cannot
take it away from everyone else.

* Streams. A request-streaming call (RegisterKeys, Predict, reflection) holds a server thread
  while its client uploads. Each process admits at most `max_streams` of them, at most
  `max_streams_per_connection` on one connection and `max_streams_per_host` from one client
  address; beyond that the call is refused at once with RESOURCE_EXHAUSTED. The server's thread
  pool is larger than `max_streams`, so unary calls and health checks always find a thread.
* Upload deadline. An upload must finish within `upload_grace_seconds` plus the bytes its
  header declares at `upload_min_bytes_per_second`, else the server ends the call with
  DEADLINE_EXCEEDED: an idle stream is closed after the grace period, a large key set over a
  slow link still gets the time it needs.
* Work slots. Encrypted work (loading keys, evaluating) takes one of `work_slots` slots, only
  once its request is complete and valid, and never waits: when all are taken the call is
  refused at once with RESOURCE_EXHAUSTED, so overload never queues.
"""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from cryptorec.services.errors import RefusedError
from cryptorec.services.observability.current import note_refusal
from cryptorec.services.rpc.handlers import wrap_behaviour
from cryptorec.services.settings import default_of
from cryptorec.services.work import WorkSlots

log = logging.getLogger("cryptorec.admission")


@dataclass(frozen=True)
class Limits:
    """The admission settings of one process (services/settings.py has their flags)."""

    max_streams: int = default_of("max_streams")
    max_streams_per_connection: int = default_of("max_streams_per_connection")
    max_streams_per_host: int = default_of("max_streams_per_host")
    work_slots: int = default_of("work_slots")
    upload_grace_seconds: float = default_of("upload_grace")
    upload_min_bytes_per_second: float = default_of("upload_min_rate")

    @property
    def threads(self) -> int:
        """Server threads: every admitted stream, plus room for unary calls and health."""
        return self.max_streams + 8


def peer_host(peer: str) -> str:
    """The client's address without its port ("ipv4:10.0.0.7:51234" -> "ipv4:10.0.0.7")."""
    if peer.startswith(("ipv4:", "ipv6:")):
        return peer.rsplit(":", 1)[0]
    return peer


def _end_with_status(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> None:
    """End a call from another thread with a status of our choosing. The public
    ServicerContext.cancel() always reports CANCELLED; the call object underneath takes a
    code and details (grpcio >= 1.85), which tells a slow client what happened."""
    call = getattr(getattr(context, "_rpc_event", None), "call", None)
    try:
        call.cancel(code.value[0], details)  # type: ignore[union-attr]
    except (AttributeError, TypeError):
        context.cancel()


class Upload:
    """One admitted stream's upload: its deadline moves out as its header declares bytes."""

    def __init__(self, context: grpc.ServicerContext, limits: Limits, watchdog: _Watchdog) -> None:
        self._context, self._limits, self._watchdog = context, limits, watchdog
        self._started = time.monotonic()
        self._done = False
        self.deadline = self._started + limits.upload_grace_seconds
        watchdog.watch(self)

    def pause(self) -> None:
        """The header has arrived and the server checks it (which may mean loading a model
        for many seconds): no deadline runs until `expect`."""
        self.deadline = float("inf")

    def expect(self, declared_bytes: int) -> None:
        """The header announced `declared_bytes`, and the server is ready for them: allow the
        grace period plus the time they take at the slowest rate still served, from now."""
        extra = max(0, declared_bytes) / self._limits.upload_min_bytes_per_second
        self.deadline = time.monotonic() + self._limits.upload_grace_seconds + extra
        self._watchdog.watch(self)

    def finish(self) -> None:
        """The whole request has arrived: no deadline any more."""
        self._done = True

    def expire(self, now: float) -> bool:
        """Called by the watchdog: end the call if its upload is overdue; True if handled."""
        if self._done:
            return True
        if now < self.deadline:
            return False
        self._done = True
        seconds = now - self._started
        log.info("closed an upload still incomplete after %.1f s", seconds)
        _end_with_status(
            self._context,
            grpc.StatusCode.DEADLINE_EXCEEDED,
            f"upload not complete after {seconds:.0f} s (the server allows "
            f"{self._limits.upload_grace_seconds:.0f} s plus the declared bytes at "
            f"{self._limits.upload_min_bytes_per_second / 1e6:.2f} MB/s)",
        )
        return True


class _Watchdog:
    """One thread per process that ends overdue uploads."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Upload]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="upload-watchdog", daemon=True)
        self._thread.start()

    def watch(self, upload: Upload) -> None:
        with self._wake:
            heapq.heappush(self._heap, (upload.deadline, next(self._order), upload))
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._heap:
                    self._wake.wait()
                deadline, _, upload = self._heap[0]
                now = time.monotonic()
                if deadline > now:
                    self._wake.wait(deadline - now)
                    continue
                heapq.heappop(self._heap)
            if not upload.expire(now):
                self.watch(upload)  # its deadline moved out since it was queued


_current_upload: contextvars.ContextVar[Upload | None] = contextvars.ContextVar(
    "upload", default=None
)


def current_upload() -> Upload | None:
    """The upload of the request-streaming call this thread is serving, if any."""
    return _current_upload.get()


class Admission(grpc.ServerInterceptor):
    """Stream caps and upload deadlines for every request-streaming method (an interceptor),
    and the process's work slots (`work`, which the handlers hold while computing)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._total = 0
        self._by_connection: Counter[str] = Counter()  # peer strings carry the client port
        self._by_host: Counter[str] = Counter()
        self.work = WorkSlots(limits.work_slots)
        self._watchdog = _Watchdog()

    @contextlib.contextmanager
    def _stream(self, peer: str) -> Iterator[None]:
        host, limits = peer_host(peer), self.limits
        with self._lock:
            if self._total >= limits.max_streams:
                raise RefusedError(f"this process already serves {limits.max_streams} streams")
            if self._by_connection[peer] >= limits.max_streams_per_connection:
                raise RefusedError(
                    f"at most {limits.max_streams_per_connection} concurrent streams per connection"
                )
            if self._by_host[host] >= limits.max_streams_per_host:
                raise RefusedError(
                    f"at most {limits.max_streams_per_host} concurrent streams per client address"
                )
            self._total += 1
            self._by_connection[peer] += 1
            self._by_host[host] += 1
        try:
            yield
        finally:
            with self._lock:
                self._total -= 1
                for counts, key in ((self._by_connection, peer), (self._by_host, host)):
                    counts[key] -= 1
                    if counts[key] <= 0:
                        del counts[key]

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None or not handler.request_streaming:
            return handler
        return wrap_behaviour(handler, self._admitted)

    def _admitted(self, behaviour: Any, streams: bool) -> Callable[..., Any]:
        if streams:

            def stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
                with self._admit(requests, context) as tracked:
                    yield from behaviour(tracked, context)

            return stream

        def unary(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            with self._admit(requests, context) as tracked:
                return behaviour(tracked, context)

        return unary

    @contextlib.contextmanager
    def _admit(
        self, requests: Iterator[Any], context: grpc.ServicerContext
    ) -> Iterator[Iterator[Any]]:
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(self._stream(context.peer()))
            except RefusedError as exc:
                note_refusal("overload")
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
            upload = Upload(context, self.limits, self._watchdog)
            stack.callback(_current_upload.reset, _current_upload.set(upload))
            stack.callback(upload.finish)
            yield _finishing(requests, upload)


def _finishing(requests: Iterator[Any], upload: Upload) -> Iterator[Any]:
    """The requests, marking the upload finished when the client half-closes."""
    yield from requests
    upload.finish()
