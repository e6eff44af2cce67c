"""A query computed off the serving thread, its replies handed on as they are computed; and
a fast-mode query by item shards (scatter-gather).

By shards: each shard's input blocks go to whoever computes that shard (this process or a
peer), the shards' partial first products are added, the sum goes to every shard, and each
reply block is handed on as soon as any shard has computed it. Partial products stay between
the servers: decrypted, a chosen input's partial reveals rows of the model.

Producers run in threads of their own and feed a queue that the serving thread drains, so a
client that reads slowly never holds a work slot or the computation back.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypeVar

from libcryptorec.he.cancel import StopCheck
from libcryptorec.he.shards import split_query

T = TypeVar("T")
Producer = Callable[[StopCheck], Iterator[T]]


@dataclass(frozen=True)
class ReplyBlock:
    """One reply ciphertext and the catalogue items [first_item, first_item + count) it
    carries."""

    first_item: int
    count: int
    ciphertext: bytes


class ShardCalls(Protocol):
    """Who computes each shard: this process, or peers over gRPC (with retries)."""

    def first(self, shard: int, ciphertexts: list[bytes], should_stop: StopCheck) -> bytes:
        """The shard's partial first product for its input blocks."""
        ...

    def second(self, shard: int, first: bytes, should_stop: StopCheck) -> Iterator[bytes]:
        """The shard's reply blocks, in order, each as soon as it is computed."""
        ...


_DONE = object()


def merged(
    producers: list[Producer[T]],
    should_stop: StopCheck,
    on_finish: Callable[[], None] | None = None,
) -> Iterator[T]:
    """Run each producer in a thread of its own (told to stop once `should_stop()` or once
    this iterator is closed) and yield their items as they arrive; the first error of any
    producer is raised here, and the others are told to stop. `on_finish()` runs once the last
    producer is done. Threads start with a copy of the caller's context (the call being
    served, its trace)."""
    items: queue.Queue[object] = queue.Queue()
    stop = threading.Event()
    remaining, lock = [len(producers)], threading.Lock()

    def stopping() -> bool:
        return stop.is_set() or should_stop()

    def run(producer: Producer[T]) -> None:
        try:
            for item in producer(stopping):
                items.put(item)
                if stop.is_set():
                    break
        except BaseException as exc:  # handed to the consumer, which raises it
            items.put(exc)
        finally:
            with lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last and on_finish is not None:
                on_finish()
            items.put(_DONE)

    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(run, p), daemon=True)
        for p in producers
    ]
    for thread in threads:
        thread.start()
    try:
        running = len(threads)
        while running:
            item = items.get()
            if item is _DONE:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item  # type: ignore[misc]
    finally:
        stop.set()


def in_parallel(tasks: list[Callable[[], T]]) -> list[T]:
    """The results of `tasks`, run at the same time, in order; the first error is raised."""
    if len(tasks) == 1:
        return [tasks[0]()]
    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        futures = [pool.submit(task) for task in tasks]
        return [f.result() for f in futures]


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
                start = (runs[s].start + c) * items_per_block
                yield ReplyBlock(start, max(0, min(items_per_block, items - start)), reply)

        return produce

    yield from merged([shard_replies(s) for s in range(len(runs))], should_stop, on_finish)
