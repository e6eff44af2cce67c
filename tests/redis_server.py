"""A private redis-server for tests that must stop, stall or restart it (and the session
fallback when no Redis is reachable). Never a mock."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
