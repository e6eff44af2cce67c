"""Measure encrypted prediction over real held-out users: time, bytes and error per phase.

Each query is one new user of the paper split: the client centres and encrypts its feeding
ratings, the server computes, the client decrypts and adds its mean back. Errors are against
the plaintext compressed model (fast mode) or its one-step fine-tuning (accurate mode); RMSE
is on the user's hidden test ratings, clamped to the rating scale.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from libcryptorec.compression import CompressedModel
from libcryptorec.he.schemes import open_local
from libcryptorec.model import CryptoRecModel


@dataclass(frozen=True)
class Measurement:
    """Medians over the measured queries (seconds, bytes), worst error, pooled RMSE."""

    client_encrypt_s: float
    server_s: float
    client_decrypt_s: float
    bytes_up: int
    bytes_down: int
    key_bytes: int
    max_abs_err: float
    rmse: float
    queries: int
    setup_s: float
    client_offline_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Query:
    encrypt_s: float
    server_s: float
    decrypt_s: float
    up: int
    down: int
    err: float
    sq_err: float
    count: int


def _score(
    model: CryptoRecModel,
    predicted: npt.NDArray[np.float64],
    reference: npt.NDArray[np.float64],
    test: sp.csr_matrix,
    u: int,
) -> tuple[float, float, int]:
    lo, hi = test.indptr[u], test.indptr[u + 1]
    diff = model.clamp(predicted[test.indices[lo:hi]]) - test.data[lo:hi]
    return float(np.abs(predicted - reference).max()), float(diff @ diff), int(hi - lo)


def _summarise(rows: list[_Query], key_bytes: int, setup_s: float, offline_s: float) -> Measurement:
    def med(values: list[float]) -> float:
        return float(np.median(values))

    return Measurement(
        client_encrypt_s=med([r.encrypt_s for r in rows]),
        server_s=med([r.server_s for r in rows]),
        client_decrypt_s=med([r.decrypt_s for r in rows]),
        bytes_up=int(med([r.up for r in rows])),
        bytes_down=int(med([r.down for r in rows])),
        key_bytes=key_bytes,
        max_abs_err=max(r.err for r in rows),
        rmse=float(np.sqrt(sum(r.sq_err for r in rows) / max(1, sum(r.count for r in rows)))),
        queries=len(rows),
        setup_s=setup_s,
        client_offline_s=offline_s,
    )


def measure(
    scheme: str,
    mode: str,
    packed: CompressedModel,
    feed: sp.csr_matrix,
    test: sp.csr_matrix,
    users: int = 5,
    log: Callable[[str], None] = lambda _: None,
) -> Measurement:
    """`scheme`/`mode` for the first `users` rows of feed/test (n, m), through the same client
    and evaluator the services use (`schemes.open_local`), so what is measured is what is
    served. Errors are against `model.predict` (fast) or one step of
    `model.one_step_tuning()` (accurate), the plaintext computations the protocols reproduce."""
    model = packed.model
    t0 = time.perf_counter()
    client, evaluator = open_local(packed, scheme, mode, workers=os.cpu_count() or 1)
    setup_s = time.perf_counter() - t0
    key_bytes = sum(len(b) for b in client.key_blobs().values())
    offline_s = 0.0
    rows: list[_Query] = []
    try:
        for u in range(users):
            precompute = getattr(getattr(client, "backend", None), "precompute", None)
            if precompute is not None:  # Paillier: r^n ahead of time (the offline phase)
                t1 = time.perf_counter()
                precompute(model.n_items)
                offline_s += time.perf_counter() - t1
            t1 = time.perf_counter()
            query, rbar = client.encrypt(feed[u])
            t2 = time.perf_counter()
            reply = evaluator.evaluate(query)
            t3 = time.perf_counter()
            z = client.decrypt(reply)
            t4 = time.perf_counter()
            reference = (
                model.predict_accurate(feed[u], model.one_step_tuning())[0]
                if mode == "accurate"
                else model.predict(feed[u])[0]
            )
            err, sq, count = _score(model, rbar + z, reference, test, u)
            rows.append(
                _Query(
                    t2 - t1,
                    t3 - t2,
                    t4 - t3,
                    sum(map(len, query)),
                    sum(map(len, reply)),
                    err,
                    sq,
                    count,
                )
            )
            log(
                f"{scheme}/{mode} user {u}: encrypt {t2 - t1:.4f}s server {t3 - t2:.3f}s "
                f"decrypt {t4 - t3:.4f}s error {err:.1e}"
            )
    finally:
        evaluator.close()
    return _summarise(rows, key_bytes, setup_s, offline_s / max(1, users))
