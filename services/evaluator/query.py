"""A query as the evaluator holds it: what it announces (QueryHeader), what admission made of
it (Query) and what it costs its client (Bill)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cryptorec.services.store.base import ClientRecord, ClientStore, KeyInfo, StoreError
from cryptorec.services.versions import ModelVersion
from libcryptorec.he.backend import Backend, SchemeSpec
from libcryptorec.model import ModelKind

log = logging.getLogger("cryptorec.evaluator")


@dataclass(frozen=True)
class QueryHeader:
    """What a query announces before its ciphertexts: the model version ("" = current), the
    key set, the backend, the number of ciphertexts, the input offset the client applied and
    the model kind it read (None: a client older than kinds)."""

    model_version: str
    key_id: str
    backend: Backend
    ciphertext_count: int
    input_offset: float = 0.0
    model_kind: ModelKind | None = None


class Bill:
    """What one query costs its client's budget. Nothing until its computation starts, once a
    work slot is held (`spend`: one query, counted atomically across replicas, so a query
    refused for overload costs nothing), and nothing in the end unless it is answered
    (`answered`, as its first reply chunk goes; `close` refunds it otherwise)."""

    def __init__(self, store: ClientStore, client: ClientRecord) -> None:
        self.store, self.client = store, client
        self._receipt: str | None = None
        self._answered = False

    def spend(self) -> None:
        """Count the query (QuotaExceededError if the budget is spent)."""
        if self._receipt is None:
            self._receipt = self.store.spend_query(
                self.client.name, self.client.quotas.queries_per_day
            )

    def answered(self) -> None:
        self._answered = True

    def close(self) -> None:
        """Refund the query if it was counted and not answered."""
        if self._receipt is None or self._answered:
            return
        try:
            self.store.refund_query(self.client.name, self._receipt)
        except StoreError as exc:  # the store is down: the client pays for this one
            log.warning("could not refund an unanswered query of %s: %s", self.client.name, exc)
        self._receipt = None


@dataclass(frozen=True)
class Query:
    """An admitted query: the version, spec and key set it will be computed with, and its
    bill to the caller's budget (None without authentication)."""

    version: ModelVersion
    spec: SchemeSpec
    backend: Backend
    key: KeyInfo
    bill: Bill | None = None

    @property
    def upload_bytes(self) -> int:
        """The most bytes its ciphertexts may take."""
        return self.backend.query_bytes(self.spec)
