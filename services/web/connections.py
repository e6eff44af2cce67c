"""Connection limits of the web port, which uvicorn does not have: how many connections one
client address may hold, and how long a connection may take to send a request's headers.

uvicorn answers 503 to everyone once `limit_concurrency` connections are open, and waits for
a request's headers for as long as bytes keep trickling in (its keep-alive timer restarts on
every byte, and a new connection has none): 300 idle connections, or a few sending a header
line every few seconds, locked every browser out. Here a connection beyond the per-address
cap is closed at once, and one that has not sent a whole request head `header_timeout`
seconds after it opened (or after its last response) is closed, however slowly it trickles.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


class ConnectionLimits:
    """Connections per client address, shared by every connection of one front."""

    def __init__(self, per_address: int, header_timeout: float) -> None:
        self.per_address, self.header_timeout = per_address, header_timeout
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def admit(self, address: str) -> bool:
        """Count a new connection from `address`; False (not counted) if it has too many."""
        with self._lock:
            if self._open[address] >= self.per_address:
                return False
            self._open[address] += 1
            return True

    def release(self, address: str) -> None:
        with self._lock:
            self._open[address] -= 1
            if self._open[address] <= 0:
                del self._open[address]

    def open(self, address: str) -> int:
        """Connections `address` holds now."""
        with self._lock:
            return self._open[address]


def limited_protocol(limits: ConnectionLimits) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol with `limits` applied (uvicorn's `http` setting)."""

    class Limited(H11Protocol):
        _address: str | None = None
        _head_timer: asyncio.TimerHandle | None = None
        _cycle_seen: Any = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            address = self.client[0] if self.client else ""
            if not limits.admit(address):
                transport.close()
                return
            self._address = address
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._address is not None:
                limits.release(self._address)
                self._address = None
            super().connection_lost(exc)

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None and self.cycle is not self._cycle_seen:
                self._cycle_seen = self.cycle  # a whole request head arrived
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()  # may start a pipelined request (handle_events)
            idle = self.cycle is None or self.cycle.response_complete
            if idle and not self.transport.is_closing():
                self._arm()  # the next request's head must come in time too

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(limits.header_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _too_slow(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return Limited
