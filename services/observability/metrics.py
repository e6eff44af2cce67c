"""The servers' Prometheus metrics, in a registry of their own (one per server), served on
`--metrics-port` (prometheus-client's HTTP server).

Conventions: the `cryptorec_` prefix (the standard `grpc_server_*` call metrics apart), base
units (seconds, bytes), `_total` counters, and label
values from small fixed sets (gRPC services, methods and status codes, roles, schemes, modes,
phases, reasons, cache kinds): never a key id, a token or a client name. The model version
served is the one label that changes over time, on an info metric only.
"""

from __future__ import annotations

from collections.abc import Hashable
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    start_http_server,
)

# Seconds: from a cached GetModel (milliseconds) to a CKKS accurate or Paillier query (seconds).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


# The grpc_ prefix (as in go-grpc-prometheus) keeps them clear of the `service` and `method`
# labels a Prometheus scrape config may attach to the target.
CALL = ("grpc_service", "grpc_method")
TYPED = ("grpc_type", *CALL)


class Metrics:
    """Every instrument a server updates. Creating one registers them in a new registry."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            r.register(collector)
        self._add_grpc(r)
        self._add_service(r)
        self._add_readiness(r)

    def _add_grpc(self, r: CollectorRegistry) -> None:
        """The standard gRPC server metrics, by the names (and labels) of go-grpc-prometheus
        and py-grpc-prometheus, so that off-the-shelf gRPC dashboards and alerts read them."""
        self.started = Counter(
            "grpc_server_started", "Calls started on the server.", TYPED, registry=r
        )
        self.handled = Counter(
            "grpc_server_handled",
            "Calls completed on the server, whatever their status.",
            (*TYPED, "grpc_code"),
            registry=r,
        )
        self.handling = Histogram(
            "grpc_server_handling_seconds",
            "Time from a call's start to its status.",
            TYPED,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.msg_received = Counter(
            "grpc_server_msg_received", "Request messages received.", TYPED, registry=r
        )
        self.msg_sent = Counter(
            "grpc_server_msg_sent", "Response messages sent.", TYPED, registry=r
        )
        self.in_flight = Gauge(
            "cryptorec_rpc_in_flight", "Calls being served now.", CALL, registry=r
        )
        self.refused = Counter(
            "cryptorec_rpc_refused",
            "Calls refused with RESOURCE_EXHAUSTED, by why: overload (streams, work slots), "
            "quota (key sets, query budget), too_large, store_full.",
            (*CALL, "reason"),
            registry=r,
        )

    def _add_service(self, r: CollectorRegistry) -> None:
        """What the service does: bytes, phases, the model served, its cache."""
        self.received = Counter(
            "cryptorec_rpc_received_bytes", "Request message bytes.", CALL, registry=r
        )
        self.sent = Counter("cryptorec_rpc_sent_bytes", "Response message bytes.", CALL, registry=r)
        self.phase = Histogram(
            "cryptorec_predict_phase_seconds",
            "Predict by phase: receive (the upload), evaluate (the encrypted work), send.",
            ("scheme", "mode", "phase"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model = Info("cryptorec_model", "The model version last served.", registry=r)
        self.cache_hits = Counter(
            "cryptorec_cache_hits", "Cache lookups answered from memory.", ("kind",), registry=r
        )
        self.cache_misses = Counter(
            "cryptorec_cache_misses", "Cache lookups that had to build.", ("kind",), registry=r
        )
        self.cache_bytes = Gauge(
            "cryptorec_cache_bytes", "Bytes the evaluator's cache holds.", registry=r
        )

    def _add_readiness(self, r: CollectorRegistry) -> None:
        """Readiness, the store's state, what queries are quoted to cost, key registrations."""
        self.ready = Gauge(
            "cryptorec_ready",
            "1 while the server is ready to serve its role (its readiness), else 0.",
            ("role",),
            registry=r,
        )
        self.store_up = Gauge(
            "cryptorec_store_up",
            "1 while the store answers (checked every 2 s), else 0.",
            registry=r,
        )
        self.quoted = Gauge(
            "cryptorec_quoted_seconds",
            "What one query costs the server, as measured when the model version was published "
            "(GetModel's quote; else the backend's own nominal cost), for the version last "
            "served per scheme, mode and kind: latency alerts compare the evaluate phase with it.",
            ("scheme", "mode", "kind"),
            registry=r,
        )
        self.store_lost_data = Gauge(
            "cryptorec_store_lost_data",
            "1 while the store answers without the current model this process saw in it "
            "(flushed, or a new empty volume), else 0.",
            registry=r,
        )
        self.store_has_model = Gauge(
            "cryptorec_store_has_model",
            "1 while the store holds a current model version, 0 while it answers without one "
            "(nothing published yet, or its data was lost).",
            registry=r,
        )
        self.key_registrations = Counter(
            "cryptorec_key_registrations",
            "Key set registrations, by outcome (registered, refused).",
            ("scheme", "mode", "outcome"),
            registry=r,
        )

    def cache_lookup(self, key: Hashable, hit: bool) -> None:
        """Count one cache lookup by the kind of entry (the first element of its key)."""
        kind = CACHE_KINDS.get(key[0] if isinstance(key, tuple) and key else None, "other")
        (self.cache_hits if hit else self.cache_misses).labels(kind).inc()

    def serve(self, port: int, host: str = "0.0.0.0") -> WSGIServer:
        """Serve /metrics on host:port (0: a free port) from a daemon thread; the server
        (`server_address[1]` is its port, `shutdown()` stops it)."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return server


# Cache entries by kind, for the hit and miss counters (the evaluator's cache keys start
# with these).
CACHE_KINDS: dict[object, str] = {"model": "model", "prepared": "encoding", "bound": "keys"}
