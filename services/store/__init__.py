"""Where services keep model versions and keys: Redis (deployment) or a directory (embedded)."""

from __future__ import annotations

from pathlib import Path

from cryptorec.services.store.base import Store, StoreUrlError


def open_store(url: str, prefix: str = "cryptorec:") -> Store:
    """A Redis URL (services/store/redis_connect.py: one server, Sentinel or Cluster) or
    `file://DIR` (or a plain path) to a Store."""
    from cryptorec.services.store.redis_connect import SCHEMES

    if url.startswith(SCHEMES):
        from cryptorec.services.store.redis_store import RedisStore

        return RedisStore(url, prefix)
    scheme, sep, _ = url.partition("://")
    if sep and scheme != "file":
        raise StoreUrlError(
            f"store URL scheme {scheme}:// is not one this service speaks: use a directory "
            f"(file://DIR or a path) or {', '.join(SCHEMES)}"
        )
    path = url.removeprefix("file://")
    from cryptorec.services.store.file_store import FileStore

    return FileStore(Path(path))
