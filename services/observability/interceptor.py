"""Every call observed once, by the outermost server interceptor: its request id (from
`x-request-id` metadata, or a new one, returned in trailing metadata), one log line, its
metrics and a span. What is learnt during the call comes from services/observability/current.py."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from opentelemetry.trace import SpanKind

from cryptorec.services.observability.current import Call, serving
from cryptorec.services.observability.metrics import Metrics
from cryptorec.services.observability.tracing import incoming_context, tracer
from cryptorec.services.rpc.handlers import wrap_behaviour
from cryptorec.services.rpc.intercept import CallInterceptor, Handler, Metadata
from cryptorec.services.rpc.request_id import REQUEST_ID, request_id_from

log = logging.getLogger("cryptorec.access")
QUIET = ("/grpc.health.v1.Health/", "/grpc.reflection.")  # logged at DEBUG only


class Observer(CallInterceptor):
    """The outermost interceptor: every call, refused or served, is counted, timed and logged."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def intercept(
        self, handler: grpc.RpcMethodHandler[Any, Any], full_method: str, metadata: Metadata
    ) -> Handler:
        _, service, method = [*full_method.split("/"), "", ""][:3]
        request_id = request_id_from(metadata.items())
        carrier = {k: v for k, v in metadata.items() if isinstance(v, str)}
        quiet = full_method.startswith(QUIET)
        kind = grpc_type(handler.request_streaming, handler.response_streaming)

        def observed(behaviour: Callable[..., Any], streams: bool) -> Callable[..., Any]:
            def start(context: grpc.ServicerContext) -> Call:
                context.set_trailing_metadata(((REQUEST_ID, request_id),))
                self.metrics.started.labels(kind, service, method).inc()
                return Call(request_id, service, method, context.peer(), grpc_type=kind)

            if streams:

                def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                    call = start(context)
                    with self._observing(call, context, quiet, carrier):
                        for response in behaviour(_counted(request, call), context):
                            call.bytes_out += _size(response)
                            call.messages_out += 1
                            yield response

                return stream

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                call = start(context)
                with self._observing(call, context, quiet, carrier):
                    response = behaviour(_counted(request, call), context)
                    call.bytes_out += _size(response)
                    call.messages_out += 1
                    return response

            return unary

        return wrap_behaviour(handler, observed)

    @contextlib.contextmanager
    def _observing(
        self,
        call: Call,
        context: grpc.ServicerContext,
        quiet: bool,
        carrier: dict[str, str],
    ) -> Iterator[None]:
        labels = (call.service, call.method)
        in_flight = self.metrics.in_flight.labels(*labels)
        in_flight.inc()
        started, failed = time.perf_counter(), False
        parent = incoming_context(carrier)
        name = f"{call.service}/{call.method}"
        with (
            serving(call),
            tracer.start_as_current_span(name, context=parent, kind=SpanKind.SERVER) as span,
        ):
            span.set_attribute("rpc.request_id", call.request_id)
            try:
                yield
            except BaseException:  # GeneratorExit too: the client left mid-stream
                failed = True
                raise
            finally:
                code = _final_code(context, failed)
                seconds = time.perf_counter() - started
                span.set_attribute("rpc.grpc.status_code", code.value[0])
                for key, value in call.fields.items():
                    span.set_attribute(f"cryptorec.{key}", str(value))
                in_flight.dec()
                self._record(call, code, seconds, quiet)

    def _record(self, call: Call, code: grpc.StatusCode, seconds: float, quiet: bool) -> None:
        m, labels = self.metrics, (call.service, call.method)
        typed = (call.grpc_type, *labels)
        m.handled.labels(*typed, code.name).inc()
        m.handling.labels(*typed).observe(seconds)
        m.msg_received.labels(*typed).inc(call.messages_in)
        m.msg_sent.labels(*typed).inc(call.messages_out)
        m.received.labels(*labels).inc(call.bytes_in)
        m.sent.labels(*labels).inc(call.bytes_out)
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            m.refused.labels(*labels, call.refusal or "overload").inc()
        scheme, mode = call.fields.get("scheme"), call.fields.get("mode")
        quoted = call.fields.get("quoted_seconds")
        if scheme and mode and quoted and code == grpc.StatusCode.OK:
            m.quoted.labels(scheme, mode, str(call.fields.get("kind", ""))).set(float(quoted))
        if scheme and mode:
            for name, spent in call.phases.items():
                m.phase.labels(scheme, mode, name).observe(spent)
            if call.method in ("RegisterKeys", "RegisterKeysWhole"):
                outcome = "registered" if code == grpc.StatusCode.OK else "refused"
                m.key_registrations.labels(scheme, mode, outcome).inc()
        version = call.fields.get("model_version")
        if version and code == grpc.StatusCode.OK:
            m.model.info({"version": str(version)})
        log.log(
            _level(code, quiet),
            "%s %s%s",
            call.method,
            code.name,
            f" {call.reason}: {call.cause}" if call.reason else "",
            extra={
                "request_id": call.request_id,
                "service": call.service,
                "method": call.method,
                "code": code.name,
                "duration_ms": round(seconds * 1000, 1),
                "peer": call.peer,
                "bytes_in": call.bytes_in,
                "bytes_out": call.bytes_out,
                **({"reason": call.reason} if call.reason else {}),
                **{k: v for k, v in call.fields.items() if v is not None},
            },
        )


def _level(code: grpc.StatusCode, quiet: bool) -> int:
    """A failed call is a WARNING (with its cause): an operator greps for those; a client
    that cancelled, or a health probe, is not news."""
    if quiet:
        return logging.DEBUG
    ok = code in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED)
    return logging.INFO if ok else logging.WARNING


def _final_code(context: grpc.ServicerContext, failed: bool) -> grpc.StatusCode:
    """The status the call ends with: what the handler set, else OK, or for a behaviour that
    raised without a status UNKNOWN (gRPC's own answer) and CANCELLED if the client left."""
    code = context.code()  # type: ignore[attr-defined]  # grpcio has it; the stubs lag
    if isinstance(code, grpc.StatusCode):
        return code
    if not failed:
        return grpc.StatusCode.OK
    return grpc.StatusCode.UNKNOWN if context.is_active() else grpc.StatusCode.CANCELLED


def grpc_type(request_streaming: bool, response_streaming: bool) -> str:
    """The grpc_type label of a method, as go-grpc-prometheus names it."""
    if request_streaming:
        return "bidi_stream" if response_streaming else "client_stream"
    return "server_stream" if response_streaming else "unary"


def _size(message: Any) -> int:
    return int(message.ByteSize()) if hasattr(message, "ByteSize") else 0


def _counted(request: Any, call: Call) -> Any:
    """The request (or request stream), adding each message's size to the call's bytes in."""
    if not isinstance(request, Iterator):
        call.bytes_in += _size(request)
        call.messages_in += 1
        return request

    def counting() -> Iterator[Any]:
        for message in request:
            call.bytes_in += _size(message)
            call.messages_in += 1
            yield message

    return counting()
