"""Cooperative cancellation: every kernel calls `check(should_stop)` between units of a few
milliseconds of work, so a withdrawn request stops within about 100 ms."""

from __future__ import annotations

from collections.abc import Callable

from libcryptorec.he.errors import CancelledError

StopCheck = Callable[[], bool]


def never() -> bool:
    """A StopCheck for callers that never withdraw."""
    return False


def check(should_stop: StopCheck) -> None:
    """Raise CancelledError if the caller has gone."""
    if should_stop():
        raise CancelledError("request withdrawn; computation stopped")
