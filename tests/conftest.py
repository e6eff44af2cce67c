"""Shared fixtures: tiny synthetic datasets, and the real MovieLens folder when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from libcryptorec.data import Ratings, synthetic

SHARED_DATA = Path(
    os.environ.get("CRYPTOREC_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


@pytest.fixture(scope="session")
def tiny() -> Ratings:
    """60 users x 40 items, rank-3 ratings on 1..5."""
    return synthetic(n_users=60, n_items=40, rank=3, density=0.35, seed=1)


@pytest.fixture(scope="session")
def small() -> Ratings:
    """300 users x 120 items, enough for training to beat the biases."""
    return synthetic(n_users=300, n_items=120, rank=4, density=0.25, seed=2)


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    """The shared MovieLens folder; tests that need it skip when it is absent."""
    if not (SHARED_DATA / "ml-100k" / "u.data").is_file():
        pytest.skip(f"MovieLens data not found under {SHARED_DATA} (set CRYPTOREC_DATA)")
    return SHARED_DATA


def _redis_reachable(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """REDIS_URL if set, else 127.0.0.1:6379 if it answers, else a redis-server we start."""
    import shutil
    import socket
    import subprocess
    import time

    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if _redis_reachable(url):
        yield url
        return
    if shutil.which("redis-server") is None:
        pytest.skip("no Redis reachable and no redis-server to start")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(50):
        if _redis_reachable(url):
            break
        time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)
