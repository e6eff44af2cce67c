"""The store contract shared by the Redis and local-directory backends.

Model versions are immutable bundles of named blobs (the model artifact, the catalogue, ...),
each kept as chunks. Publishing writes every chunk and a manifest, reads them back to verify
their sha256, and only then moves the `current` pointer, atomically: a publisher that dies
before that leaves the previous version serving and, at worst, an orphan that `retain` removes.
Key sets are single blobs with a time to live, addressed by the sha256 of their content.

Failures: every operation raises NotFoundError for an unknown version or key id,
ValueError for an id that could never exist, StoreFullError when the backend has no room,
and StoreError (CorruptError for bad bytes) when the backend is unreachable or broken;
nothing else escapes. tests/test_store.py holds both backends to this.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from cryptorec.services.errors import BadRequestError
from libcryptorec.he.backend import Blob, KeySet
from libcryptorec.model import STARS

# Chunks well under Redis' 512 MB value limit and gRPC's 4 MiB default message size.
CHUNK_BYTES = 1 << 20
VERSION_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")


class StoreError(RuntimeError):
    """The store is unreachable or returned something inconsistent (retry may help)."""


class NotFoundError(KeyError):
    """No such model version, key id or client (or it expired)."""


class ModelNotFoundError(NotFoundError):
    """No such model version, or none of the kind asked for."""


class KeyNotFoundError(NotFoundError):
    """No key set under this id: never registered, expired or deleted (register it again)."""


class CorruptError(StoreError):
    """Stored bytes do not match their recorded sha256."""


class StoreFullError(StoreError):
    """The store refuses writes for lack of space (Redis at `maxmemory` with `noeviction`, a
    full disk): nothing was written; retry once space is freed."""


@dataclass(frozen=True)
class VersionInfo:
    """A published model version: id, publication time and a small summary for listings."""

    version: str
    created_unix: float
    summary: dict[str, Any]


@dataclass(frozen=True)
class KeyRecord:
    """A registered key set: what it is for and its blob layout (`keys`), and the bytes."""

    key_id: str
    keys: KeySet
    blob: Blob
    expires_unix: float


@dataclass(frozen=True)
class KeyInfo:
    """A registered key set without its bytes (cheap to read on every request)."""

    key_id: str
    keys: KeySet
    size: int
    expires_unix: float


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class InvalidIdError(BadRequestError):
    """A version or key id that no store could hold (syntax or length): a client's mistake."""


def shown(value: str, limit: int = 40) -> str:
    """`value` for a message or a log line: escaped, and cut to `limit` characters so that a
    hostile megabyte-long id costs a line, not a megabyte."""
    text = repr(value[:limit])
    return text if len(value) <= limit else f"{text}... ({len(value)} chars)"


def check_version_id(version: str) -> str:
    """Refuse ids that could escape a directory or a Redis key namespace."""
    if not version or len(version) > 64 or not set(version) <= VERSION_CHARS or version[0] == ".":
        raise InvalidIdError(
            f"invalid version id {shown(version)}: use [a-z0-9-_.], at most 64 chars"
        )
    return version


KEY_ID_LENGTH = 32
_HEX = set("0123456789abcdef")


def check_key_id(key_id: str) -> str:
    """Refuse anything but the 32 lowercase hex digits `key_id_for` makes."""
    if len(key_id) != KEY_ID_LENGTH or not set(key_id) <= _HEX:
        raise InvalidIdError(
            f"invalid key id {shown(key_id)}: expected {KEY_ID_LENGTH} lowercase hex digits"
        )
    return key_id


def version_kind(info: VersionInfo) -> str:
    """The kind of model a version holds ("stars" or "ranking"), from its summary; versions
    published before kinds existed are stars."""
    return str(info.summary.get("kind", STARS))


