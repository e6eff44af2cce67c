"""Shared fixtures: tiny synthetic datasets, and the real MovieLens folder when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from libcryptorec.data import Ratings, synthetic

# The servers tests start (as processes too) share this machine: none serves /metrics on the
# default port unless a test asks for it.
os.environ.setdefault("CRYPTOREC_METRICS_PORT", "0")

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


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """REDIS_URL if set, else 127.0.0.1:6379 if it answers, else a redis-server we start."""
    import shutil

    from tests.redis_server import reachable, start_redis

    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if reachable(url):
        yield url
        return
    if shutil.which("redis-server") is None:
        pytest.skip("no Redis reachable and no redis-server to start")
    proc, url = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A real Redis Cluster of three primaries on loopback, for the session (its URL)."""
    import shutil

    from tests.redis_server import start_cluster

    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server and redis-cli are needed to start a Redis Cluster")
    cluster = start_cluster(tmp_path_factory.mktemp("redis-cluster"))
    yield cluster.url
    cluster.stop()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A real primary, replica and Sentinel on loopback, for the session (its URL)."""
    import shutil

    from tests.redis_server import start_sentinel_group

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is needed to start a Sentinel group")
    group = start_sentinel_group(tmp_path_factory.mktemp("redis-sentinel"))
    yield group.url
    group.stop()
