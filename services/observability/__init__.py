"""What an operator sees of a server: Prometheus metrics, one log line per call (text or JSON)
with its request id, and OpenTelemetry traces (off unless OTEL_TRACES_EXPORTER says where)."""
