"""OpenTelemetry traces, off by default and configured by the standard variables:
OTEL_TRACES_EXPORTER (`otlp` or `console`; unset or `none`: off), OTEL_EXPORTER_OTLP_ENDPOINT
and friends (read by the OTLP exporter itself), OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
(read by the SDK's resource). With tracing off, spans are the API's no-ops."""

from __future__ import annotations

import os

from opentelemetry import trace
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
