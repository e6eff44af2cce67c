"""The deployment store: Redis, shared by every replica; one server, a Sentinel-managed primary
with replicas, or a Redis Cluster (services/store/redis_connect.py reads the URL).

Keys (prefix `cryptorec:` by default), each group under one hash tag so that every
multi-key operation stays in one Cluster slot:

    {models}                 sorted set of complete versions by publication time
    {models}:current         the current version's id
    {model:V}:manifest       a version's manifest; {model:V}:part:NAME:I its chunks
    {key:ID}:blob, :meta     a key set and its metadata (with a TTL); :owners who holds it
    {client:NAME}            a client's record; :keys (sorted set of key ids by expiry),
                             :keybytes (key id -> size), :queries (sorted set of receipts)
    {token:SHA256}           the client a token hash belongs to

Publishing writes a version's chunks and manifest, reads them back to verify, then lists the
version and moves the pointer: evaluators read the pointer per request (one GET), so a new
version serves from the next request on and a publisher that dies earlier leaves the previous
one serving. A write is acknowledged once it is on the primary and, with `wait_replicas`, on
that many replicas (WAIT, sent on the write's own connection): what was acknowledged survives
a failover. Writes are idempotent, so a retry after a lost reply changes nothing twice.

Model versions and the pointer carry no TTL; run Redis with `maxmemory-policy noeviction`
(k8s/base/redis.yaml): when full, it refuses writes (StoreFullError, RESOURCE_EXHAUSTED) and
never evicts a model. Every Redis failure surfaces as StoreError.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis
from redis.cluster import RedisCluster

from cryptorec.services.store import base
from cryptorec.services.store.redis_connect import FAILOVER_SECONDS, RedisTarget, connect, parse
from libcryptorec.he.backend import Blob, KeySet

log = logging.getLogger("cryptorec.store")
# How fast a replica takes a write in, for WAIT's timeout on large writes (model versions):
# bytes per millisecond, a cautious 50 MB/s.
REPLICATION_BYTES_PER_MS = 50_000
IN_SYNC_SECONDS = 1.0
Pipe = Any  # redis' Pipeline; its type is generic in ways the stubs do not agree on


class RedisStore:
    """A `Store` in Redis. Connection errors surface as StoreError."""

    def __init__(self, url: str, prefix: str = "cryptorec:") -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"store prefix {prefix!r}: braces would break the hash tags")
        self.target: RedisTarget = parse(url)
        self.prefix = prefix
        try:
            self._r = connect(self.target)
        except redis.RedisError as exc:  # a Cluster is asked for its slots at once
            raise base.StoreError(f"Redis at {self._where} unavailable: {exc}") from exc
        self._cluster = isinstance(self._r, RedisCluster)
        self._migrated = False
        self._degraded_logged = -1e9
        self._in_sync_seen: dict[str, tuple[int, float]] = {}

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r}, prefix={self.prefix!r})"

    @property
    def _where(self) -> str:
        return self.target.where

    def _k(self, tag: str, *rest: str) -> str:
        """A key in group `tag` ("models", "model:V", "client:NAME", ...)."""
        self._migrate_once()
        return self.prefix + "{" + tag + "}" + "".join(":" + r for r in rest)

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args) with every Redis failure turned into the store's errors."""
        try:
            return fn(*args)
        except (
            redis.ConnectionError,
            redis.TimeoutError,
            redis.exceptions.RedisClusterException,  # no node of a Cluster answers
        ) as exc:
            raise base.StoreError(f"Redis at {self._where} unavailable: {exc}") from exc
        except redis.RedisError as exc:
            if isinstance(exc, redis.exceptions.OutOfMemoryError) or "OOM" in str(exc):
                raise base.StoreFullError(f"Redis at {self._where} is full (maxmemory)") from exc
            raise base.StoreError(f"Redis at {self._where} failed: {exc}") from exc

    def _write(self, slot_key: str, queue: Callable[[Pipe], None], nbytes: int = 0) -> list[Any]:
        """Run the commands `queue` adds to a pipeline (all on `slot_key`'s slot, about
        `nbytes` in all) on one connection and, with `wait_replicas`, WAIT until that many
        replicas hold them; the commands' replies.

        A write is retried (every write here is idempotent) until the replicas confirm it,
        for up to FAILOVER_SECONDS; then StoreError. With fewer replicas in sync than asked
        for (one died, or is resyncing after a failover), a write waits for those there are:
        a store that lost a node keeps working, with fewer copies, and says so in the log."""
        wait = self.target.wait_replicas
        timeout_ms = self.target.wait_timeout_ms + nbytes // REPLICATION_BYTES_PER_MS
        deadline = time.monotonic() + FAILOVER_SECONDS
        while True:
            attempt: tuple[int, list[Any]] = self._call(
                self._attempt, slot_key, queue, wait, timeout_ms
            )
            wanted, replies = attempt
            if wanted < wait:
                self._note_degraded(wanted, wait)
            if not wanted:
                return replies
            answers, confirmed = replies[:-1], int(replies[-1])
            if confirmed >= wanted:
                return answers
            self._in_sync_seen.clear()  # a replica fell behind or left: look again
            if time.monotonic() > deadline:
                raise base.StoreError(
                    f"Redis at {self._where}: {confirmed} of {wanted} replicas confirmed a "
                    f"write within {FAILOVER_SECONDS:.0f} s"
                )
            time.sleep(0.2)

    def _attempt(
        self, slot_key: str, queue: Callable[[Pipe], None], wait: int, timeout_ms: int
    ) -> tuple[int, list[Any]]:
        """One try of `_write`: the replicas to wait for (those asked for, at most those in
        sync) and the pipeline's replies, with WAIT's last. On a Cluster the pipeline runs on
        the connection of the primary that owns the slot (a WAIT must follow its writes on
        their connection), and follows the slot through a failover; elsewhere the client's
        own retries do (Sentinel)."""

        def once() -> tuple[int, list[Any]]:
            wanted = min(wait, self._in_sync(slot_key)) if wait else 0
            owner = self._slot_owner(slot_key) if self._cluster else self._r
            pipe = owner.pipeline(transaction=False)
            queue(pipe)
            if wanted:
                pipe.execute_command("WAIT", wanted, timeout_ms)
            return wanted, list(pipe.execute())

        if not isinstance(self._r, RedisCluster):
            return once()
        deadline = time.monotonic() + FAILOVER_SECONDS
        delay = 0.05
        while True:
            try:
                return once()
            except (
                redis.ConnectionError,
                redis.TimeoutError,
                redis.ResponseError,
                redis.exceptions.RedisClusterException,
            ) as exc:
                refused = isinstance(exc, redis.ResponseError)
                moved = refused and str(exc).startswith(("MOVED", "CLUSTERDOWN", "TRYAGAIN"))
                if (refused and not moved) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(1.0, delay * 2)
                self._in_sync_seen.clear()
                # If no node answers yet, the next try asks again.
                with contextlib.suppress(redis.exceptions.RedisClusterException):
                    self._r.nodes_manager.initialize()

    def _slot_owner(self, slot_key: str) -> redis.Redis:
        """A client of the Cluster primary that owns `slot_key`'s slot."""
        assert isinstance(self._r, RedisCluster)
        node = self._r.get_node_from_key(slot_key)  # type: ignore[no-untyped-call]
        return self._r.get_redis_connection(node)

    def _in_sync(self, slot_key: str) -> int:
        """How many replicas of the primary holding `slot_key` are in sync with it, as seen
        at most IN_SYNC_SECONDS ago (one INFO a second per primary, not one per write)."""
        primary: Any = self._r
        where = ""
        if isinstance(self._r, RedisCluster):
            node = self._r.get_node_from_key(slot_key)  # type: ignore[no-untyped-call]
            primary, where = self._r.get_redis_connection(node), str(node.name)
        count, seen = self._in_sync_seen.get(where, (0, -1e9))
        if time.monotonic() - seen > IN_SYNC_SECONDS:
            info = primary.info("replication")
            count = sum(
                1 for v in info.values() if isinstance(v, dict) and v.get("state") == "online"
            )
            self._in_sync_seen[where] = (count, time.monotonic())
        return count

    def _note_degraded(self, in_sync: int, wanted: int) -> None:
        now = time.monotonic()
        if now - self._degraded_logged > 60:
            self._degraded_logged = now
            log.warning(
                "store %s: writes are confirmed by %d replicas, %d asked for (wait_replicas)",
                self._where,
                in_sync,
                wanted,
            )

    def ping(self) -> None:
        if self._cluster:
            self._call(lambda: self._r.ping(target_nodes=RedisCluster.PRIMARIES))
        else:
            self._call(self._r.ping)

    def space(self) -> base.Space | None:
        if isinstance(self._r, RedisCluster):
            by_node = self._call(
                lambda: self._r.info("memory", target_nodes=RedisCluster.PRIMARIES)
            )
            # One node's answer comes as is, several as {node: answer}.
            infos = [by_node] if "used_memory" in by_node else list(by_node.values())
        else:
            infos = [self._call(self._r.info, "memory")]
        bounded = [i for i in infos if int(i.get("maxmemory", 0))]
        if not bounded:
            return None
        fullest = max(bounded, key=lambda i: int(i["used_memory"]) / int(i["maxmemory"]))
        return base.Space(int(fullest["used_memory"]), int(fullest["maxmemory"]))

    # --- model versions ------------------------------------------------------------------------

    def publish(self, version: str, parts: dict[str, bytes], summary: dict[str, Any]) -> None:
        base.check_version_id(version)
        tag = f"model:{version}"
        # Listed is complete; chunks of an unlisted one are a failed publication's, to redo.
        if self._call(self._r.zscore, self._k("models"), version) is not None:
            raise ValueError(f"version {version} already exists; versions are immutable")
        manifest = base.manifest_for(version, parts, summary)

        def chunks_and_manifest(pipe: Pipe) -> None:
            for name, blob in parts.items():
                for i, piece in enumerate(base.chunks(blob)):
                    pipe.set(self._k(tag, "part", name, str(i)), piece)
            pipe.set(self._k(tag, "manifest"), manifest)

        self._write(self._k(tag), chunks_and_manifest, sum(len(b) for b in parts.values()))
        self._read_version(version)  # verify what Redis holds before it becomes visible
        created = json.loads(manifest)["created_unix"]

        def list_and_point(pipe: Pipe) -> None:
            pipe.zadd(self._k("models"), {version: created})
            pipe.set(self._k("models", "current"), version)

        self._write(self._k("models"), list_and_point)

    def current(self) -> str | None:
        value = self._call(self._r.get, self._k("models", "current"))
        return value.decode() if value else None

    def versions(self) -> list[base.VersionInfo]:
        names = [v.decode() for v in self._call(self._r.zrange, self._k("models"), 0, -1)]
        out = []
        for v in names:
            raw = self._call(self._r.get, self._k(f"model:{v}", "manifest"))
            if raw:
                out.append(base.info_from_manifest(json.loads(raw)))
        return out

    def read(self, version: str) -> tuple[base.VersionInfo, dict[str, bytes]]:
        base.check_version_id(version)
        if self._call(self._r.zscore, self._k("models"), version) is None:
            raise base.ModelNotFoundError(f"model version {version} not found")
        return self._read_version(version)

    def _read_version(self, version: str) -> tuple[base.VersionInfo, dict[str, bytes]]:
        tag = f"model:{version}"
        raw = self._call(self._r.get, self._k(tag, "manifest"))
        if raw is None:
            raise base.ModelNotFoundError(f"model version {version} not found")
        manifest = json.loads(raw)
        keys, layout = [], []
        for name, spec in manifest["parts"].items():
            keys += [self._k(tag, "part", name, str(i)) for i in range(spec["chunks"])]
            layout.append((name, spec["chunks"]))
        pipe = self._r.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
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
        listed = self._k("models")
        for v, created in self._stored_versions():
            fresh = created is not None and time.time() - created < 3600
            if v not in known and (v in doomed or not fresh):
                # The sorted set first: a half-deleted version is then never listed as complete.
                self._write(listed, functools.partial(_zrem, listed, v))
                self._delete_matching(self._k(f"model:{v}") + "*")
        return doomed

    def _stored_versions(self) -> Iterator[tuple[str, float | None]]:
        """Every version with a manifest (complete or orphaned) and its creation time."""
        start = len(self.prefix + "{model:")
        for key in self._scan(self._k("model:*", "manifest")):
            v = key.decode()[start:].split("}", 1)[0]
            raw = self._call(self._r.get, key)
            yield v, (json.loads(raw)["created_unix"] if raw is not None else None)

    def _scan(self, pattern: str) -> list[bytes]:
        """Every key matching `pattern` (on every primary of a Cluster)."""
        return list(self._call(lambda: list(self._r.scan_iter(match=pattern, count=1000))))

    def _delete_matching(self, pattern: str) -> None:
        found = self._scan(pattern)
        for start in range(0, len(found), 512):
            self._call(self._r.delete, *found[start : start + 512])

    # --- key sets ------------------------------------------------------------------------------

    def put_key(self, keys: KeySet, blob: Blob, ttl_seconds: int) -> base.KeyRecord:
        key_id = base.key_id_for(keys, blob)
        record = base.KeyRecord(key_id, keys, blob, time.time() + ttl_seconds)
        tag = f"key:{key_id}"

        def blob_then_meta(pipe: Pipe) -> None:
            # The metadata last: whoever finds it finds the bytes too.
            pipe.set(self._k(tag, "blob"), blob, ex=ttl_seconds)
            pipe.set(self._k(tag, "meta"), base.record_json(record), ex=ttl_seconds)

        self._write(self._k(tag), blob_then_meta, len(blob))
        return record

    def key_info(self, key_id: str) -> base.KeyInfo:
        base.check_key_id(key_id)
        stored = self._call(self._r.get, self._k(f"key:{key_id}", "meta"))
        if stored is None:
            raise base.KeyNotFoundError(f"key id {key_id} not found or expired")
        return base.info_from_record(key_id, stored)

    def get_key(self, key_id: str) -> base.KeyRecord:
        base.check_key_id(key_id)
        tag = f"key:{key_id}"
        pipe = self._r.pipeline(transaction=False)
        pipe.get(self._k(tag, "meta"))
        pipe.get(self._k(tag, "blob"))
        stored, blob = self._call(pipe.execute)
        if stored is None or blob is None:
            raise base.KeyNotFoundError(f"key id {key_id} not found or expired")
        info = base.info_from_record(key_id, stored)
        return base.KeyRecord(key_id, info.keys, blob, info.expires_unix)

    def delete_key(self, key_id: str) -> None:
        base.check_key_id(key_id)
        tag = f"key:{key_id}"
        self._write(
            self._k(tag), lambda pipe: pipe.delete(self._k(tag, "meta"), self._k(tag, "blob"))
        )

    # --- clients, ownership and budgets --------------------------------------------------------
    # What must be atomic runs as a Lua script on one client's keys (one slot): the key-set
    # quota check and the budget count. A key set's owners live in its own slot and are
    # added before a claim and removed after a release, so a key set is never deleted while
    # somebody's claim on it is recorded.

    def add_client(self, record: base.ClientRecord) -> None:
        base.check_client_name(record.name)
        token, client = self._k(f"token:{record.token_sha256}"), self._k(f"client:{record.name}")
        # The token first: a record is never reachable before its token works, and a token
        # left behind by a failed add names a record that does not exist (unknown token).
        self._write(token, lambda pipe: pipe.set(token, record.name))
        (created,) = self._write(client, lambda pipe: pipe.set(client, record.to_json(), nx=True))
        if not created:
            self._write(token, lambda pipe: pipe.delete(token))
            raise ValueError(f"client {record.name} exists already")

    def client_by_token(self, token_sha256: str) -> base.ClientRecord:
        name = self._call(self._r.get, self._k(f"token:{token_sha256}"))
        raw = self._call(self._r.get, self._k(f"client:{name.decode()}")) if name else None
        if raw is None:
            raise base.NotFoundError("unknown token")
        record = base.ClientRecord.from_json(raw)
        if not record.holds(token_sha256):
            raise base.NotFoundError("unknown token")
        return record

    def replace_client(self, record: base.ClientRecord) -> None:
        token, client = self._k(f"token:{record.token_sha256}"), self._k(f"client:{record.name}")
        self._write(token, lambda pipe: pipe.set(token, record.name))
        (replaced,) = self._write(client, lambda pipe: pipe.set(client, record.to_json(), xx=True))
        if not replaced:
            self._write(token, lambda pipe: pipe.delete(token))
            raise base.NotFoundError(f"client {record.name} not found")
        if record.previous_token_sha256:
            # The old token's key outlives its grace by a day, to say "replaced" meanwhile.
            old = self._k(f"token:{record.previous_token_sha256}")
            until = int(record.previous_valid_until) + base.DAY_SECONDS
            self._write(old, lambda pipe: pipe.expireat(old, until))

    def clients(self) -> list[base.ClientRecord]:
        records = []
        for key in self._scan(self._k("client:*")):
            if key.endswith(b"}"):  # the record itself, not one of its sets
                raw = self._call(self._r.get, key)
                if raw is not None:
                    records.append(base.ClientRecord.from_json(raw))
        return sorted(records, key=lambda r: r.name)

    def remove_client(self, name: str) -> None:
        base.check_client_name(name)
        tag = f"client:{name}"
        raw = self._call(self._r.get, self._k(tag))
        if raw is None:
            raise base.NotFoundError(f"client {name} not found")
        record = base.ClientRecord.from_json(raw)
        # The tokens first: they stop at once, whatever happens to the rest.
        for sha in filter(None, (record.token_sha256, record.previous_token_sha256)):
            token = self._k(f"token:{sha}")
            self._write(token, functools.partial(_delete, token))
        self._write(self._k(tag), lambda pipe: pipe.delete(self._k(tag)))
        for member in self._call(self._r.zrange, self._k(tag, "keys"), 0, -1):
            key_id = member.decode()
            if self.release_key(name, key_id) == 0:
                self.delete_key(key_id)
        self._write(
            self._k(tag),
            lambda pipe: pipe.delete(
                self._k(tag, "keys"), self._k(tag, "keybytes"), self._k(tag, "queries")
            ),
        )

    _CLAIM = """
    local keys, sizes = KEYS[1], KEYS[2]
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
    return {0, '0'}
    """

    def claim_key(
        self, client: str, key_id: str, size: int, expires_unix: float, q: base.Quotas
    ) -> None:
        owners = self._k(f"key:{key_id}", "owners")

        def add_owner(pipe: Pipe) -> None:
            pipe.sadd(owners, client)
            pipe.expireat(owners, int(expires_unix) + 1)

        self._write(owners, add_owner)
        tag = f"client:{client}"
        ((code, frees),) = self._write(
            self._k(tag),
            lambda pipe: pipe.eval(
                self._CLAIM,
                2,
                self._k(tag, "keys"),
                self._k(tag, "keybytes"),
                key_id,
                size,
                expires_unix,
                time.time(),
                q.max_key_sets,
                q.max_key_bytes,
            ),
        )
        if int(code):
            if not self.owns_key(client, key_id):
                self._write(owners, lambda pipe: pipe.srem(owners, client))
            raise base.key_quota_full(client, q, int(code) == 1, float(frees))

    def owns_key(self, client: str, key_id: str) -> bool:
        expires = self._call(self._r.zscore, self._k(f"client:{client}", "keys"), key_id)
        return expires is not None and float(expires) > time.time()

    def client_keys(self, client: str) -> list[str]:
        now = time.time()
        keys = self._k(f"client:{client}", "keys")
        return [m.decode() for m in self._call(self._r.zrangebyscore, keys, now, "+inf")]

    def release_key(self, client: str, key_id: str) -> int:
        tag = f"client:{client}"

        def forget(pipe: Pipe) -> None:
            pipe.zrem(self._k(tag, "keys"), key_id)
            pipe.hdel(self._k(tag, "keybytes"), key_id)

        self._write(self._k(tag), forget)
        owners = self._k(f"key:{key_id}", "owners")

        def drop_owner(pipe: Pipe) -> None:
            pipe.srem(owners, client)
            pipe.scard(owners)

        return int(self._write(owners, drop_owner)[-1])

    _SPEND = """
    local queries, limit, window = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
    if redis.call('ZSCORE', queries, ARGV[3]) then return '0' end  -- a retry: counted once
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

    def spend_query(self, client: str, per_day: int) -> str:
        receipt = secrets.token_hex(8)
        queries = self._k(f"client:{client}", "queries")
        args = (per_day, base.DAY_SECONDS, receipt)
        try:
            (wait,) = self._write(queries, lambda pipe: pipe.eval(self._SPEND, 1, queries, *args))
        except base.StoreError:
            # Unconfirmed, so unanswered: it must not count if the primary kept it.
            self._try_refund(queries, receipt)
            raise
        if float(wait) > 0:
            raise base.budget_spent(client, per_day, float(wait))
        return receipt

    def refund_query(self, client: str, receipt: str) -> None:
        queries = self._k(f"client:{client}", "queries")
        self._write(queries, lambda pipe: pipe.zrem(queries, receipt))

    def _try_refund(self, queries: str, receipt: str) -> None:
        try:
            self._call(self._r.zrem, queries, receipt)
        except base.StoreError:
            log.warning("an unconfirmed query could not be uncounted (%s)", self._where)

    def usage(self, client: str) -> base.Usage:
        now = time.time()
        tag = f"client:{client}"
        keys = self.client_keys(client)
        sizes = self._call(self._r.hmget, self._k(tag, "keybytes"), keys) if keys else []
        since = now - base.DAY_SECONDS
        pipe = self._r.pipeline(transaction=False)
        pipe.zrangebyscore(self._k(tag, "queries"), since, "+inf", 0, 1, True)
        pipe.zcount(self._k(tag, "queries"), since, "+inf")
        oldest, count = self._call(pipe.execute)
        first = float(oldest[0][1]) if oldest else None
        return base.Usage(len(keys), sum(int(s or 0) for s in sizes), int(count), first)

    # --- the key layout before hash tags -------------------------------------------------------

    def _migrate_once(self) -> None:
        """Rename keys written before hash tags (CryptoRec 0.1: `prefix current`,
        `prefix key:ID:blob`, ...) to their tagged names, once per process; a no-op on a
        store without them. Renaming keeps TTLs; two replicas doing it at once is harmless."""
        if self._migrated:
            return
        self._migrated = True
        if self._cluster:
            return  # a Cluster store was never written with the old layout
        try:
            old = [k.decode() for k in self._r.scan_iter(match=self.prefix + "[a-z]*", count=1000)]
        except redis.RedisError:
            self._migrated = False  # try again when the store is back
            return
        renamed = 0
        for key in old:
            new = self._tagged(key[len(self.prefix) :])
            if new is not None:
                try:
                    self._r.rename(key, self.prefix + new)
                    renamed += 1
                except redis.ResponseError:  # gone: another replica renamed it
                    pass
        if renamed:
            log.warning("store %s: renamed %d keys to the hash-tagged layout", self._where, renamed)

    @staticmethod
    def _tagged(name: str) -> str | None:
        """The tagged form of an old key name (without prefix), None if it is not one."""
        if name == "models":
            return "{models}"
        if name == "current":
            return "{models}:current"
        group, _, rest = name.partition(":")
        if group not in ("model", "key", "client", "token") or not rest:
            return None
        ident, _, tail = rest.partition(":")
        if group == "model" and tail:  # version ids may not contain ':'; tails may
            return "{model:" + ident + "}:" + tail
        return "{" + f"{group}:{ident}" + "}" + (":" + tail if tail else "")


def _zrem(key: str, member: str, pipe: Pipe) -> None:
    pipe.zrem(key, member)


def _delete(key: str, pipe: Pipe) -> None:
    pipe.delete(key)
