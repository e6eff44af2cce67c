"""Admission: what a client may hold in one server process, so that idle, slow or greedy
clients cannot take it away from everyone else.

* Calls in flight. Every call but a health check holds a server thread while it runs, and a
  server-streaming call also while its replies are sent. Each process serves at most
  `max_calls` at once, at most `max_calls_per_connection` on one connection,
  `max_calls_per_host` from one client address and `max_calls_per_client` for one
  authenticated client; beyond that a call is refused at once with RESOURCE_EXHAUSTED. The
  thread pool has `max_calls` + HEALTH_THREADS threads, so health checks always find one,
  whatever the other calls are doing. Calls the web front forwards count against the
  browser's address (which only the front, on its private socket, may tell).
* Transfers. An upload must arrive within `transfer_grace_seconds` plus its declared bytes
  at `transfer_min_bytes_per_second`, and each reply message must be taken by the client
  within the grace period plus its bytes at that rate; otherwise the call ends with
  DEADLINE_EXCEEDED and its thread is free again. A client that stops reading (and answers
  PINGs but never opens its flow-control window) holds a thread for that long, not for the
  connection's life.
* Upload memory. The bytes of every upload being received and checked in a process stay
  within `upload_budget_bytes` (`UploadBudget`); an upload that does not fit is refused at
  once with RESOURCE_EXHAUSTED (and when to retry), never queued.
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

from cryptorec.services.errors import RefusedError, StreamCutError, TooLargeError
from cryptorec.services.rpc.auth import current_client
from cryptorec.services.rpc.errors import abort_for
from cryptorec.services.rpc.handlers import wrap_behaviour
from cryptorec.services.rpc.intercept import CallInterceptor, Handler, Metadata
from cryptorec.services.settings import default_of
from cryptorec.services.work import WorkSlots

log = logging.getLogger("cryptorec.admission")

HEALTH = "/grpc.health.v1.Health/"
# Threads beyond `max_calls`: health checks (and calls being refused) always find one.
HEALTH_THREADS = 8
# The browser's address, as the web front forwards a call (trusted from its Unix socket only).
CLIENT_ADDRESS = "x-cryptorec-client-address"


@dataclass(frozen=True)
class Limits:
    """The admission settings of one process (services/settings.py has their flags)."""

    max_calls: int = default_of("max_calls")
    max_calls_per_connection: int = default_of("max_calls_per_connection")
    max_calls_per_host: int = default_of("max_calls_per_host")
    max_calls_per_client: int = default_of("max_calls_per_client")
    work_slots: int = default_of("work_slots")
    transfer_grace_seconds: float = default_of("transfer_grace_seconds")
    transfer_min_bytes_per_second: float = default_of("transfer_min_bytes_per_second")
    upload_budget_bytes: int = default_of("upload_budget_bytes")

    @property
    def threads(self) -> int:
        """Server threads: every admitted call, plus room for health checks."""
        return self.max_calls + HEALTH_THREADS

    def transfer_seconds(self, nbytes: int) -> float:
        """How long `nbytes` may take to cross: the grace period plus the slowest rate."""
        return self.transfer_grace_seconds + max(0, nbytes) / self.transfer_min_bytes_per_second


def peer_host(peer: str) -> str:
    """The client's address without its port ("ipv4:10.0.0.7:51234" -> "ipv4:10.0.0.7")."""
    if peer.startswith(("ipv4:", "ipv6:")):
        return peer.rsplit(":", 1)[0]
    return peer


