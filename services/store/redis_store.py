"""The deployment store: Redis, shared by every replica.

Keys (prefix `cryptorec:` by default): model:<v>:manifest, model:<v>:part:<name>:<i>,
models (sorted set of complete versions by time), current (the pointer), and
key:<id>:meta and key:<id>:blob (with TTL). Publishing writes all parts and the manifest,
reads them back to verify, and then in one MULTI adds the version and moves the pointer.
Evaluators read the pointer per request (one GET), so a new version serves from the next
request on: no notification channel is needed, so none can be missed.

Model versions and the pointer carry no TTL; run Redis with `maxmemory-policy noeviction`
(k8s/base/redis.yaml): when full, it refuses writes (StoreFullError, RESOURCE_EXHAUSTED for a
key registration) and never evicts a model. Every Redis failure surfaces as StoreError.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import redis

from cryptorec.services.store import base
from libcryptorec.he.backend import Blob, KeySet


class RedisStore:
    """A `Store` in Redis. Connection errors surface as StoreError."""

    def __init__(self, url: str, prefix: str = "cryptorec:") -> None:
        self.url, self.prefix = url, prefix
        self._r = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r}, prefix={self.prefix!r})"

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _call(self, fn: Any, *args: Any) -> Any:
        """fn(*args) with every Redis failure turned into the store's errors."""
        try:
            return fn(*args)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise base.StoreError(f"Redis at {self._where} unavailable: {exc}") from exc
        except redis.RedisError as exc:
            if isinstance(exc, redis.exceptions.OutOfMemoryError) or "OOM" in str(exc):
                raise base.StoreFullError(f"Redis at {self._where} is full (maxmemory)") from exc
            raise base.StoreError(f"Redis at {self._where} failed: {exc}") from exc

    @property
    def _where(self) -> str:
        """The server's address without credentials (URLs may carry a password)."""
        kwargs = self._r.connection_pool.connection_kwargs
        return str(kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}")

    def ping(self) -> None:
        self._call(self._r.ping)

    def publish(self, version: str, parts: dict[str, bytes], summary: dict[str, Any]) -> None:
        base.check_version_id(version)
        if self._call(self._r.exists, self._k("model", version, "manifest")):
            raise ValueError(f"version {version} already exists; versions are immutable")
        manifest = base.manifest_for(version, parts, summary)
        pipe = self._r.pipeline(transaction=False)
        for name, blob in parts.items():
            for i, piece in enumerate(base.chunks(blob)):
                pipe.set(self._k("model", version, "part", name, str(i)), piece)
        pipe.set(self._k("model", version, "manifest"), manifest)
        self._call(pipe.execute)
        self._read_version(version)  # verify what Redis holds before it becomes visible
        created = json.loads(manifest)["created_unix"]
        tx = self._r.pipeline(transaction=True)
        tx.zadd(self._k("models"), {version: created})
        tx.set(self._k("current"), version)
        self._call(tx.execute)

    def current(self) -> str | None:
        value = self._call(self._r.get, self._k("current"))
        return value.decode() if value else None

    def versions(self) -> list[base.VersionInfo]:
        names = [v.decode() for v in self._call(self._r.zrange, self._k("models"), 0, -1)]
        out = []
        for v in names:
            raw = self._call(self._r.get, self._k("model", v, "manifest"))
            if raw:
                out.append(base.info_from_manifest(json.loads(raw)))
        return out

    def read(self, version: str) -> tuple[base.VersionInfo, dict[str, bytes]]:
        base.check_version_id(version)
        if self._call(self._r.zscore, self._k("models"), version) is None:
            raise base.NotFoundError(f"model version {version} not found")
        return self._read_version(version)

    def _read_version(self, version: str) -> tuple[base.VersionInfo, dict[str, bytes]]:
        raw = self._call(self._r.get, self._k("model", version, "manifest"))
        if raw is None:
            raise base.NotFoundError(f"model version {version} not found")
        manifest = json.loads(raw)
        pipe = self._r.pipeline(transaction=False)
        layout = []
        for name, spec in manifest["parts"].items():
            for i in range(spec["chunks"]):
                pipe.get(self._k("model", version, "part", name, str(i)))
            layout.append((name, spec["chunks"]))
        values = self._call(pipe.execute)
        parts, pos = {}, 0
        for name, count in layout:
            parts[name] = b"".join(v or b"" for v in values[pos : pos + count])
            pos += count
        base.verify_parts(manifest, parts)
        return base.info_from_manifest(manifest), parts

    def retain(self, keep: int) -> list[str]:
        doomed = base.versions_to_drop(self, keep)
        known = {v.version for v in self.versions()} - set(doomed)
        manifests = self._call(
            lambda: list(self._r.scan_iter(match=self._k("model", "*", "manifest")))
        )
        for key in manifests:
            v = key.decode()[len(self._k("model", "")) :].rsplit(":", 1)[0]
            raw = self._call(self._r.get, key)
            fresh = raw is not None and time.time() - json.loads(raw)["created_unix"] < 3600
            if v not in known and (v in doomed or not fresh):
                # The sorted set first: a half-deleted version is then never listed as complete.
                self._call(self._r.zrem, self._k("models"), v)
                parts = self._call(
                    lambda v=v: list(self._r.scan_iter(match=self._k("model", v, "*")))
                )
                for start in range(0, len(parts), 512):
                    self._call(self._r.delete, *parts[start : start + 512])
        return doomed

    def put_key(self, keys: KeySet, blob: Blob, ttl_seconds: int) -> base.KeyRecord:
        key_id = base.key_id_for(keys, blob)
        record = base.KeyRecord(key_id, keys, blob, time.time() + ttl_seconds)
        tx = self._r.pipeline(transaction=True)
        tx.set(self._k("key", key_id, "blob"), blob, ex=ttl_seconds)
        tx.set(self._k("key", key_id, "meta"), base.record_json(record), ex=ttl_seconds)
        self._call(tx.execute)
        return record

    def key_info(self, key_id: str) -> base.KeyInfo:
        base.check_key_id(key_id)
        stored = self._call(self._r.get, self._k("key", key_id, "meta"))
        if stored is None:
            raise base.NotFoundError(f"key id {key_id} not found or expired")
        return base.info_from_record(key_id, stored)

    def get_key(self, key_id: str) -> base.KeyRecord:
        base.check_key_id(key_id)
        pipe = self._r.pipeline(transaction=False)
        pipe.get(self._k("key", key_id, "meta"))
        pipe.get(self._k("key", key_id, "blob"))
        stored, blob = self._call(pipe.execute)
        if stored is None or blob is None:
            raise base.NotFoundError(f"key id {key_id} not found or expired")
        info = base.info_from_record(key_id, stored)
        return base.KeyRecord(key_id, info.keys, blob, info.expires_unix)

    def delete_key(self, key_id: str) -> None:
        base.check_key_id(key_id)
        self._call(self._r.delete, self._k("key", key_id, "meta"), self._k("key", key_id, "blob"))

    # --- clients, ownership and budgets --------------------------------------------------------
    # Keys: client:<name> (record), token:<sha256> (name), client:<name>:keys (sorted set of
    # key ids by expiry), client:<name>:keybytes (hash key id -> size), client:<name>:queries
    # (sorted set of query times), key:<id>:owners (set of names). The two checks that must be
    # atomic across replicas run as Lua scripts; one Redis (or hash tags, on a cluster).

    def add_client(self, record: base.ClientRecord) -> None:
        base.check_client_name(record.name)
        tx = self._r.pipeline(transaction=True)
        tx.set(self._k("client", record.name), record.to_json(), nx=True)
        tx.set(self._k("token", record.token_sha256), record.name)
        created, _ = self._call(tx.execute)
        if not created:
            self._call(self._r.delete, self._k("token", record.token_sha256))
            raise ValueError(f"client {record.name} exists already")

    def client_by_token(self, token_sha256: str) -> base.ClientRecord:
        name = self._call(self._r.get, self._k("token", token_sha256))
        raw = self._call(self._r.get, self._k("client", name.decode())) if name else None
        if raw is None:
            raise base.NotFoundError("unknown token")
        record = base.ClientRecord.from_json(raw)
        if record.token_sha256 != token_sha256:
            raise base.NotFoundError("unknown token")
        return record

    def clients(self) -> list[base.ClientRecord]:
        names = self._call(lambda: list(self._r.scan_iter(match=self._k("client", "*"))))
        records = []
        for key in names:
            if key.decode().count(":") == self._k("client", "x").count(":"):
                raw = self._call(self._r.get, key)
                if raw is not None:
                    records.append(base.ClientRecord.from_json(raw))
        return sorted(records, key=lambda r: r.name)

    def remove_client(self, name: str) -> None:
        base.check_client_name(name)
        raw = self._call(self._r.get, self._k("client", name))
        if raw is None:
            raise base.NotFoundError(f"client {name} not found")
        record = base.ClientRecord.from_json(raw)
        # The token first: it stops at once, whatever happens to the rest.
        self._call(self._r.delete, self._k("token", record.token_sha256), self._k("client", name))
        for member in self._call(self._r.zrange, self._k("client", name, "keys"), 0, -1):
            key_id = member.decode()
            if self.release_key(name, key_id) == 0:
                self.delete_key(key_id)
        self._call(
            self._r.delete,
            self._k("client", name, "keys"),
            self._k("client", name, "keybytes"),
            self._k("client", name, "queries"),
        )

    _CLAIM = """
    local keys, sizes, owners = KEYS[1], KEYS[2], KEYS[3]
    local key_id, size, expires = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
    local now, max_sets, max_bytes = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
    for _, old in ipairs(redis.call('ZRANGEBYSCORE', keys, '-inf', now)) do
      redis.call('HDEL', sizes, old)
    end
    redis.call('ZREMRANGEBYSCORE', keys, '-inf', now)
    if not redis.call('ZSCORE', keys, key_id) then
      local first = redis.call('ZRANGE', keys, 0, 0, 'WITHSCORES')
      local frees = first[2] and (tonumber(first[2]) - now) or 0
      if redis.call('ZCARD', keys) >= max_sets then return {1, tostring(frees)} end
      local total = 0
      for _, v in ipairs(redis.call('HVALS', sizes)) do total = total + tonumber(v) end
      if total + size > max_bytes then return {2, tostring(frees)} end
    end
    redis.call('ZADD', keys, expires, key_id)
    redis.call('HSET', sizes, key_id, size)
    redis.call('SADD', owners, ARGV[7])
    redis.call('EXPIREAT', owners, math.ceil(expires))
    return {0, '0'}
    """

    def claim_key(
        self, client: str, key_id: str, size: int, expires_unix: float, q: base.Quotas
    ) -> None:
        code, frees = self._call(
            self._r.eval,
            self._CLAIM,
            3,
            self._k("client", client, "keys"),
            self._k("client", client, "keybytes"),
            self._k("key", key_id, "owners"),
            key_id,
            size,
            expires_unix,
            time.time(),
            q.max_key_sets,
            q.max_key_bytes,
            client,
        )
        if int(code):
            what = (
                f"{q.max_key_sets} key sets" if int(code) == 1 else f"{q.max_key_bytes} key bytes"
            )
            raise base.QuotaExceededError(f"client {client} holds {what} already", float(frees))

    def owns_key(self, client: str, key_id: str) -> bool:
        expires = self._call(self._r.zscore, self._k("client", client, "keys"), key_id)
        return expires is not None and float(expires) > time.time()

    def client_keys(self, client: str) -> list[str]:
        now = time.time()
        members = self._call(self._r.zrangebyscore, self._k("client", client, "keys"), now, "+inf")
        return [m.decode() for m in members]

    def release_key(self, client: str, key_id: str) -> int:
        tx = self._r.pipeline(transaction=True)
        tx.zrem(self._k("client", client, "keys"), key_id)
        tx.hdel(self._k("client", client, "keybytes"), key_id)
        tx.srem(self._k("key", key_id, "owners"), client)
        tx.scard(self._k("key", key_id, "owners"))
        return int(self._call(tx.execute)[-1])

    _SPEND = """
    local queries, limit, window = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
    local t = redis.call('TIME')
    local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
    redis.call('ZREMRANGEBYSCORE', queries, '-inf', now - window)
    if redis.call('ZCARD', queries) >= limit then
      local oldest = redis.call('ZRANGE', queries, 0, 0, 'WITHSCORES')
      return tostring(tonumber(oldest[2]) + window - now)
    end
    redis.call('ZADD', queries, now, ARGV[3])
    redis.call('EXPIRE', queries, math.ceil(window) + 1)
    return '0'
    """

    def spend_query(self, client: str, per_day: int) -> None:
        wait = float(
            self._call(
                self._r.eval,
                self._SPEND,
                1,
                self._k("client", client, "queries"),
                per_day,
                base.DAY_SECONDS,
                secrets.token_hex(8),
            )
        )
        if wait > 0:
            raise base.QuotaExceededError(
                f"client {client} has asked its {per_day} queries of the last 24 hours", wait
            )

    def usage(self, client: str) -> base.Usage:
        now = time.time()
        keys = self.client_keys(client)
        sizes = (
            self._call(self._r.hmget, self._k("client", client, "keybytes"), keys) if keys else []
        )
        queries = self._call(
            self._r.zcount, self._k("client", client, "queries"), now - base.DAY_SECONDS, "+inf"
        )
        return base.Usage(len(keys), sum(int(s or 0) for s in sizes), int(queries))
