"""What one shard call carries: the version, the key set, the backend, which shard of how
many (the ShardService's request, and this process' own shard calls)."""

from __future__ import annotations

from dataclasses import dataclass

from libcryptorec.he.backend import Backend

# How long a shard call waits for a work slot: the router admitted the query already, so
# waiting briefly beats failing the whole query; beyond it the router tries another peer.
SHARD_SLOT_WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class ShardTask:
    """One shard of an admitted query, as a peer is asked for it (ShardService)."""

    version: str
    key_id: str
    backend: Backend
    shard: int
    shard_count: int
