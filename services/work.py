"""Work slots: how many encrypted computations one process runs at once."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from cryptorec.services.errors import RefusedError


class WorkSlots:
    """At most `slots` holders at a time; a request that finds none free is refused at once
    (RefusedError) rather than queued, so overload never builds a backlog. HE work holds the
    GIL: two slots let one query compute while another streams."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._free = threading.BoundedSemaphore(slots)

    @contextlib.contextmanager
    def hold(self, wait: float = 0.0) -> Iterator[None]:
        """Hold one slot for the block; RefusedError if none is free at once (or within
        `wait` seconds: shard calls, which the calling evaluator has admitted already)."""
        free = self._free.acquire(timeout=wait) if wait > 0 else self._free.acquire(False)
        if not free:
            raise RefusedError(f"all {self.slots} work slots of this process are busy")
        try:
            yield
        finally:
            self._free.release()
