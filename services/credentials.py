"""Credentials: who may ask. Clients, their bearer tokens and quotas (the operator's
`cryptorec clients`; `services/client/` is the client library, the other side).

A token is 32 random bytes, URL-safe base64, shown once when the client is added or its token
rotated; the store keeps only its sha256 (a random 256-bit secret needs no slow hash: there is
nothing to guess). A token may expire; a rotation gives a new one and keeps the old one working
for a grace period, so the client can switch without an outage. Every add, rotation and
revocation is an audit log line (logger `cryptorec.audit`): who, what, the token's
fingerprint (never the token), when it expires.
"""

from __future__ import annotations

import dataclasses
import getpass
import hashlib
import logging
import secrets
import socket
import time

from cryptorec.services.errors import BadRequestError
from cryptorec.services.store.base import (
    ClientRecord,
    ClientStore,
    NotFoundError,
    Quotas,
    StoreHealth,
    check_client_name,
)

TOKEN_PREFIX = "crt_"
audit = logging.getLogger("cryptorec.audit")


def token_sha256(token: str) -> str:
    """What the store keeps of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


# What one client may hold of the store's room for key sets when the operator does not say:
# an eighth (a CKKS accurate key set of 105 MB fits in an eighth of 1 GB), at most 1 GiB.
KEY_ALLOWANCE_SHARE = 8
MAX_KEY_ALLOWANCE = 1 << 30


def key_allowance(store: StoreHealth, model_reserve: int) -> int:
    """The default key bytes of a new client: an eighth of the store's memory that key sets
    may use (its limit less `model_reserve`), at most 1 GiB; 1 GiB for an unbounded store."""
    space = store.space()
    if space is None:
        return MAX_KEY_ALLOWANCE
    room = max(0, space.limit - model_reserve)
    return max(1 << 20, min(MAX_KEY_ALLOWANCE, room // KEY_ALLOWANCE_SHARE))


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def add_client(
    store: ClientStore, name: str, quotas: Quotas, expires_in: float | None = None
) -> str:
    """Let `name` in with `quotas` (its token expiring after `expires_in` seconds; None:
    never); returns its new bearer token (the only time it is seen)."""
    token, now = new_token(), time.time()
    expires = now + expires_in if expires_in else None
    if expires_in is not None and expires_in <= 0:
        raise BadRequestError(
            f"expires_in {expires_in:g} s: a token must live a while", "expires_in"
        )
    record = ClientRecord(
        check_client_name(name), token_sha256(token), quotas.checked(), now, expires
    )
    store.add_client(record)
    _audit("add", record, quotas=dataclasses.asdict(quotas))
    return token


def rotate_client(
    store: ClientStore, name: str, grace_seconds: float, expires_in: float | None = None
) -> tuple[str, ClientRecord]:
    """Give `name` a new token (expiring after `expires_in` seconds; None: never); its current
    one keeps working for `grace_seconds` more (0: stops at once). The new token and record."""
    old = client_named(store, name)
    token, now = new_token(), time.time()
    record = dataclasses.replace(
        old,
        token_sha256=token_sha256(token),
        expires_unix=now + expires_in if expires_in else None,
        previous_token_sha256=old.token_sha256 if grace_seconds > 0 else None,
        previous_valid_until=now + grace_seconds if grace_seconds > 0 else 0.0,
    )
    store.replace_client(record)
    _audit("rotate", record, grace_seconds=grace_seconds, replaced=fingerprint(old.token_sha256))
    return token, record


def revoke_client(store: ClientStore, name: str) -> None:
    """Shut `name` out: its tokens stop at once and its key sets go (the store's
    remove_client)."""
    record = client_named(store, name)
    store.remove_client(name)
    _audit("revoke", record)


def client_named(store: ClientStore, name: str) -> ClientRecord:
    """The record of client `name`; NotFoundError if there is none."""
    check_client_name(name)
    for record in store.clients():
        if record.name == name:
            return record
    raise NotFoundError(f"client {name} not found")


def fingerprint(sha: str) -> str:
    """A token's name in logs: the first 12 hex digits of its sha256 (not enough to use)."""
    return sha[:12]


def _audit(action: str, record: ClientRecord, **details: object) -> None:
    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # a container's user without a passwd entry
        who = "unknown"
    audit.info(
        "client %s: %s",
        record.name,
        action,
        extra={
            "audit_action": action,
            "client": record.name,
            "token": fingerprint(record.token_sha256),
            "expires_unix": record.expires_unix,
            "actor": f"{who}@{socket.gethostname()}",
            **details,
        },
    )


def parse_bearer(value: str) -> str | None:
    """The token of an `authorization: Bearer TOKEN` value, or None if it is not one."""
    scheme, _, token = value.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 256:
        return None
    return token
