"""Measure encrypted prediction over real held-out users: time, bytes and error per phase.

Each query is one new user of the paper split: the client centres and encrypts its feeding
ratings, the server computes, the client decrypts and adds its mean back. Errors are against
the plaintext (compressed) model; RMSE is on the user's hidden test ratings, clamped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from libcryptorec.he.ckks import CkksClient, CkksEvaluator, CkksModel
from libcryptorec.he.params import ckks_params
from libcryptorec.model import CryptoRecModel


@dataclass(frozen=True)
class Measurement:
    """Medians over the measured queries (seconds and bytes), worst error, pooled RMSE."""

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_ckks_fast(
    model: CryptoRecModel,
    feed: sp.csr_matrix,
    test: sp.csr_matrix,
    users: int = 5,
    params_name: str = "ckks-8192-fast",
    log: Callable[[str], None] = lambda _: None,
) -> Measurement:
    """Run CKKS fast mode for the first `users` rows of feed/test (n, m) and measure it."""
    params = ckks_params(params_name)
    t0 = time.perf_counter()
    encoded = CkksModel.encode(params, model.A, model.Q, model.item_bias)
    setup_s = time.perf_counter() - t0
    log(f"encoded {2 * encoded.plan.width * encoded.plan.blocks} diagonals in {setup_s:.2f}s")
    client = CkksClient(params, encoded.plan)
    material = client.public_material()
    server = CkksEvaluator(params, material)
    rows: list[tuple[float, float, float, int, int, float]] = []
    sq_err, count = 0.0, 0
    for u in range(users):
        X, means = model.user_inputs(feed[u])
        x = X.toarray().ravel()
        t1 = time.perf_counter()
        query = client.encrypt(x)
        t2 = time.perf_counter()
        reply = server.fast(server.load_query(query, encoded.plan), encoded)
        t3 = time.perf_counter()
        z = client.decrypt(reply)
        t4 = time.perf_counter()
        predicted = means[0] + z
        reference = model.predict(feed[u])[0]
        err = float(np.abs(predicted - reference).max())
        lo, hi = test.indptr[u], test.indptr[u + 1]
        diff = model.clamp(predicted[test.indices[lo:hi]]) - test.data[lo:hi]
        sq_err += float(diff @ diff)
        count += hi - lo
        rows.append((t2 - t1, t3 - t2, t4 - t3, sum(map(len, query)), sum(map(len, reply)), err))
        log(
            f"user {u}: encrypt {1e3 * (t2 - t1):.1f} ms, server {t3 - t2:.3f} s, "
            f"decrypt {1e3 * (t4 - t3):.1f} ms, max error {err:.2e}"
        )
    med = np.median(np.array([r[:5] for r in rows]), axis=0)
    return Measurement(
        client_encrypt_s=float(med[0]),
        server_s=float(med[1]),
        client_decrypt_s=float(med[2]),
        bytes_up=int(med[3]),
        bytes_down=int(med[4]),
        key_bytes=material.size,
        max_abs_err=max(r[5] for r in rows),
        rmse=float(np.sqrt(sq_err / max(count, 1))),
        queries=users,
        setup_s=setup_s,
    )
