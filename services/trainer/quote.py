"""What a query costs, measured when a version is published: for every (scheme, mode), one
query of a typical user computed in this process (one core), its bytes up and down and the
server's seconds. The model service publishes it, so a client knows the cost before it asks."""

from __future__ import annotations

import logging
import time

import numpy as np
import scipy.sparse as sp

from libcryptorec.compression import CompressedModel
from libcryptorec.he import registry

log = logging.getLogger("cryptorec.trainer")

# A typical user: this many ratings (the median ml-1m user rated 96 movies).
TYPICAL_RATINGS = 96


def typical_ratings(items: int, seed: int = 0) -> sp.csr_matrix:
    """A (1, items) row of TYPICAL_RATINGS random ratings on 1..5."""
    rng = np.random.default_rng(seed)
    count = min(items, TYPICAL_RATINGS)
    row = np.zeros(items)
    row[rng.choice(items, count, replace=False)] = rng.integers(1, 6, count)
    return sp.csr_matrix(row)


def quote(packed: CompressedModel) -> dict[str, dict[str, float]]:
    """{"scheme/mode": {"bytes_up", "bytes_down", "server_seconds"}} for every registered
    backend that computes the model's kind (keys are generated for each: seconds to a minute
    in all)."""
    out: dict[str, dict[str, float]] = {}
    ratings = typical_ratings(packed.model.n_items)
    for backend in registry.serving(packed.model.kind):
        name = str(backend.id)
        client, bound = registry.open_local(packed, backend.scheme, backend.mode)
        try:
            ciphertexts, _ = client.encrypt(ratings)
            started = time.perf_counter()
            replies = bound.evaluate(ciphertexts)
            seconds = time.perf_counter() - started
        finally:
            bound.close()
        out[name] = {
            "bytes_up": float(sum(map(len, ciphertexts))),
            "bytes_down": float(sum(map(len, replies))),
            "server_seconds": round(seconds, 4),
        }
        log.info(
            "quote %s: %.2f MB up, %.2f MB down, %.3f s on the server",
            name,
            out[name]["bytes_up"] / 1e6,
            out[name]["bytes_down"] / 1e6,
            seconds,
            extra={"scheme_mode": name, **out[name]},
        )
    return out
