"""Build and run the gRPC server for one or more roles, with health checking, reflection and
graceful shutdown. Every option comes from services/rpc/options.py."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIServer

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cryptorec.services.accounts.servicer import AccountServicer
from cryptorec.services.app.readiness import StoreWatch, look
from cryptorec.services.credentials import token_sha256
from cryptorec.services.evaluator.handler import EvaluatorHandler
from cryptorec.services.evaluator.servicer import EvaluatorServicer
from cryptorec.services.evaluator.shard_servicer import ShardServicer
from cryptorec.services.evaluator.shards.peers import Peers, PeerTls
from cryptorec.services.keys.handler import KeyHandler
from cryptorec.services.keys.servicer import KeyServicer
from cryptorec.services.models.handler import ModelHandler
from cryptorec.services.models.servicer import ModelServicer
from cryptorec.services.observability.interceptor import Observer
from cryptorec.services.observability.metrics import Metrics
from cryptorec.services.rpc import options
from cryptorec.services.rpc.admission import Admission, Limits
from cryptorec.services.rpc.auth import Authenticator
from cryptorec.services.rpc.tls import ServerTls
from cryptorec.services.settings import default_of
from cryptorec.services.store.base import NotFoundError, Store, StoreError
from cryptorec.services.versions import served_versions
from cryptorec.services.web.guard import GuardConfig
from cryptorec.services.work import WorkSlots
from cryptorec.v1 import (
    account_service_pb2,
    evaluator_service_pb2,
    key_service_pb2,
    model_service_pb2,
)
from cryptorec.v1 import account_service_pb2_grpc as account_grpc
from cryptorec.v1 import evaluator_service_pb2_grpc as ev_grpc
from cryptorec.v1 import key_service_pb2_grpc as key_grpc
from cryptorec.v1 import model_service_pb2_grpc as model_grpc
from cryptorec.v1 import shard_service_pb2_grpc as shard_grpc
from libcryptorec.he import registry

if TYPE_CHECKING:
    from cryptorec.services.web.server import WebConfig, WebServer

log = logging.getLogger("cryptorec.server")


@dataclass(frozen=True)
class Parts:
    """What a server's services share: the store, admission (stream caps and work slots), the
    configuration and the metrics."""

    store: Store
    admission: Admission
    config: ServerConfig
    metrics: Metrics
    # What to close when the server stops (peers' channels).
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    # What to do when the current model changes, before readiness says so (warm caches).
    on_model: list[Callable[[], None]] = field(default_factory=list)


@dataclass(frozen=True)
class Role:
    """One service a server can run: its full gRPC name, how to add it to a server and
    whether it is ready only with a current model in the store."""

    name: str
    service: str
    add: Callable[[grpc.Server, Parts], None]
    needs_model: bool = True


# Health service names. Liveness says the process serves and stays SERVING through a store
# outage, so the kubelet never restarts pods for Redis' sake; readiness (one name per role,
# and "" for the whole server) follows the store, so an unusable pod leaves the rotation.
LIVENESS = "liveness"


@dataclass(frozen=True)
class ServerConfig:
    """What an operator tunes per deployment (services/settings.py: flags and variables)."""

    limits: Limits = field(default_factory=Limits)
    auth: bool = default_of("auth")
    cache_bytes: int = default_of("cache_bytes")
    key_ttl_seconds: int = default_of("key_ttl_seconds")
    # New key sets per client address and rolling day without authentication.
    registrations_per_address: int = default_of("registrations_per_address")
    # Store memory key sets may not take: room for the next model version.
    model_reserve_bytes: int = default_of("model_reserve_bytes")
    # "scheme/mode" backends each served model is encoded for before the evaluator is ready.
    warm: tuple[str, ...] = default_of("warm")
    drain_seconds: float = default_of("drain_seconds")
    # Item shards: the evaluators that compute them (None: all here), their shared secret and
    # how to reach them over TLS.
    shard_peers: str | None = None
    peer_secret: str | None = None
    peer_tls: PeerTls | None = None
    observe: bool = default_of("observe")
    # /metrics port; 0 = none. (`cryptorec serve` defaults to 9464, the port OpenTelemetry
    # and Prometheus exporters conventionally use; embedded servers and tests need none.)
    metrics_port: int = 0
    metrics_host: str = "0.0.0.0"
    # Every `serve` setting's value by name (services/settings.py), for whoever declared one
    # and reads it here: a backend's own option, a plug-in's.
    options: Mapping[str, Any] = field(default_factory=dict)


def _add_keys(server: grpc.Server, p: Parts) -> None:
    c = p.config
    handler = KeyHandler(
        p.store,
        c.key_ttl_seconds,
        p.admission.work,
        c.registrations_per_address,
        c.model_reserve_bytes,
    )
    key_grpc.add_KeyServiceServicer_to_server(KeyServicer(handler, p.admission.budget), server)


def _add_models(server: grpc.Server, p: Parts) -> None:
    servicer = ModelServicer(ModelHandler(p.store))
    p.on_model.append(servicer.warm)
    model_grpc.add_ModelServiceServicer_to_server(servicer, server)


def _add_evaluator(server: grpc.Server, p: Parts) -> None:
    c = p.config
    peers = None
    if c.shard_peers:
        peers = Peers(c.shard_peers, secret=c.peer_secret, tls=c.peer_tls)
        p.on_stop.append(peers.close)
    handler = EvaluatorHandler(
        p.store,
        p.admission.work,
        c.cache_bytes,
        c.options,
        on_cache_lookup=p.metrics.cache_lookup,
        peers=peers,
    )
    p.metrics.cache_bytes.set_function(lambda: handler.engine.cache.total)
    p.on_model.append(_warming(handler, c.warm))
    servicer = EvaluatorServicer(handler, p.admission.budget)
    ev_grpc.add_EvaluatorServiceServicer_to_server(servicer, server)
    # The evaluators' own service: a partial product decrypts to rows of the model, so it is
    # served only to holders of the peers' secret, and not at all without one.
    if c.peer_secret:
        shard_grpc.add_ShardServiceServicer_to_server(ShardServicer(handler), server)


def _warming(handler: EvaluatorHandler, names: tuple[str, ...]) -> Callable[[], None]:
    """What the evaluator does when the current model changes: encode the served models
    (services/versions.py: served_versions) for the `names` ("scheme/mode") backends, so no
    client's first query pays for the encoding."""
    backends = [registry.named(name) for name in names]

    def warm() -> None:
        started = time.perf_counter()
        served = served_versions(handler.engine.versions)
        encoded = {v: handler.warm(v, backends) for v in served}
        seconds = time.perf_counter() - started
        log.info(
            "prepared %s in %.1f s",
            "; ".join(f"{v} for {', '.join(b) or 'nothing'}" for v, b in encoded.items()),
            seconds,
            extra={"versions": served, "seconds": round(seconds, 2)},
        )

    return warm


