"""What readiness follows: the store answering, and for roles that serve a model (model,
evaluator) a current model in it. A store that lost its data (flushed, a new empty volume)
answers pings but holds no model: that must not look ready, and must be said loudly.

The watcher logs every change once: the store going down (WARNING, with the cause) and
coming back (WARNING), a model published for the first time (INFO), and a store that held a
model and no longer does (ERROR). Its metrics: cryptorec_store_up, cryptorec_store_has_model,
cryptorec_store_lost_data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptorec.services.observability.metrics import Metrics
from cryptorec.services.store.base import Store, StoreError

log = logging.getLogger("cryptorec.store")


@dataclass(frozen=True)
class StoreState:
    """One look at the store: whether it answers, its current model (None: none), and why it
    does not answer."""

    up: bool
    current: str | None = None
    cause: str = ""


def look(store: Store) -> StoreState:
    """The store's state now (store errors only: anything else is a bug)."""
    try:
        store.ping()
        return StoreState(True, store.current())
    except (StoreError, OSError) as exc:
        return StoreState(False, cause=str(exc))


class StoreWatch:
    """Follows the store for readiness: `check()` looks once, updates the metrics, logs what
    changed and calls `set_ready(store_up, has_model)`."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        set_ready: Callable[[bool, bool], None],
        on_model: Sequence[Callable[[], None]] = (),
    ) -> None:
        """`on_model()`: each is called when another version becomes the current model,
        before readiness follows (the evaluator encodes it then)."""
        self.store, self.metrics, self.set_ready = store, metrics, set_ready
        self.on_model = on_model
        self.prepared: str | None = None  # the current model on_model last heard of
        self.last: StoreState | None = None
        self.had_model = False  # this process has seen a current model in the store
        self.lost = False  # ... and then none: said once, until one is back

    def check(self) -> StoreState:
        state = look(self.store)
        self._log_changes(state)
        self.last = state
        self.metrics.store_up.set(1 if state.up else 0)
        if state.up:
            self.metrics.store_has_model.set(1 if state.current else 0)
            self.had_model = self.had_model or state.current is not None
            self.metrics.store_lost_data.set(1 if self.lost else 0)
        if state.current is not None and state.current != self.prepared:
            for prepare in self.on_model:
                try:
                    prepare()
                except Exception as exc:  # queries prepare on demand and fail precisely
                    log.warning("could not prepare the served models: %s", exc)
            self.prepared = state.current
        self.set_ready(state.up, state.current is not None)
        return state

    def _log_changes(self, state: StoreState) -> None:
        last, where = self.last, repr(self.store)
        if not state.up:
            if last is None or last.up:
                log.warning("store %s unreachable: %s", where, state.cause)
            return
        if last is not None and not last.up:
            log.warning("store %s reachable again", where)
        if state.current is not None:
            self.lost = False
            if last is None or last.current != state.current:
                log.info("store %s: current model %s", where, state.current)
        elif self.had_model and not self.lost:
            self.lost = True
            log.error(
                "store %s holds no current model, though it did: it lost its data (flushed, "
                "or a new empty volume). Roles that serve a model are not ready until one is "
                "published again (cryptorec train); clients must register their keys again",
                where,
            )
        elif last is None:
            log.warning("store %s holds no model yet: publish one (cryptorec train)", where)
