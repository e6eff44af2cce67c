"""One suite for both stores (Redis and a directory): versions are immutable, visible only when
complete and verified, and a publisher that dies mid-write leaves the old version serving."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from services.store import open_store
from services.store.base import CorruptError, NotFoundError, Store, StoreError
from services.store.file_store import FileStore
from services.store.redis_store import RedisStore


@pytest.fixture(params=["file", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    if request.param == "file":
        yield FileStore(tmp_path / "store")
        return
    url = request.getfixturevalue("redis_url")
    redis_store = RedisStore(url, prefix=f"test-{uuid.uuid4().hex[:8]}:")
    yield redis_store
    for key in redis_store._r.scan_iter(match=redis_store.prefix + "*"):
        redis_store._r.delete(key)


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
    import services.store.file_store as fs
    import services.store.redis_store as rs

    def crash(*_: object) -> None:
        raise KeyboardInterrupt("killed after writing parts")

    monkeypatch.setattr(fs, "verify_parts", crash)
    monkeypatch.setattr(rs, "verify_parts", crash)
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


def test_keys_are_content_addressed_and_expire(store: Store) -> None:
    meta = {"scheme": "ckks", "parameter_set": "ckks-8192-fast"}
    a = store.put_key(meta, b"public bytes", ttl_seconds=60)
    b = store.put_key(meta, b"public bytes", ttl_seconds=60)
    c = store.put_key(meta, b"other bytes", ttl_seconds=1)
    assert a.key_id == b.key_id != c.key_id
    assert store.get_key(a.key_id).blob == b"public bytes"
    assert store.get_key(a.key_id).meta == meta
    time.sleep(1.2)
    with pytest.raises(NotFoundError):
        store.get_key(c.key_id)
    store.delete_key(a.key_id)
    with pytest.raises(NotFoundError):
        store.get_key(a.key_id)
    with pytest.raises(NotFoundError):
        store.get_key("../../etc/passwd")


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