def _end_with_status(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> None:
    """End a call from another thread with a status of our choosing. The public
    ServicerContext.cancel() always reports CANCELLED; the call object underneath takes a
    code and details (grpcio >= 1.85), which tells a slow client what happened. Ending a call
    also frees a thread blocked sending it a reply (tests/test_slow_clients.py)."""
    call = getattr(getattr(context, "_rpc_event", None), "call", None)
    try:
        call.cancel(code.value[0], details)  # type: ignore[union-attr]
    except (AttributeError, TypeError):
        context.cancel()


class Transfer:
    """A deadline for bytes crossing the connection (an upload, or one reply message), which
    the watchdog enforces by ending the call with DEADLINE_EXCEEDED."""

    def __init__(
        self, context: grpc.ServicerContext, limits: Limits, watchdog: _Watchdog, what: str
    ) -> None:
        self._context, self._limits, self._watchdog, self.what = context, limits, watchdog, what
        self._started = time.monotonic()
        self._done = False
        self.expired = False
        self.deadline = float("inf")

    def expect(self, nbytes: int) -> None:
        """`nbytes` are to cross now: allow the grace period plus the time they take at the
        slowest rate still served."""
        self._started = time.monotonic()
        self.deadline = self._started + self._limits.transfer_seconds(nbytes)
        self._watchdog.watch(self)

    def pause(self) -> None:
        """Nothing is crossing (the server is working, e.g. checking an upload's header,
        which may mean loading a model for many seconds): no deadline runs until `expect`."""
        self.deadline = float("inf")

    def finish(self) -> None:
        """The transfer is over for good: no deadline any more."""
        self._done = True

    def expire(self, now: float) -> bool:
        """Called by the watchdog: end the call if the transfer is overdue; True if handled."""
        if self._done:
            return True
        if now < self.deadline:
            return False
        self._done = self.expired = True
        seconds = now - self._started
        log.info("ended a call whose %s was still incomplete after %.1f s", self.what, seconds)
        _end_with_status(
            self._context,
            grpc.StatusCode.DEADLINE_EXCEEDED,
            f"{self.what} not complete after {seconds:.0f} s (the server allows "
            f"{self._limits.transfer_grace_seconds:.0f} s plus the bytes at "
            f"{self._limits.transfer_min_bytes_per_second / 1e6:.2f} MB/s)",
        )
        return True


class _Watchdog:
    """One thread per process that ends overdue transfers."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Transfer]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="transfer-watchdog", daemon=True)
        self._thread.start()

    def watch(self, transfer: Transfer) -> None:
        """Check `transfer` at its current deadline (each `expect` adds an entry; earlier ones
        go stale and are dropped)."""
        with self._wake:
            heapq.heappush(self._heap, (transfer.deadline, next(self._order), transfer))
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._heap:
                    self._wake.wait()
                deadline, _, transfer = self._heap[0]
                now = time.monotonic()
                if deadline > now:
                    self._wake.wait(deadline - now)
                    continue
                heapq.heappop(self._heap)
            if deadline == transfer.deadline:  # else stale: a later expect queued its own
                transfer.expire(now)


class UploadBudget:
    """Bytes of the uploads one process holds at once (received, copied and checked), within
    `limit`; an upload that does not fit is refused at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held = 0
        self._lock = threading.Lock()

    @property
    def held(self) -> int:
        return self._held

    @contextlib.contextmanager
    def reserve(self, nbytes: int, what: str) -> Iterator[None]:
        """Hold `nbytes` of the budget for the block; RefusedError at once if they do not fit
        beside what other uploads hold, TooLargeError if they never could."""
        with self._lock:
            if nbytes > self.limit:  # never fits: retrying cannot help
                raise TooLargeError(
                    f"{what} needs {nbytes / 1e6:.0f} MB to receive and check, over this "
                    f"process' upload budget of {self.limit / 1e6:.0f} MB"
                )
            if self._held + nbytes > self.limit:
                raise RefusedError(
                    f"this process is receiving {self._held / 1e6:.0f} MB of uploads; "
                    f"{what} needs {nbytes / 1e6:.0f} MB more than its budget of "
                    f"{self.limit / 1e6:.0f} MB allows",
                    retry_after=2.0,
                )
            self._held += nbytes
        try:
            yield
        finally:
            with self._lock:
                self._held -= nbytes


_current_upload: contextvars.ContextVar[Transfer | None] = contextvars.ContextVar(
    "upload", default=None
)


def pause_upload() -> None:
    """Stop the transfer deadline of the upload this thread serves (if it serves one) while
    the server, not the client, is working: checking a header before the bytes come."""
    upload = _current_upload.get()
    if upload is not None:
        upload.pause()


@dataclass(frozen=True)
class UploadShare:
    """How one service's uploads hold the process' upload budget: `per_byte` bytes of memory
    for each byte an upload declares (what is received and what is loaded from it), named
    `what` in refusals."""

    budget: UploadBudget
    per_byte: int
    what: str

    @contextlib.contextmanager
    def holding(self, declared: int) -> Iterator[None]:
        """Hold the memory an upload of `declared` bytes needs for the block (refused at once
        if it does not fit), and give a streamed upload's transfer deadline those bytes to
        expect."""
        with self.budget.reserve(self.per_byte * declared, self.what):
            upload = _current_upload.get()
            if upload is not None:
                upload.expect(declared)
            yield


_current_address: contextvars.ContextVar[str] = contextvars.ContextVar("address", default="")


def current_address() -> str:
    """The client address of the call this thread is serving (a browser's, for calls the web
    front forwards); "" outside a call."""
    return _current_address.get()


@dataclass(frozen=True)
class _Holder:
    """Who a call is counted against: its connection (None for calls the web front
    forwards, whose connections the front limits), address and client."""

    connection: str | None
    host: str
    client: str | None


class Admission(CallInterceptor):
    """Caps on calls in flight and transfer deadlines for every call but health checks (an
    interceptor, after authentication), and the process's work slots (`work`) and upload
    budget (`budget`), which the handlers hold."""

    passes = (HEALTH,)

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._total = 0
        self._by: dict[str, Counter[str]] = {k: Counter() for k in ("connection", "host", "client")}
        self.work = WorkSlots(limits.work_slots)
        self.budget = UploadBudget(limits.upload_budget_bytes)
        self._watchdog = _Watchdog()

    def intercept(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str, metadata: Metadata
    ) -> Handler:
        value = metadata.get(CLIENT_ADDRESS)
        forwarded = value if isinstance(value, str) else None
        uploads = handler.request_streaming
        return wrap_behaviour(
            handler, lambda b, streams: self._admitted(b, streams, uploads, forwarded)
        )

    def _admitted(
        self, behaviour: Any, streams: bool, uploads: bool, forwarded: str | None
    ) -> Callable[..., Any]:
        if streams:

            def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                with self._admit(request, context, uploads, forwarded) as tracked:
                    reply = Transfer(context, self.limits, self._watchdog, "reply")
                    try:
                        for response in behaviour(tracked, context):
                            # gRPC asks for the next response only once this one is sent.
                            reply.expect(response.ByteSize())
                            yield response
                            reply.pause()
                    finally:
                        reply.finish()

            return stream

        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            with self._admit(request, context, uploads, forwarded) as tracked:
                return behaviour(tracked, context)

        return unary

    @contextlib.contextmanager
    def _admit(
        self,
        request: Any,
        context: grpc.ServicerContext,
        uploads: bool,
        forwarded: str | None,
    ) -> Iterator[Any]:
        with contextlib.ExitStack() as stack:
            holder = self._holder(context, forwarded)
            try:
                stack.enter_context(self._call(holder))
            except RefusedError as exc:
                abort_for(context, exc)
            stack.callback(_current_address.reset, _current_address.set(holder.host))
            if not uploads:
                yield request
                return
            upload = Transfer(context, self.limits, self._watchdog, "upload")
            upload.expect(0)  # the header must come within the grace period
            stack.callback(_current_upload.reset, _current_upload.set(upload))
            stack.callback(upload.finish)
            yield _finishing(request, upload, context)

    @staticmethod
    def _holder(context: grpc.ServicerContext, forwarded: str | None) -> _Holder:
        peer = context.peer()
        client = current_client()
        name = client.name if client is not None else None
        # Only this process' web front reaches the private Unix socket.
        if forwarded and peer.startswith("unix:"):
            return _Holder(None, f"web:{forwarded[:64]}", name)
        return _Holder(peer, peer_host(peer), name)

    @contextlib.contextmanager
    def _call(self, holder: _Holder) -> Iterator[None]:
        limits = self.limits
        keys = {"connection": holder.connection, "host": holder.host, "client": holder.client}
        caps = {
            "connection": (limits.max_calls_per_connection, "per connection"),
            "host": (limits.max_calls_per_host, "per client address"),
            "client": (limits.max_calls_per_client, "per client"),
        }
        with self._lock:
            if self._total >= limits.max_calls:
                raise RefusedError(f"this process already serves {limits.max_calls} calls")
            for kind, key in keys.items():
                cap, where = caps[kind]
                if key is not None and self._by[kind][key] >= cap:
                    raise RefusedError(f"at most {cap} calls at once {where}")
            self._total += 1
            for kind, key in keys.items():
                if key is not None:
                    self._by[kind][key] += 1
        try:
            yield
        finally:
            with self._lock:
                self._total -= 1
                for kind, key in keys.items():
                    if key is not None:
                        self._by[kind][key] -= 1
                        if self._by[kind][key] <= 0:
                            del self._by[kind][key]


def _finishing(
    requests: Iterator[Any], upload: Transfer, context: grpc.ServicerContext
) -> Iterator[Any]:
    """The requests, marking the upload finished when the client half-closes; StreamCutError
    if the stream ends early (the client left, or the watchdog cut a late upload). A call
    ended while a read is pending can look like a half-close (grpc sees the empty read
    before the cancellation), so an end is a half-close only while the call is alive."""
    cut = StreamCutError(
        "the request stream ended before the request did (the client cancelled, was too "
        "slow, or sent a message over the size limit)",
        timed_out=False,
    )
    try:
        yield from requests
    except grpc.RpcError:
        cut.timed_out = upload.expired
        raise cut from None
    if upload.expired or not context.is_active():
        cut.timed_out = upload.expired
        raise cut
    upload.finish()
