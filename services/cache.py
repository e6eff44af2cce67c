"""A cache bounded by bytes, not by count: what an evaluator process keeps between requests
(models, their encodings, clients' loaded keys) must fit the memory its pod is given."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger("cryptorec.cache")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ByteBudgetCache(Generic[K, V]):
    """Least-recently-used entries are evicted (and closed, if they have `close`) until the
    sizes (`size_of(value)`, bytes) of those kept fit `budget`. An entry larger than the whole
    budget is still kept, alone (unless `keep_oversized` is False): serving it beats rebuilding
    it for every request, and the log says the budget is too small.

    Each key is built once even when several threads ask for it at the same time (encoding a
    model takes seconds and gigabytes; two at once would double both).
    """

    def __init__(
        self,
        budget: int,
        size_of: Callable[[V], int],
        *,
        keep_oversized: bool = True,
        on_lookup: Callable[[K, bool], None] | None = None,
    ) -> None:
        """`keep_oversized`: keep an entry larger than the budget alone (and warn), rather
        than hand it out without keeping it; `on_lookup(key, hit)` is told of every `get`
        (for metrics)."""
        self.budget, self._size_of, self.keep_oversized = budget, size_of, keep_oversized
        self._on_lookup = on_lookup
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[K, threading.Lock] = {}
        self.total = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: K) -> bool:
        return key in self._entries

    def get(self, key: K, make: Callable[[], V], expected_size: int = 0) -> V:
        """The cached value for `key`, else `make()` (once, outside the cache's lock). Room for
        `expected_size` bytes is made before building, so the old entries' memory is free
        for the new one rather than held beside it."""
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            else:
                builder = self._building.setdefault(key, threading.Lock())
        if self._on_lookup is not None:
            self._on_lookup(key, found is not None)
        if found is not None:
            return found[0]
        with builder:
            with self._lock:  # another thread may have built it while we waited
                if key in self._entries:
                    self._entries.move_to_end(key)
                    return self._entries[key][0]
            try:
                self._evict(expected_size)
                value = make()
                self._put(key, value)
            finally:
                with self._lock:
                    self._building.pop(key, None)
            return value

    def _evict(self, room: int) -> None:
        """Evict least recently used entries until `room` more bytes fit the budget."""
        evicted = []
        with self._lock:
            while self._entries and self.total + room > self.budget:
                _, (old, old_size) = self._entries.popitem(last=False)
                self.total -= old_size
                evicted.append(old)
        for old in evicted:  # outside the lock: closing a worker pool takes a moment
            close = getattr(old, "close", None)
            if close is not None:
                close()

    def _put(self, key: K, value: V) -> None:
        size = max(0, int(self._size_of(value)))
        if size > self.budget and not self.keep_oversized:
            return
        self._evict(size)
        with self._lock:
            self._entries[key] = (value, size)
            self.total += size
        if size > self.budget:
            log.warning(
                "one cache entry of %.0f MB exceeds the whole cache budget of %.0f MB; "
                "raise --cache-bytes",
                size / 1e6,
                self.budget / 1e6,
            )

    def clear(self) -> None:
        """Drop (and close) every entry."""
        with self._lock:
            values = [v for v, _ in self._entries.values()]
            self._entries.clear()
            self.total = 0
        for value in values:
            close = getattr(value, "close", None)
            if close is not None:
                close()