def versions_to_drop(store: ModelStore, keep: int) -> list[str]:
    """The complete versions `retain(keep)` deletes: all but the newest `keep`, never the
    current one nor the newest of each kind (a deployment serves one of each at once)."""
    current = store.current()
    complete = store.versions()
    newest_of_kind = {version_kind(v): v.version for v in complete}  # oldest first: newest wins
    kept = {current, *newest_of_kind.values()}
    return [v.version for v in complete[: max(0, len(complete) - keep)] if v.version not in kept]


def chunks(blob: bytes) -> Iterator[bytes]:
    for start in range(0, max(len(blob), 1), CHUNK_BYTES):
        yield blob[start : start + CHUNK_BYTES]


def manifest_for(version: str, parts: dict[str, bytes], summary: dict[str, Any]) -> bytes:
    """The JSON manifest of a version: per part its size, chunk count and sha256."""
    return json.dumps(
        {
            "version": version,
            "created_unix": time.time(),
            "summary": summary,
            "parts": {
                name: {
                    "size": len(blob),
                    "chunks": len(list(chunks(blob))),
                    "sha256": sha256_hex(blob),
                }
                for name, blob in parts.items()
            },
        },
        sort_keys=True,
    ).encode()


def verify_parts(manifest: dict[str, Any], parts: dict[str, bytes]) -> None:
    """Raise CorruptError unless every part matches the manifest's size and sha256."""
    for name, spec in manifest["parts"].items():
        blob = parts.get(name)
        if blob is None or len(blob) != spec["size"] or sha256_hex(blob) != spec["sha256"]:
            raise CorruptError(f"part {name} of version {manifest['version']} is corrupt")


CLIENT_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")
DAY_SECONDS = 24 * 3600


def check_client_name(name: str) -> str:
    """Refuse client names that could escape a directory or a Redis key namespace."""
    if not name or len(name) > 64 or not set(name) <= CLIENT_NAME_CHARS or name[0] in "-_.":
        raise InvalidIdError(f"invalid client name {shown(name)}: use [a-z0-9-_.], at most 64")
    return name


class StoreUrlError(BadRequestError):
    """A store URL this service cannot open: an unknown scheme (never taken for a folder), a
    malformed host or option, an unreadable password file."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "store")


@dataclass(frozen=True)
class Quotas:
    """What one client may hold and ask: key sets (count and bytes) and answered queries per
    rolling day. The defaults suit one person using the service."""

    queries_per_day: int = 100
    max_key_sets: int = 4
    max_key_bytes: int = 1 << 30

    def checked(self) -> Quotas:
        """These quotas, or BadRequestError naming the first one outside its sane range
        (QUOTA_RANGES): a negative budget or a thousand key sets is a typo, not a policy."""
        for name, (low, high) in QUOTA_RANGES.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise BadRequestError(f"{value} is outside {low:,}..{high:,}", name)
        return self


# What an operator may grant one client: at least one of each, at most what one program
# could use (about a hundred queries a second all day; a key set per parameter set and mode,
# many times over; a terabyte of keys).
QUOTA_RANGES = {
    "queries_per_day": (1, 10_000_000),
    "max_key_sets": (1, 64),
    "max_key_bytes": (1 << 20, 1 << 40),
}


@dataclass(frozen=True)
class ClientRecord:
    """A client allowed in: its name, the sha256 of its bearer token (never the token), its
    quotas, when it was added and when its token stops working (None: never). After a
    rotation the previous token keeps working until `previous_valid_until`."""

    name: str
    token_sha256: str
    quotas: Quotas
    created_unix: float
    expires_unix: float | None = None
    previous_token_sha256: str | None = None
    previous_valid_until: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> ClientRecord:
        raw = json.loads(text)
        return cls(
            raw["name"],
            raw["token_sha256"],
            Quotas(**raw["quotas"]),
            raw["created_unix"],
            raw.get("expires_unix"),
            raw.get("previous_token_sha256"),
            raw.get("previous_valid_until", 0.0),
        )

    def holds(self, token_sha256: str) -> bool:
        """Whether the token is this client's, current or previous (valid or not)."""
        return token_sha256 in (self.token_sha256, self.previous_token_sha256)

    def refusal(self, token_sha256: str, now: float) -> str | None:
        """Why this client's token `token_sha256` is refused at `now`, or None if it works."""
        if token_sha256 == self.previous_token_sha256 and token_sha256 != self.token_sha256:
            return None if now < self.previous_valid_until else "token replaced by a newer one"
        if self.expires_unix is not None and now >= self.expires_unix:
            return "token expired"
        return None

    def token_expires(self, token_sha256: str) -> float | None:
        """When the token stops working (None: never)."""
        if token_sha256 == self.previous_token_sha256 and token_sha256 != self.token_sha256:
            return self.previous_valid_until
        return self.expires_unix


