"""Where the Redis store lives and how to reach it: one server, a Sentinel-managed primary, or
a Redis Cluster, from a URL.

    redis://[[user]:password@]host:port[/db]            one server (rediss:// for TLS)
    unix:///path/to/redis.sock[?db=0]                   one server on a Unix socket
    redis+sentinel://[[user]:password@]h1:p1[,h2:p2...]/SERVICE[/db]
                                                        the primary Sentinels name SERVICE
    redis+cluster://[[user]:password@]h1:p1[,h2:p2...]  a Redis Cluster (any of its nodes)

(`rediss+sentinel://` and `rediss+cluster://` use TLS.) Query options, for every form:
`password_file=PATH` reads the password from a file (a mounted Secret) instead of the URL;
`sentinel_password_file=PATH` authenticates to the Sentinels too; `wait_replicas=N`
acknowledges a write only once N replicas hold it (Redis' WAIT; default 1 with Sentinel, 0
otherwise), `wait_timeout_ms=MS` how long to wait for them (default 1000).

With Sentinel or Cluster, a connection error is retried for `FAILOVER_SECONDS`, long enough
for a replica to be promoted, so a failover is a pause rather than an error.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection, SentinelManagedSSLConnection

from cryptorec.services.store.base import StoreUrlError

SCHEMES = (
    "redis://",
    "rediss://",
    "unix://",
    "redis+sentinel://",
    "rediss+sentinel://",
    "redis+cluster://",
    "rediss+cluster://",
)
SOCKET_TIMEOUT_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 2.0
# How long a connection error is retried with Sentinel or Cluster: a failover takes
# down-after-milliseconds (k8s: 5 s) plus an election (about a second).
FAILOVER_SECONDS = 15.0
_BACKOFF = ExponentialBackoff(cap=1.0, base=0.05)
_RETRIES = 20  # 0.05, 0.1, ... then 1 s a try: about FAILOVER_SECONDS in all


@dataclass(frozen=True)
class RedisTarget:
    """A parsed store URL. `mode`: "server", "sentinel" or "cluster"; `hosts`: (host, port)
    pairs (the Sentinels', or Cluster nodes to start from); `service`: the name Sentinels
    know the primary by."""

    mode: str
    url: str = field(repr=False)  # it may hold the password
    hosts: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    tls: bool = False
    wait_replicas: int = 0
    wait_timeout_ms: int = 1000

    @property
    def where(self) -> str:
        """Where the store is, for messages and logs: never a password."""
        if self.mode == "server":
            parsed = urllib.parse.urlsplit(self.url)
            return parsed.path if parsed.scheme == "unix" else f"{parsed.hostname}:{parsed.port}"
        nodes = ",".join(f"{h}:{p}" for h, p in self.hosts)
        return f"sentinel {self.service} via {nodes}" if self.mode == "sentinel" else nodes


def parse(url: str) -> RedisTarget:
    """The target a store URL names (StoreUrlError, a ValueError, for a malformed one,
    naming what is wrong but never the password)."""
    scheme = url.split("://", 1)[0]
    if f"{scheme}://" not in SCHEMES:
        raise StoreUrlError(f"store URL scheme {scheme!r}: use one of {', '.join(SCHEMES)}")
    parsed = urllib.parse.urlsplit(url)
    options = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query).items()}
    password = urllib.parse.unquote(parsed.password) if parsed.password else None
    if "password_file" in options:
        password = _read_secret(options.pop("password_file"))
    sentinel_password = None
    if "sentinel_password_file" in options:
        sentinel_password = _read_secret(options.pop("sentinel_password_file"))
    mode = scheme.split("+")[1] if "+" in scheme else "server"
    wait = int(options.pop("wait_replicas", 1 if mode == "sentinel" else 0))
    wait_timeout = int(options.pop("wait_timeout_ms", 1000))
    common: dict[str, Any] = {
        "username": urllib.parse.unquote(parsed.username) if parsed.username else None,
        "password": password,
        "sentinel_password": sentinel_password,
        "tls": scheme.startswith("rediss"),
        "wait_replicas": wait,
        "wait_timeout_ms": wait_timeout,
    }
    if mode == "server":
        kept = urllib.parse.urlencode(options)
        plain = urllib.parse.urlunsplit(parsed._replace(query=kept))
        return RedisTarget("server", plain, **common)
    if options:
        raise StoreUrlError(f"unknown store URL options: {', '.join(sorted(options))}")
    hosts = tuple(_host_port(h) for h in parsed.netloc.rsplit("@", 1)[-1].split(",") if h)
    if not hosts:
        raise StoreUrlError(f"a {scheme} URL names at least one host:port")
    path = [p for p in parsed.path.split("/") if p]
    if mode == "sentinel":
        if not path:
            raise StoreUrlError("a redis+sentinel URL ends with /SERVICE, the primary's name")
        db = int(path[1]) if len(path) > 1 else 0
        return RedisTarget("sentinel", url, hosts, path[0], db, **common)
    return RedisTarget("cluster", url, hosts, **common)


def connect(target: RedisTarget) -> redis.Redis | RedisCluster:
    """A client for the target: for Sentinel, one that follows the primary through failovers;
    for Cluster, one that follows slots as they move."""
    timeouts: dict[str, Any] = {
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
    }
    if target.mode == "server":
        return redis.Redis.from_url(
            target.url, **timeouts, username=target.username, password=target.password
        )
    auth: dict[str, Any] = {
        "username": target.username,
        "password": target.password,
        "ssl": target.tls,
    }
    retry = Retry(_BACKOFF, _RETRIES)
    if target.mode == "cluster":
        nodes = [ClusterNode(h, p) for h, p in target.hosts]  # type: ignore[no-untyped-call]
        return RedisCluster(startup_nodes=nodes, retry=retry, **timeouts, **auth)
    sentinel_auth = {"password": target.sentinel_password} if target.sentinel_password else {}
    sentinels = Sentinel(
        list(target.hosts),
        sentinel_kwargs={**timeouts, "ssl": target.tls, **sentinel_auth},
        **timeouts,
    )
    following = _PrimaryFollowingSSLConnection if target.tls else _PrimaryFollowingConnection
    primary: redis.Redis = sentinels.master_for(
        target.service,
        connection_class=following,
        db=target.db,
        retry=retry,
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        **auth,
    )
    return primary


class _PrimaryFollowingConnection(SentinelManagedConnection):
    """A connection to the primary that asks the Sentinels where it is on every connection
    attempt. redis-py's own retries reconnect to the address they started with, so a call
    in flight when the primary dies would keep knocking on the dead one until its retries
    ran out (redis/redis-py#3874)."""

    def _connect(self) -> Any:
        self.host, self.port = self.connection_pool.get_master_address()
        return super()._connect()  # type: ignore[no-untyped-call]


class _PrimaryFollowingSSLConnection(_PrimaryFollowingConnection, SentinelManagedSSLConnection):
    """The same, over TLS."""


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.strip().rpartition(":")
    if not host or not port.isdigit():
        raise StoreUrlError(f"store URL host {text!r}: expected host:port")
    return host.strip("[]"), int(port)


def _read_secret(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise StoreUrlError(f"cannot read the store password from {path}: {exc.strerror}") from None
