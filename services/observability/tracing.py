"""OpenTelemetry traces, off by default and configured by the standard variables:
OTEL_TRACES_EXPORTER (`otlp` or `console`; unset or `none`: off), OTEL_EXPORTER_OTLP_ENDPOINT
and friends (read by the OTLP exporter itself), OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
(read by the SDK's resource). With tracing off, spans are the API's no-ops.

Either way every call has a trace id: the W3C `traceparent` a caller sends (metadata or an
HTTP header through the web front), or a new one. It is in every log line of the call and in
the calls an evaluator makes to its shard peers, so one query's lines join across processes.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)

tracer = trace.get_tracer("cryptorec")


def configure(default_service_name: str) -> bool:
    """Install a tracer provider if OTEL_TRACES_EXPORTER asks for one; whether it did."""
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower()
    if kind in ("", "none") or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter: SpanExporter
    if kind == "console":
        exporter = ConsoleSpanExporter()
    elif kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        raise ValueError(f"OTEL_TRACES_EXPORTER={kind!r}: this server offers otlp, console, none")
    name = os.environ.get("OTEL_SERVICE_NAME", default_service_name)
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    processor = SimpleSpanProcessor(exporter) if kind == "console" else BatchSpanProcessor(exporter)
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return True


def incoming_context(metadata: Mapping[str, str]) -> otel_context.Context:
    """The trace context a call continues: the caller's `traceparent` (W3C Trace Context),
    or, without one and with tracing off, a new trace of its own (with tracing on, the
    call's span starts one)."""
    parent = propagate.extract(metadata)
    if trace.get_current_span(parent).get_span_context().is_valid:
        return parent
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return parent
    started = trace.SpanContext(
        trace_id=random.getrandbits(128) or 1,
        span_id=random.getrandbits(64) or 1,
        is_remote=False,
        trace_flags=trace.TraceFlags(trace.TraceFlags.DEFAULT),
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(started), parent)


def outgoing_metadata() -> tuple[tuple[str, str], ...]:
    """The current trace context as metadata for a call this process makes (traceparent)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return tuple(carrier.items())


def current_trace_id() -> str | None:
    """The trace id of the current span as 32 hex digits (None outside any trace)."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
