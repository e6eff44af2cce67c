"""Who may ask: clients, their bearer tokens and quotas (the operator's `cryptorec clients`).

A token is 32 random bytes, URL-safe base64, shown once when the client is added; the store
keeps only its sha256 (a random 256-bit secret needs no slow hash: there is nothing to guess).
"""

from __future__ import annotations

import hashlib
import secrets
import time

from cryptorec.services.store.base import ClientRecord, Quotas, Store, check_client_name

TOKEN_PREFIX = "crt_"


def token_sha256(token: str) -> str:
    """What the store keeps of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def add_client(store: Store, name: str, quotas: Quotas) -> str:
    """Let `name` in with `quotas`; returns its new bearer token (the only time it is seen)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = ClientRecord(check_client_name(name), token_sha256(token), quotas, time.time())
    store.add_client(record)
    return token


def parse_bearer(value: str) -> str | None:
    """The token of an `authorization: Bearer TOKEN` value, or None if it is not one."""
    scheme, _, token = value.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 256:
        return None
    return token
