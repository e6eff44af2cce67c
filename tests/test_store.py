"""One suite for every store (Redis as one server, as a Cluster and behind Sentinel, and a
directory): versions are immutable, visible only when complete and verified, and a publisher
that dies mid-write leaves the old version serving."""

from __future__ import annotations

import errno
import hashlib
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from cryptorec.services.app.server import store_reachable
from cryptorec.services.store import open_store
from cryptorec.services.store.base import (
    DAY_SECONDS,
    ClientRecord,
    CorruptError,
    InvalidIdError,
    NotFoundError,
    QuotaExceededError,
    Quotas,
    Store,
    StoreError,
    StoreFullError,
    Usage,
)
from cryptorec.services.store.file_store import FileStore
from cryptorec.services.store.redis_connect import parse
from cryptorec.services.store.redis_store import RedisStore
from libcryptorec.he.backend import KeySet
from tests.redis_server import free_port, start_redis

# One server, a Redis Cluster of three primaries, a Sentinel-managed primary with a replica
# (every write acknowledged by it), and the embedded directory: one contract for all.
REDIS_URL_FIXTURES = {
    "redis": "redis_url",
    "cluster": "redis_cluster",
    "sentinel": "redis_sentinel",
}


@pytest.fixture(params=["file", "redis", "cluster", "sentinel"])
def store(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    if request.param == "file":
        yield FileStore(tmp_path / "store")
        return
    url = request.getfixturevalue(REDIS_URL_FIXTURES[request.param])
    redis_store = RedisStore(url, prefix=f"test-{uuid.uuid4().hex[:8]}:")
    yield redis_store
    for key in redis_store._r.scan_iter(match=redis_store.prefix + "*"):
        redis_store._r.delete(key)


def _keys(size: int) -> KeySet:
    """The metadata of a one-blob key set of `size` bytes."""
    return KeySet("ckks", "fast", "ckks-8192-fast", (1, 16), (("public_key", size),))


PARTS = {"model": b"m" * 3_000_000 + b"end", "catalogue": b'{"1": "Toy Story"}'}


def test_publish_read_round_trip_and_pointer(store: Store) -> None:
    assert store.current() is None
    store.publish("v1", PARTS, {"items": 3})
    info, parts = store.read("v1")
    assert parts == PARTS
    assert info.summary == {"items": 3}
    assert store.current() == "v1"
    store.publish("v2", {"model": b"two"}, {})
    assert store.current() == "v2"
    assert [v.version for v in store.versions()] == ["v1", "v2"]


def test_versions_are_immutable(store: Store) -> None:
    store.publish("v1", PARTS, {})
    with pytest.raises(ValueError, match="immutable"):
        store.publish("v1", {"model": b"other"}, {})
    assert store.read("v1")[1] == PARTS


def test_publisher_killed_before_pointer_moves_leaves_old_version_serving(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.publish("v1", PARTS, {})
    from cryptorec.services.store import base

    def crash(*_: object) -> None:
        raise KeyboardInterrupt("killed after writing parts")

    monkeypatch.setattr(base, "verify_parts", crash)
    with pytest.raises(KeyboardInterrupt):
        store.publish("v2", {"model": b"half-written"}, {})
    monkeypatch.undo()
    assert store.current() == "v1"
    assert [v.version for v in store.versions()] == ["v1"]
    with pytest.raises(NotFoundError):
        store.read("v2")
    assert store.read("v1")[1] == PARTS


def test_unknown_version_and_bad_ids(store: Store) -> None:
    with pytest.raises(NotFoundError):
        store.read("nope")
    for bad in ("../etc", "", "a/b", "A B"):
        with pytest.raises(ValueError, match="invalid version"):
            store.publish(bad, PARTS, {})


def test_retain_keeps_newest_and_current(store: Store) -> None:
    for i in range(4):
        store.publish(f"v{i}", {"model": bytes([i])}, {})
    assert store.retain(2) == ["v0", "v1"]
    assert [v.version for v in store.versions()] == ["v2", "v3"]
    assert store.read("v3")[1] == {"model": b"\x03"}


def test_retain_keeps_the_newest_version_of_each_kind(store: Store) -> None:
    """A deployment serves a stars model beside the current ranking model: retention never
    takes the last stars version, however many ranking versions follow it."""
    store.publish("s0", {"model": b"s"}, {"kind": "stars"})
    for i in range(4):
        store.publish(f"r{i}", {"model": bytes([i])}, {"kind": "ranking"})
    assert store.retain(2) == ["r0", "r1"]
    assert [v.version for v in store.versions()] == ["s0", "r2", "r3"]


def test_keys_are_content_addressed_and_expire(store: Store) -> None:
    keys = _keys(12)
    a = store.put_key(keys, b"public bytes", ttl_seconds=60)
    b = store.put_key(keys, b"public bytes", ttl_seconds=60)
    c = store.put_key(keys, b"other bytes", ttl_seconds=1)
    assert a.key_id == b.key_id != c.key_id
    assert store.get_key(a.key_id).blob == b"public bytes"
    assert store.get_key(a.key_id).keys == keys
    info = store.key_info(a.key_id)
    assert (info.keys, info.size) == (keys, len(b"public bytes"))
    time.sleep(1.2)
    with pytest.raises(NotFoundError):
        store.get_key(c.key_id)
    store.delete_key(a.key_id)
    with pytest.raises(NotFoundError):
        store.get_key(a.key_id)
    for bad in ("../../etc/passwd", "A" * 32, "a" * 300, "\u00e9" * 300, "", "0" * 31 + "\x00"):
        with pytest.raises(InvalidIdError):
            store.get_key(bad)
        with pytest.raises(InvalidIdError):
            store.delete_key(bad)
    with pytest.raises(NotFoundError):
        store.get_key("0" * 32)  # well formed, never registered


def test_file_store_detects_corrupt_chunk(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.publish("v1", PARTS, {})
    chunk = tmp_path / "models" / "v1" / "model.1"
    chunk.write_bytes(b"x" + chunk.read_bytes()[1:])
    with pytest.raises(CorruptError):
        store.read("v1")


def test_redis_down_is_a_store_error() -> None:
    store = RedisStore("redis://127.0.0.1:1/0")
    with pytest.raises(StoreError, match="unavailable"):
        store.current()


def test_open_store_urls(tmp_path: Path) -> None:
    assert isinstance(open_store(f"file://{tmp_path}"), FileStore)
    assert isinstance(open_store(str(tmp_path)), FileStore)
    assert isinstance(open_store("redis://127.0.0.1:6379/0"), RedisStore)


def test_redis_urls_name_a_server_a_sentinel_group_or_a_cluster(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    server = parse("redis://:hunter2@10.0.0.1:6380/2")
    assert (server.mode, server.where, server.wait_replicas) == ("server", "10.0.0.1:6380", 0)
    sentinel = parse(
        f"rediss+sentinel://a:6379,b:6379,[::1]:6379/cryptorec/1?password_file={tmp_path}/pw"
        f"&sentinel_password_file={tmp_path}/pw"
    )
    assert sentinel.mode == "sentinel"
    assert sentinel.hosts == (("a", 6379), ("b", 6379), ("::1", 6379))
    assert (sentinel.service, sentinel.db, sentinel.tls) == ("cryptorec", 1, True)
    assert sentinel.password == sentinel.sentinel_password == "s3cret"
    assert sentinel.wait_replicas == 1  # a primary with replicas: acknowledged means copied
    cluster = parse("redis+cluster://:pw@n1:7000,n2:7001?wait_replicas=1&wait_timeout_ms=500")
    assert (cluster.mode, cluster.hosts, cluster.wait_replicas) == (
        "cluster",
        (("n1", 7000), ("n2", 7001)),
        1,
    )
    for url in (server, sentinel, cluster):
        assert "hunter2" not in repr(url)
        assert "s3cret" not in repr(url)
        assert "pw@" not in url.where
    for bad, why in (
        ("redis+sentinel://a:1", "SERVICE"),
        ("redis+cluster://a", "host:port"),
        ("redis+cluster://a:1?colour=red", "unknown store URL options: colour"),
        ("redis+cluster://a:1?password_file=/nonexistent/pw", "cannot read the store password"),
        ("memcached://a:1", "scheme"),
    ):
        with pytest.raises(ValueError, match=why):
            parse(bad)


def test_keys_written_before_hash_tags_are_renamed_and_kept(redis_url: str) -> None:
    """A deployment upgraded from the untagged key layout keeps its versions, clients, key
    sets (with their TTLs) and budgets."""
    prefix = f"old-{uuid.uuid4().hex[:8]}:"
    writer = RedisStore(redis_url, prefix=prefix)
    writer.publish("v1", PARTS, {})
    record = _client(writer, "alice", Quotas(queries_per_day=5))
    key = writer.put_key(_keys(3), b"abc", 600)
    writer.claim_key("alice", key.key_id, 3, time.time() + 600, Quotas())
    writer.spend_query("alice", 5)
    r = writer._r
    for tagged in list(r.scan_iter(match=prefix + "*")):  # back to the untagged names
        name = tagged.decode()[len(prefix) :]
        untagged = {"{models}": "models", "{models}:current": "current"}.get(name)
        untagged = untagged or name.replace("{", "").replace("}", "")
        r.rename(tagged, prefix + untagged)
    assert r.exists(prefix + "current")
    assert r.exists(prefix + f"key:{key.key_id}:blob")
    upgraded = RedisStore(redis_url, prefix=prefix)
    try:
        assert upgraded.current() == "v1"
        assert upgraded.read("v1")[1] == PARTS
        assert upgraded.client_by_token(record.token_sha256).name == "alice"
        assert upgraded.get_key(key.key_id).blob == b"abc"
        assert 0 < r.ttl(prefix + "{key:" + key.key_id + "}:blob") <= 600
        assert upgraded.owns_key("alice", key.key_id)
        assert upgraded.usage("alice").queries_today == 1
        assert not [k for k in r.scan_iter(match=prefix + "*") if b"{" not in k]
    finally:
        for k in r.scan_iter(match=prefix + "*"):
            r.delete(k)


# Every operation of the contract, applied to a store whose backend has failed.
OPERATIONS: dict[str, Callable[[Store], object]] = {
    "ping": lambda s: s.ping(),
    "publish": lambda s: s.publish("v9", {"model": b"x"}, {}),
    "current": lambda s: s.current(),
    "versions": lambda s: s.versions(),
    "read": lambda s: s.read("v1"),
    "retain": lambda s: s.retain(1),
    "put_key": lambda s: s.put_key(_keys(1), b"k", 60),
    "get_key": lambda s: s.get_key("0" * 32),
    "key_info": lambda s: s.key_info("0" * 32),
    "delete_key": lambda s: s.delete_key("0" * 32),
}


def _failed_store(kind: str, tmp_path: Path) -> Store:
    """A file store whose directory was removed, or a Redis store with no server behind it."""
    if kind == "file":
        store = FileStore(tmp_path / "gone")
        store.publish("v1", {"model": b"m"}, {})
        shutil.rmtree(tmp_path / "gone")
        return store
    return RedisStore(f"redis://127.0.0.1:{free_port()}/0")


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("kind", ["file", "redis"])
def test_every_operation_of_a_failed_store_raises_store_error(
    kind: str, operation: str, tmp_path: Path
) -> None:
    with pytest.raises(StoreError):
        OPERATIONS[operation](_failed_store(kind, tmp_path))


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_health_watcher_survives_a_failed_store(kind: str, tmp_path: Path) -> None:
    # The watcher catches store errors only: anything else would kill it silently.
    assert store_reachable(_failed_store(kind, tmp_path)) is False


def test_full_redis_refuses_writes_and_keeps_serving_models(tmp_path: Path) -> None:
    """Redis at maxmemory with noeviction (as k8s/base/redis.yaml runs it): writes are refused
    with StoreFullError, nothing published is evicted, reads go on."""
    proc, url = start_redis(
        tmp_path, extra=["--maxmemory", "4mb", "--maxmemory-policy", "noeviction"]
    )
    try:
        store = RedisStore(url, prefix="full:")
        store.publish("v1", {"model": b"m" * 100_000}, {})

        def register_until_full() -> None:
            for i in range(20):
                store.put_key(_keys(1_000_000), bytes([i]) * 1_000_000, 60)

        with pytest.raises(StoreFullError):
            register_until_full()
        with pytest.raises(StoreFullError):
            store.publish("v2", {"model": b"n" * 8_000_000}, {})
        assert store.current() == "v1"
        assert store.read("v1")[1] == {"model": b"m" * 100_000}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_full_disk_is_store_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileStore(tmp_path)

    def no_space(*_: object, **__: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", no_space)
    with pytest.raises(StoreFullError):
        store.put_key(_keys(1), b"k", 60)


# --- clients, ownership and budgets (both stores) ----------------------------------------------


def _client(store: Store, name: str, quotas: Quotas) -> ClientRecord:
    record = ClientRecord(name, hashlib.sha256(name.encode()).hexdigest(), quotas, time.time())
    store.add_client(record)
    return record


def test_clients_are_found_by_token_and_removed_at_once(store: Store) -> None:
    alice = _client(store, "alice", Quotas())
    _client(store, "bob", Quotas(queries_per_day=7))
    assert store.client_by_token(alice.token_sha256) == alice
    assert [c.name for c in store.clients()] == ["alice", "bob"]
    with pytest.raises(ValueError, match="exists"):
        _client(store, "alice", Quotas())
    store.remove_client("alice")
    with pytest.raises(NotFoundError):
        store.client_by_token(alice.token_sha256)
    with pytest.raises(NotFoundError):
        store.remove_client("alice")
    with pytest.raises(InvalidIdError):
        _client(store, "../evil", Quotas())


def test_a_revoked_client_leaves_nothing_to_a_namesake(store: Store) -> None:
    """RELIABILITY.md line 29: revoking a client forgets its budget and its key sets (deleted
    where nobody else owns them), so a client re-added under the same name starts afresh."""
    q = Quotas(queries_per_day=5)
    later = time.time() + 60
    _client(store, "carol", q)
    _client(store, "dave", q)
    shared, own = _keys(10), _keys(10)
    shared_id = store.put_key(shared, b"s" * 10, 60).key_id
    own_id = store.put_key(own, b"o" * 10, 60).key_id
    for key_id, owners in ((shared_id, ("carol", "dave")), (own_id, ("carol",))):
        for owner in owners:
            store.claim_key(owner, key_id, 10, later, q)
    store.spend_query("carol", q.queries_per_day)
    store.remove_client("carol")
    _client(store, "carol", q)
    assert store.usage("carol") == Usage(0, 0, 0)
    assert not store.owns_key("carol", shared_id)
    assert store.owns_key("dave", shared_id)
    store.key_info(shared_id)  # still dave's
    with pytest.raises(NotFoundError):
        store.key_info(own_id)  # nobody's: gone


def test_key_ownership_and_key_set_quotas(store: Store) -> None:
    q = Quotas(max_key_sets=2, max_key_bytes=100)
    later = time.time() + 60
    store.claim_key("alice", "a" * 32, 40, later, q)
    store.claim_key("alice", "a" * 32, 40, later, q)  # the same key set again: one of two
    store.claim_key("alice", "b" * 32, 50, later, q)
    with pytest.raises(QuotaExceededError):
        store.claim_key("alice", "c" * 32, 1, later, q)  # a third set
    store.claim_key("bob", "a" * 32, 40, later, q)  # the same keys, another owner
    assert store.owns_key("alice", "a" * 32)
    assert not store.owns_key("bob", "b" * 32)
    assert sorted(store.client_keys("alice")) == ["a" * 32, "b" * 32]
    assert store.usage("alice") == Usage(2, 90, 0)
    assert store.release_key("alice", "a" * 32) == 1  # bob still owns it
    assert store.release_key("bob", "a" * 32) == 0
    with pytest.raises(QuotaExceededError):
        store.claim_key("alice", "d" * 32, 60, later, q)  # 50 + 60 bytes > 100
    store.claim_key("alice", "e" * 32, 10, time.time() + 0.5, q)
    time.sleep(0.6)
    assert store.client_keys("alice") == ["b" * 32]  # expired sets free their quota
    store.claim_key("alice", "f" * 32, 50, later, q)


def test_query_budget_is_a_rolling_day_counted_atomically(store: Store) -> None:
    """RELIABILITY.md line 29: 30 threads asking at once get exactly the budget of answers."""
    _client(store, "carol", Quotas())
    outcomes: list[float | None] = []

    def ask() -> None:
        try:
            store.spend_query("carol", 12)
            outcomes.append(None)
        except QuotaExceededError as exc:
            outcomes.append(exc.retry_after)

    threads = [threading.Thread(target=ask) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count(None) == 12
    waits = [w for w in outcomes if w is not None]
    assert len(waits) == 18
    assert all(DAY_SECONDS - 60 < w <= DAY_SECONDS for w in waits)
    assert store.usage("carol").queries_today == 12