@dataclass(frozen=True)
class Usage:
    """What a client holds and has asked: key sets, their bytes, queries in the last day and
    when the oldest of those leaves the rolling day (None if there are none)."""

    key_sets: int
    key_bytes: int
    queries_today: int
    oldest_query_unix: float | None = None

    def query_frees_in(self, now: float) -> float:
        """Seconds from `now` until one more query fits in the rolling day."""
        if self.oldest_query_unix is None:
            return 0.0
        return max(0.0, self.oldest_query_unix + DAY_SECONDS - now)


@dataclass(frozen=True)
class Space:
    """Bytes a store holds and may hold: Redis' used_memory and maxmemory (of its fullest
    primary), or a directory's file system."""

    used: int
    limit: int


class QuotaExceededError(Exception):
    """A client's quota or budget is spent (RESOURCE_EXHAUSTED); `retry_after`: seconds until
    some of it frees up, where the store knows; `subject`: whose quota it is ("client:alice",
    "address"), `quota`: which one ("queries_per_day", ...)."""

    def __init__(
        self,
        message: str,
        retry_after: float | None = None,
        subject: str = "",
        quota: str = "",
    ) -> None:
        super().__init__(message)
        self.retry_after, self.subject, self.quota = retry_after, subject, quota


def budget_spent(client: str, per_day: int, wait: float) -> QuotaExceededError:
    """The refusal of a query beyond `client`'s budget; `wait`: seconds until one frees."""
    return QuotaExceededError(
        f"client {client} has asked its {per_day} queries of the last 24 hours",
        wait,
        subject=f"client:{client}",
        quota="queries_per_day",
    )


def key_quota_full(client: str, q: Quotas, by_count: bool, frees: float) -> QuotaExceededError:
    """The refusal of a key set beyond `client`'s quotas: the count (`by_count`) or bytes."""
    what = f"{q.max_key_sets} key sets" if by_count else f"{q.max_key_bytes} key bytes"
    return QuotaExceededError(
        f"client {client} holds {what} already",
        frees,
        subject=f"client:{client}",
        quota="max_key_sets" if by_count else "max_key_bytes",
    )


class ModelStore(Protocol):
    """Model versions: published whole or not at all, the current one, old ones retained."""

    def publish(self, version: str, parts: dict[str, bytes], summary: dict[str, Any]) -> None:
        """Write an immutable version, verify it, then make it current."""
        ...

    def current(self) -> str | None:
        """The current version id, or None before the first publication."""
        ...

    def versions(self) -> list[VersionInfo]:
        """Complete versions, oldest first."""
        ...

    def read(self, version: str) -> tuple[VersionInfo, dict[str, bytes]]:
        """A version's info and verified parts; NotFoundError if it is not complete."""
        ...

    def retain(self, keep: int) -> list[str]:
        """Delete all but the newest `keep` versions (never the current one) and orphans."""
        ...


class KeyStore(Protocol):
    """Registered key sets by key id (public keys only), expiring after their TTL."""

    def put_key(self, keys: KeySet, blob: Blob, ttl_seconds: int) -> KeyRecord:
        """Store a key set under sha256(keys, blob); re-registering refreshes the TTL."""
        ...

    def get_key(self, key_id: str) -> KeyRecord:
        """A registered key set; NotFoundError if unknown or expired."""
        ...

    def key_info(self, key_id: str) -> KeyInfo:
        """A registered key set's metadata and size, without reading its bytes."""
        ...

    def delete_key(self, key_id: str) -> None: ...