def _service_name(module: Any, name: str) -> str:
    return str(module.DESCRIPTOR.services_by_name[name].full_name)


ACCOUNT_SERVICE = _service_name(account_service_pb2, "AccountService")

# Every service a server can run, by role name (`cryptorec serve --role`).
ROLES: dict[str, Role] = {
    r.name: r
    for r in (
        Role("key", _service_name(key_service_pb2, "KeyService"), _add_keys, needs_model=False),
        Role("model", _service_name(model_service_pb2, "ModelService"), _add_models),
        Role("evaluator", _service_name(evaluator_service_pb2, "EvaluatorService"), _add_evaluator),
    )
}


@dataclass
class Running:
    """A started server: its port, health servicer and the roles it serves."""

    server: grpc.Server
    port: int
    health: health.HealthServicer
    roles: tuple[str, ...]
    store: Store
    config: ServerConfig
    metrics: Metrics
    health_server: grpc.Server | None = None
    health_port: int = 0
    metrics_server: WSGIServer | None = None
    web: WebServer | None = None  # the gRPC-web front, with --web-port
    work: WorkSlots | None = None  # the process' work slots (HE work holds one)
    watch: StoreWatch | None = None  # what readiness follows
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    on_model: list[Callable[[], None]] = field(default_factory=list)

    @property
    def metrics_port(self) -> int:
        """The port /metrics is served on (0: none)."""
        return int(self.metrics_server.server_address[1]) if self.metrics_server else 0

    def set_serving(self, serving: bool) -> None:
        """Readiness: every role's name and the overall "" (liveness is not touched)."""
        self._set({role: serving for role in self.roles})

    def set_ready(self, store_up: bool, has_model: bool) -> None:
        """Readiness from the store: a role is ready while the store answers and, if it
        serves a model, holds a current one; the whole server ("") while every role is."""
        self._set({r: store_up and (has_model or not ROLES[r].needs_model) for r in self.roles})

    def _set(self, ready: dict[str, bool]) -> None:
        for role, ok in ready.items():
            self.metrics.ready.labels(role).set(1 if ok else 0)
            self.health.set(ROLES[role].service, _SERVING if ok else _NOT_SERVING)
        self.health.set("", _SERVING if all(ready.values()) else _NOT_SERVING)

    def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING at once, refuse new calls, let in-flight ones finish within
        `grace` seconds (default: the configured drain time)."""
        self.set_serving(False)
        self.health.set(LIVENESS, _NOT_SERVING)
        # Both ports drain at once: browsers' in-flight calls are gRPC calls underneath, which
        # the gRPC server lets finish while it refuses new ones.
        if self.web is not None:
            self.web.begin_stop()
        self.server.stop(self.config.drain_seconds if grace is None else grace).wait()
        if self.web is not None:
            self.web.stop()
        if self.health_server is not None:
            self.health_server.stop(0)
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
        for close in self.on_stop:
            close()


_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def start(
    roles: tuple[str, ...],
    store: Store,
    port: int = 0,
    host: str = "127.0.0.1",
    tls: ServerTls | None = None,
    health_port: int | None = None,
    config: ServerConfig = ServerConfig(),
    web: WebConfig | None = None,
) -> Running:
    """Start a server for `roles` on host:port (0 = a free port) and return it.

    With `tls`, every RPC needs TLS (and a client certificate if tls.client_ca is set); since
    kubelet's gRPC probes speak plaintext, health checking alone is then also served without
    TLS on `health_port` (0 = a free port). With `web`, a gRPC-web front for browsers
    forwards to this server over a private Unix socket (services/web/server.py).
    """
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; choose from {ROLES}")
    if config.shard_peers and not config.peer_secret:
        raise ValueError(
            "shard peers need the peers' secret (--peer-secret): without it anyone could ask "
            "an evaluator for partial products, which decrypt to rows of the model"
        )
    parts = Parts(store, Admission(config.limits), config, Metrics())
    server = _grpc_server(parts)
    admission, metrics = parts.admission, parts.metrics
    for role in roles:
        ROLES[role].add(server, parts)
    # Every role tells a client its own usage: whichever replica it reaches reads the store.
    account_grpc.add_AccountServiceServicer_to_server(AccountServicer(store), server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [ROLES[r].service for r in roles] + [ACCOUNT_SERVICE, health.SERVICE_NAME]
    names.append(reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    address = f"{host}:{port}"
    bound = (
        server.add_secure_port(address, tls.credentials())
        if tls
        else server.add_insecure_port(address)
    )
    front = None
    if web is not None:
        from cryptorec.services.web.server import WebServer

        guard = GuardConfig(
            authenticate=_token_check(store) if config.auth else None,
            budget=admission.budget,
            limits=config.limits,
        )
        front = WebServer(web, guard, served={ROLES[r].service for r in roles} | {ACCOUNT_SERVICE})
        server.add_insecure_port(front.grpc_target)
    server.start()
    running = Running(
        server,
        bound,
        health_servicer,
        tuple(roles),
        store,
        config,
        metrics,
        work=admission.work,
        on_stop=parts.on_stop,
        on_model=parts.on_model,
    )
    if front is not None:
        running.web = front.start()
    if config.observe and config.metrics_port:
        running.metrics_server = metrics.serve(config.metrics_port, config.metrics_host)
    if tls is not None and health_port is not None:
        running.health_server, running.health_port = _probe_server(
            health_servicer, f"{host}:{health_port}"
        )
    health_servicer.set(LIVENESS, _SERVING)
    check_store(running)
    return running


def _grpc_server(parts: Parts) -> grpc.Server:
    """A gRPC server with the interceptors `parts` call for: observation outermost, so
    refused calls are counted and logged too; then authentication, so a refused caller never
    holds one of the calls admission allows; then admission."""
    config = parts.config
    interceptors: list[grpc.ServerInterceptor] = []
    if config.observe:
        interceptors.append(Observer(parts.metrics))
    if config.auth or config.peer_secret:
        interceptors.append(
            Authenticator(parts.store, clients=config.auth, peer_secret=config.peer_secret)
        )
    interceptors.append(parts.admission)
    return grpc.server(
        # Threads for every admitted call and then some, so health checks always find one;
        # beyond them, calls are refused at once rather than queued.
        futures.ThreadPoolExecutor(max_workers=config.limits.threads),
        options=options.SERVER_OPTIONS,
        interceptors=interceptors,
        maximum_concurrent_rpcs=config.limits.threads,
    )


def _probe_server(servicer: health.HealthServicer, address: str) -> tuple[grpc.Server, int]:
    """Health checking alone, in plaintext, on `address` (kubelet's gRPC probes speak no
    TLS); the server and its port."""
    probe = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, probe)
    port = probe.add_insecure_port(address)
    probe.start()
    return probe, port


def _token_check(store: Store) -> Callable[[str | None], bool]:
    """Whether a bearer token belongs to a client, for the web front to ask before it reads a
    body. A store it cannot reach leaves the answer to the gRPC server (UNAVAILABLE there)."""

    def known(token: str | None) -> bool:
        if token is None:
            return False
        try:
            store.client_by_token(token_sha256(token))
            return True
        except NotFoundError:
            return False
        except StoreError:
            return True

    return known


def store_reachable(store: Store) -> bool:
    """Whether the store answers a ping (store errors only: anything else is a bug)."""
    return look(store).up


def check_store(running: Running) -> None:
    """Readiness follows the store (services/app/readiness.py): NOT_SERVING while it is
    unreachable, and for roles that serve a model while it holds none."""
    if running.watch is None:
        running.watch = StoreWatch(
            running.store, running.metrics, running.set_ready, running.on_model
        )
    running.watch.check()


def watch_store(running: Running, stop: threading.Event, every: float = 2.0) -> None:
    """Check the store every `every` seconds until `stop`."""
    while not stop.wait(every):
        check_store(running)


def serve_forever(running: Running) -> None:
    """Block until SIGTERM/SIGINT, then drain within the grace period and return."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    watcher = threading.Thread(target=watch_store, args=(running, stop), daemon=True)
    watcher.start()
    log.info(
        "serving %s on port %d (metrics: %s; web: %s)",
        ",".join(running.roles),
        running.port,
        f"port {running.metrics_port}" if running.metrics_port else "off",
        running.web.url if running.web else "off",
    )
    stop.wait()
    log.info("draining (grace %.0f s)", running.config.drain_seconds)
    running.stop()
