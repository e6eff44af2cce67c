"""The two stream shapes of the API, written once: a request stream of a header then chunks
(RegisterKeys, Predict), and payloads cut into messages of about CHUNK_BYTES."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from cryptorec.services.errors import BadRequestError


def header_then_chunks(
    requests: Iterator[Any], header: str = "header", chunk: str = "chunk"
) -> tuple[Any, Iterator[Any]]:
    """The first message's `header` part and an iterator over the `chunk` parts of the rest
    (both fields of the messages' `part` oneof); INVALID_ARGUMENT if the shape is broken."""
    first = next(requests, None)
    if first is None or first.WhichOneof("part") != header:
        raise BadRequestError(f"the first message must be a {header}")

    def chunks() -> Iterator[Any]:
        for message in requests:
            if message.WhichOneof("part") != chunk:
                raise BadRequestError(f"only {chunk}s may follow the {header}")
            yield getattr(message, chunk)

    return getattr(first, header), chunks()


def groups_by_bytes(sizes: Sequence[int], limit: int) -> list[range]:
    """Consecutive index ranges over items of `sizes` bytes, each at most `limit` bytes (an item
    larger than `limit` goes alone), in order."""
    groups: list[range] = []
    start, total = 0, 0
    for i, size in enumerate(sizes):
        if i > start and total + size > limit:
            groups.append(range(start, i))
            start, total = i, 0
        total += size
    if start < len(sizes):
        groups.append(range(start, len(sizes)))
    return groups


def slices(data: bytes, limit: int) -> Iterator[bytes]:
    """`data` in pieces of at most `limit` bytes."""
    for start in range(0, len(data), limit):
        yield data[start : start + limit]
