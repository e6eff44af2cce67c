"""Norms of large weight matrices without large temporaries: the bounds that fixed-point
schemes (BFV, Paillier) derive their bit budgets from, for catalogues of 10^5-10^6 items.
A float64 copy or an SVD of a (131,072, 500) matrix would need gigabytes; these read it in
row chunks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

ROWS_PER_CHUNK = 16384
Values = Callable[[npt.NDArray[np.generic]], npt.NDArray[np.float64]]


def _chunks(M: Any, values: Values | None) -> Iterator[npt.NDArray[np.float64]]:
    """Row chunks of M in float64 (through `values`, e.g. a codebook lookup of indices). M
    is an array, or anything with a shape that slices by rows (a QuantizedMatrix)."""
    M = M if hasattr(M, "shape") else np.asarray(M)
    for start in range(0, M.shape[0], ROWS_PER_CHUNK):
        chunk = M[start : start + ROWS_PER_CHUNK]
        yield values(chunk) if values is not None else chunk.astype(np.float64)


def spectral_norm(M: Any, values: Values | None = None) -> float:
    """The largest singular value of M (m, d) (or of `values(M)`), from the d x d Gram matrix
    accumulated in float64 over row chunks (exact to rounding for the largest one)."""
    d = (M if hasattr(M, "shape") else np.asarray(M)).shape[1]
    gram = np.zeros((d, d))
    for chunk in _chunks(M, values):
        gram += chunk.T @ chunk
    return float(np.sqrt(max(0.0, float(np.linalg.eigvalsh(gram)[-1]))))


def max_row_norm(M: Any, values: Values | None = None) -> float:
    """max_i ||M_i||_2 over the rows of M (m, d) (or of `values(M)`), chunk by chunk."""
    best = 0.0
    for chunk in _chunks(M, values):
        best = max(best, float(np.sqrt(np.einsum("ij,ij->i", chunk, chunk)).max(initial=0.0)))
    return best


def max_image_norm(
    A: Any, Q: Any, values_a: Values | None = None, values_q: Values | None = None
) -> float:
    """max_i ||A q_i||_2 over the rows q_i of Q (m, d), for A (m, d) (or `values_a(A)`,
    `values_q(Q)`): the largest |x . A q_i| over inputs with ||x||_2 <= 1, so a fixed-point
    scheme's results are bounded by ||x||_2 times it. Tighter than sigma_max(A) max_i ||q_i||
    (one Cauchy-Schwarz instead of two) at the cost of the d x d Gram matrix of A."""
    d = (A if hasattr(A, "shape") else np.asarray(A)).shape[1]
    gram = np.zeros((d, d))
    for chunk in _chunks(A, values_a):
        gram += chunk.T @ chunk
    best = 0.0
    for chunk in _chunks(Q, values_q):
        squared = np.einsum("ij,jk,ik->i", chunk, gram, chunk)
        best = max(best, float(np.sqrt(max(0.0, float(squared.max(initial=0.0))))))
    return best
