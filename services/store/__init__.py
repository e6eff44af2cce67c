"""Where services keep model versions and keys: Redis (deployment) or a directory (embedded)."""

from __future__ import annotations

from pathlib import Path

from cryptorec.services.store.base import Store


def open_store(url: str, prefix: str = "cryptorec:") -> Store:
    """A Redis URL (services/store/redis_connect.py: one server, Sentinel or Cluster) or
    `file://DIR` (or a plain path) to a Store."""
    from cryptorec.services.store.redis_connect import SCHEMES

    if url.startswith(SCHEMES):
        from cryptorec.services.store.redis_store import RedisStore

        return RedisStore(url, prefix)
    path = url.removeprefix("file://")
    from cryptorec.services.store.file_store import FileStore

    return FileStore(Path(path))
