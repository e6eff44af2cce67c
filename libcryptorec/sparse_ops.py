"""Sparse helpers shared by CryptoRec and the baselines: centring and sampled products."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

# Dense scratch per block of rows in `sampled_product`: about 16 MB of float32, large enough for
# BLAS to run at full speed and small enough to stay in cache-friendly territory.
_BLOCK_CELLS = 4_000_000


def row_means(R: sp.csr_matrix, default: float) -> npt.NDArray[np.float32]:
    """Mean of the stored entries of each row of the (n, m) CSR matrix `R`; `default` for
    empty rows. Returns shape (n,)."""
    counts = np.diff(R.indptr)
    sums = np.asarray(R.sum(axis=1)).ravel()
    out = np.full(R.shape[0], default, dtype=np.float32)
    nz = counts > 0
    out[nz] = sums[nz] / counts[nz]
    return out


def center_rows(R: sp.csr_matrix, means: npt.NDArray[np.float32]) -> sp.csr_matrix:
    """Subtract `means[u]` from the stored entries of row u of `R`, keeping the sparsity pattern
    (a rating equal to the mean stays stored as an explicit zero, so the pattern is still phi)."""
    counts = np.diff(R.indptr)
    data = R.data - np.repeat(means, counts).astype(R.dtype)
    return sp.csr_matrix((data, R.indices.copy(), R.indptr.copy()), shape=R.shape)


def sampled_product(
    P: npt.NDArray[np.float32], Q: npt.NDArray[np.float32], pattern: sp.csr_matrix
) -> npt.NDArray[np.float32]:
    """Entries of P @ Q.T at the stored positions of `pattern`, in CSR order.

    P is (n, d), Q is (m, d), `pattern` is (n, m). Computes the dense product one block of rows
    at a time, so memory stays bounded while BLAS does the work; returns shape (pattern.nnz,).
    """
    n, m = pattern.shape
    out = np.empty(pattern.nnz, dtype=np.result_type(P.dtype, Q.dtype))
    block = max(1, _BLOCK_CELLS // max(m, 1))
    indptr, indices = pattern.indptr, pattern.indices
    Qt = np.ascontiguousarray(Q.T)
    for start in range(0, n, block):
        stop = min(n, start + block)
        lo, hi = indptr[start], indptr[stop]
        if lo == hi:
            continue
        dense = P[start:stop] @ Qt
        local_rows = np.repeat(np.arange(stop - start), np.diff(indptr[start : stop + 1]))
        out[lo:hi] = dense[local_rows, indices[lo:hi]]
    return out


def with_data(pattern: sp.csr_matrix, data: npt.NDArray[np.float32]) -> sp.csr_matrix:
    """A CSR matrix with the sparsity pattern of `pattern` and stored values `data`."""
    return sp.csr_matrix((data, pattern.indices, pattern.indptr), shape=pattern.shape)
