"""The checksum each prediction chunk carries, computed identically by server and client."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable


def chunk_checksum(
    chunk_index: int, first_item: int, count: int, model_version: str, ciphertexts: Iterable[bytes]
) -> bytes:
    """sha256 over the chunk's position, version and ciphertexts (each length-prefixed)."""
    h = hashlib.sha256(struct.pack(">iii", chunk_index, first_item, count))
    h.update(model_version.encode())
    for c in ciphertexts:
        h.update(struct.pack(">Q", len(c)))
        h.update(c)
    return h.digest()