class ClientStore(Protocol):
    """Clients with their tokens and quotas, the key sets each owns, and their budgets of
    queries (counted atomically across replicas)."""

    def add_client(self, record: ClientRecord) -> None:
        """Let a client in; ValueError if the name is taken."""
        ...

    def client_by_token(self, token_sha256: str) -> ClientRecord:
        """The client a token belongs to; NotFoundError if none (or it was removed)."""
        ...

    def clients(self) -> list[ClientRecord]:
        """Every client, by name."""
        ...

    def replace_client(self, record: ClientRecord) -> None:
        """Store a client's changed record (a rotated token, a new expiry): its tokens, current
        and previous, lead to it; NotFoundError if the client is unknown."""
        ...

    def remove_client(self, name: str) -> None:
        """Shut a client out: its token stops working at once, its usage is forgotten and it
        owns no key set any more (those nobody else owns are deleted), so a client added
        later under the same name starts afresh. NotFoundError if unknown."""
        ...

    def claim_key(
        self, client: str, key_id: str, size: int, expires_unix: float, q: Quotas
    ) -> None:
        """Record (atomically) that `client` owns key set `key_id` of `size` bytes until
        `expires_unix`; QuotaExceededError if that would exceed its key-set quotas. Claiming a
        key set it owns already only refreshes the expiry."""
        ...

    def owns_key(self, client: str, key_id: str) -> bool:
        """Whether `client` owns key set `key_id` (and it has not expired)."""
        ...

    def client_keys(self, client: str) -> list[str]:
        """The key sets `client` owns, unexpired."""
        ...

    def release_key(self, client: str, key_id: str) -> int:
        """Drop `client`'s ownership of `key_id`; the number of owners left."""
        ...

    def spend_query(self, client: str, per_day: int) -> str:
        """Count (atomically, across every replica) one query of `client` in the rolling day
        and return its receipt; QuotaExceededError with the seconds until the oldest counted
        one leaves the window if `per_day` are spent already (nothing is counted then)."""
        ...

    def refund_query(self, client: str, receipt: str) -> None:
        """Uncount the query `spend_query` gave `receipt` for (it was not answered); a
        receipt already refunded, or out of the window, changes nothing."""
        ...

    def usage(self, client: str) -> Usage:
        """What `client` holds and has asked now."""
        ...


class StoreHealth(Protocol):
    """Whether the store answers and how full it is."""

    def ping(self) -> None:
        """Raise StoreError unless the backend answers."""
        ...

    def space(self) -> Space | None:
        """What the store holds and may hold, None if it is not bounded."""
        ...


class Store(ModelStore, KeyStore, ClientStore, StoreHealth, Protocol):
    """Everything services keep: model versions, registered keys, clients and their use. A
    backend (FileStore, RedisStore) implements all of it; a caller names the roles it uses."""


def key_id_for(keys: KeySet, blob: Blob) -> str:
    """Content address of a key set: same keys, same id, so registration is idempotent."""
    h = hashlib.sha256(keys.to_json().encode())
    h.update(blob)
    return h.hexdigest()[:KEY_ID_LENGTH]


def info_from_manifest(manifest: dict[str, Any]) -> VersionInfo:
    return VersionInfo(manifest["version"], float(manifest["created_unix"]), manifest["summary"])


def record_json(record: KeyRecord) -> str:
    """What the store keeps beside a key set's bytes: its metadata, size and expiry."""
    return json.dumps(
        {
            "key_id": record.key_id,
            "meta": record.keys.to_dict(),
            "size": len(record.blob),
            "expires_unix": record.expires_unix,
        }
    )


def info_from_record(key_id: str, stored: str | bytes) -> KeyInfo:
    """The KeyInfo of a stored `record_json`."""
    raw = json.loads(stored)
    keys = KeySet.from_dict(raw["meta"])
    return KeyInfo(key_id, keys, int(raw["size"]), float(raw["expires_unix"]))
