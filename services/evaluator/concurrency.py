"""Work off the serving thread: producers run in threads of their own and feed a queue that
the serving thread drains (`merged`), so a client that reads slowly never holds a work slot
or the computation back; and tasks run side by side (`in_parallel`)."""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from libcryptorec.he.cancel import StopCheck

T = TypeVar("T")
Producer = Callable[[StopCheck], Iterator[T]]

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
