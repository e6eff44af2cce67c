"""Private redis-servers for tests that must stop, stall or restart them (and the session
fallback when no Redis is reachable), and the high-availability topologies the store runs on:
a Redis Cluster and a Sentinel group, as real local processes. Never a mock."""

from __future__ import annotations

import random
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def cluster_port() -> int:
    """A free port whose cluster bus port (10000 above it) is free and valid too."""
    for port in random.sample(range(20000, 50000), 500):
        if _is_free(port) and _is_free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


def reachable(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False


def redis_command(
    port: int, directory: Path, *, persist: bool = False, extra: Sequence[str] = ()
) -> list[str]:
    """argv for a loopback redis-server keeping its files in `directory`; `persist` turns on the
    append-only file, so data survives a restart with the same command."""
    return [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(directory),
        "--save",
        "",
        "--appendonly",
        "yes" if persist else "no",
        *extra,
    ]


def start_redis(
    directory: Path, *, port: int | None = None, persist: bool = False, extra: Sequence[str] = ()
) -> tuple[subprocess.Popen[bytes], str]:
    """Start redis-server (with `extra` arguments) and wait until it answers; returns
    (process, redis:// URL)."""
    port = port or free_port()
    proc = subprocess.Popen(
        redis_command(port, directory, persist=persist, extra=extra), stdout=subprocess.DEVNULL
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.time() + 10
    while not reachable(url):
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"redis-server on port {port} did not start")
        time.sleep(0.05)
    return proc, url


def _wait(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.1)


@dataclass
class Topology:
    """Local redis-server processes forming a Cluster or a Sentinel group; `url` is the
    store URL that reaches them, `servers` the data nodes' ports (the primary first for
    Sentinel)."""

    url: str
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    servers: list[int] = field(default_factory=list)

    def kill(self, port: int) -> None:
        """SIGKILL the server on `port`: no goodbye, as a node that dies."""
        self.processes[port].kill()
        self.processes[port].wait(timeout=10)

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes.values():
            proc.wait(timeout=10)


def _start(directory: Path, port: int, args: Sequence[str]) -> subprocess.Popen[bytes]:
    (directory / str(port)).mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [*redis_command(port, directory / str(port)), *args], stdout=subprocess.DEVNULL
    )


def _ask(port: int, ask: Callable[[redis.Redis], object]) -> object:
    """ask(client of the server on `port`), or None while it does not answer."""
    try:
        return ask(redis.Redis(port=port, socket_timeout=2))
    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
        return None


def _replicas_online(port: int) -> int:
    """How many replicas of the server on `port` are in sync with it."""
    info = _ask(port, lambda r: r.info("replication"))
    entries = info.values() if isinstance(info, dict) else ()
    return sum(1 for e in entries if isinstance(e, dict) and e.get("state") == "online")


def start_cluster(directory: Path, masters: int = 3, replicas: int = 0) -> Topology:
    """A Redis Cluster on loopback: `masters` primaries with `replicas` replicas each
    (redis-server --cluster-enabled yes, then redis-cli --cluster create), ready to serve
    every slot. A node unreachable for a second is failed over."""
    ports = [cluster_port() for _ in range(masters * (1 + replicas))]
    topology = Topology(f"redis+cluster://127.0.0.1:{ports[0]}")
    for port in ports:
        topology.processes[port] = _start(
            directory,
            port,
            [
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                "1000",
                "--cluster-config-file",
                f"nodes-{port}.conf",
            ],
        )
    for port in ports:
        _wait(lambda port=port: reachable(f"redis://127.0.0.1:{port}"), f"node {port} up")
    subprocess.run(
        [
            "redis-cli",
            "--cluster",
            "create",
            *(f"127.0.0.1:{p}" for p in ports),
            "--cluster-replicas",
            str(replicas),
            "--cluster-yes",
        ],
        check=True,
        capture_output=True,
    )
    for port in ports:
        _wait(
            lambda port=port: (
                (_ask(port, lambda r: r.cluster("INFO")) or {}).get("cluster_state") == "ok"
            ),
            f"cluster state ok on {port}",
        )
    primaries = [
        p for p in ports if (_ask(p, lambda r: r.info("replication")) or {}).get("role") == "master"
    ]  # type: ignore[union-attr]
    for port in primaries:  # a replica that never synced could not take over
        _wait(lambda port=port: _replicas_online(port) == replicas, f"replicas of {port} in sync")
    topology.servers = ports
    return topology


SENTINEL_SERVICE = "cryptorec"


def start_sentinel_group(directory: Path, replicas: int = 1) -> Topology:
    """A primary, `replicas` replicas and one Sentinel watching them (quorum 1, the primary
    judged down after a second), on loopback. The URL names the Sentinel."""
    primary = free_port()
    topology = Topology("")
    topology.processes[primary] = _start(directory, primary, [])
    topology.servers = [primary]
    _wait(lambda: reachable(f"redis://127.0.0.1:{primary}"), "primary up")
    for _ in range(replicas):
        port = free_port()
        topology.processes[port] = _start(
            directory, port, ["--replicaof", "127.0.0.1", str(primary)]
        )
        topology.servers.append(port)
    _wait(lambda: _replicas_online(primary) == replicas, "replicas in sync")
    sentinel = free_port()
    conf = directory / f"sentinel-{sentinel}.conf"
    conf.write_text(
        f"port {sentinel}\nbind 127.0.0.1\ndir {directory}\n"
        f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {primary} 1\n"
        f"sentinel down-after-milliseconds {SENTINEL_SERVICE} 1000\n"
        f"sentinel failover-timeout {SENTINEL_SERVICE} 5000\n"
    )
    topology.processes[sentinel] = subprocess.Popen(
        ["redis-server", str(conf), "--sentinel"], stdout=subprocess.DEVNULL
    )

    def knows_replicas() -> bool:
        try:
            client = redis.Redis(port=sentinel, socket_timeout=2)
            return len(client.sentinel_slaves(SENTINEL_SERVICE)) == replicas
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            return False

    _wait(knows_replicas, "the Sentinel to know the replicas")
    topology.url = f"redis+sentinel://127.0.0.1:{sentinel}/{SENTINEL_SERVICE}"
    return topology


def current_primary(topology: Topology) -> int:
    """The port Sentinel names as the primary now."""
    sentinel = int(topology.url.split(":")[-1].split("/")[0])
    _, port = redis.Redis(port=sentinel).sentinel_get_master_addr_by_name(SENTINEL_SERVICE)
    return int(port)
