"""Receiving a key set's bytes: into one buffer of the declared size (no growing copies), each
blob's first bytes checked by its backend as soon as they arrive, so a blob that cannot be
what its header says is refused before the rest of it is read."""

from __future__ import annotations

from collections.abc import Iterable

from cryptorec.services.errors import BadRequestError
from cryptorec.services.keys.handler import KeyUpload


def receive_key_bytes(chunks: Iterable[bytes], upload: KeyUpload) -> bytearray:
    """The bytes of `chunks`, exactly `upload.total` of them (BadRequestError for more or
    fewer); InvalidKeyError as soon as a blob's start is refused."""
    data = bytearray(upload.total)
    view = memoryview(data)
    backend = upload.backend
    pending = [
        (name, start, size, min(size, backend.blob_start_bytes))
        for name, start, size in upload.offsets()
        if backend.blob_start_bytes
    ]
    filled = 0
    for chunk in chunks:
        end = filled + len(chunk)
        if end > upload.total:
            raise BadRequestError("more key bytes than the header declared")
        view[filled:end] = chunk
        filled = end
        while pending and filled >= pending[0][1] + pending[0][3]:
            name, start, size, head = pending.pop(0)
            backend.check_blob_start(name, bytes(view[start : start + head]), size)
    if filled != upload.total:
        raise BadRequestError(f"received {filled} key bytes, the header declared {upload.total}")
    return data
