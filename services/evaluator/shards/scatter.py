"""A fast-mode query by item shards (scatter-gather): each shard's input blocks go to whoever
computes that shard (this process or a peer), the shards' partial first products are added,
the sum goes to every shard, and each reply block is handed on as soon as any shard has
computed it. Partial products stay between the servers: decrypted, a chosen input's partial
reveals rows of the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from cryptorec.services.evaluator.concurrency import Producer, in_parallel, merged
from libcryptorec.he.cancel import StopCheck
from libcryptorec.he.shards import split_query


@dataclass(frozen=True)
class ReplyBlock:
    """One reply ciphertext and the catalogue items [first_item, first_item + count) it
    carries."""

    first_item: int
    count: int
    ciphertext: bytes

    @classmethod
    def numbered(cls, index: int, per_block: int, items: int, ciphertext: bytes) -> ReplyBlock:
        """Reply block `index` of a catalogue of `items`, `per_block` items to a block (the
        last one carries what is left)."""
        first = index * per_block
        return cls(first, max(0, min(per_block, items - first)), ciphertext)


class ShardCalls(Protocol):
    """Who computes each shard: this process, or peers over gRPC (with retries)."""

    def first(self, shard: int, ciphertexts: list[bytes], should_stop: StopCheck) -> bytes:
        """The shard's partial first product for its input blocks."""
        ...

    def second(self, shard: int, first: bytes, should_stop: StopCheck) -> Iterator[bytes]:
        """The shard's reply blocks, in order, each as soon as it is computed."""
        ...


def scatter_gather(
    ciphertexts: list[bytes],
    runs: list[range],
    calls: ShardCalls,
    combine: Callable[[list[bytes]], bytes],
    *,
    items: int,
    items_per_block: int,
    should_stop: StopCheck,
    on_finish: Callable[[], None] | None = None,
) -> Iterator[ReplyBlock]:
    """A fast-mode query by the shards `runs` (item blocks of each): the reply blocks, each
    with its items, as the shards compute them (not in item order). `on_finish()` once the
    last block is computed."""
    parts = split_query(ciphertexts, runs)
    partials = in_parallel(
        [
            (lambda s=s: calls.first(s, parts[s], should_stop))  # type: ignore[misc]
            for s in range(len(runs))
        ]
    )
    first = combine(partials) if len(partials) > 1 else partials[0]

    def shard_replies(s: int) -> Producer[ReplyBlock]:
        def produce(stop: StopCheck) -> Iterator[ReplyBlock]:
            for c, reply in enumerate(calls.second(s, first, stop)):
                yield ReplyBlock.numbered(runs[s].start + c, items_per_block, items, reply)

        return produce

    yield from merged([shard_replies(s) for s in range(len(runs))], should_stop, on_finish)
