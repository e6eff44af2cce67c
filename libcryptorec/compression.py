"""Sparse-quantization-reuse compression (paper 3.2, after Han et al.'s Deep Compression).

1. Prune: weights with |w| < threshold become exactly zero.
2. Quantise: 1-D k-means over each matrix's surviving weights (512 shared values by default),
   initialised linearly over [min, max] as Han et al. do. Linear initialisation keeps centroids
   for the rare large weights, which matter most for accuracy, and lets the dense middle of the
   distribution share few values; that is what makes rows reuse values. The shared values are
   then rounded to a fixed-point grid that gives the largest of them GRID_BITS significant bits:
   the fixed-point schemes (BFV, Paillier) then hold every weight exactly, so their results are
   the served model's up to the rounding of the input alone, and CKKS encodes Q's values
   exactly at its 2^20 scale. Weights under half a grid step are pruned (they would round to 0).
3. Reuse: an encrypted input multiplied by a row needs one multiplication per distinct value in
   that row. The reuse ratio 1 - sum_i shared_i / sum_i all_i (Table 2) measures the saving.

A quantised matrix is stored as a codebook (index 0 is the pruned value 0.0) and uint16 indices.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from libcryptorec.model import CryptoRecModel, Matrix

Indices = npt.NDArray[np.uint16]

# Significant bits of a matrix's largest shared value (see above). On ml-1m the grid changed
# the ranking model's NDCG@10 by 1e-4 and took its Paillier error from 9.6e-5 to 2.8e-6 (mean
# over 200 users).
GRID_BITS = 10
# The finest grid `grid_bits` looks for: float32 holds 24 significant bits.
MAX_GRID_BITS = 40


@dataclass(frozen=True)
class QuantizedMatrix:
    """A matrix whose entries are codebook[indices]; codebook[0] == 0.0 marks pruned entries.

    Attributes:
        codebook: (k + 1,) float32 shared values, ascending after index 0.
        indices: (rows, cols) uint16 index of each entry into `codebook`.
    """

    codebook: npt.NDArray[np.float32]
    indices: Indices

    def __post_init__(self) -> None:
        if self.codebook.ndim != 1 or self.codebook[0] != 0.0:
            raise ValueError("codebook must be 1-D with the pruned value 0.0 at index 0")
        if self.indices.size and int(self.indices.max()) >= len(self.codebook):
            raise ValueError("index beyond the codebook")

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.indices.shape[0]), int(self.indices.shape[1]))

    @property
    def ndim(self) -> int:
        return 2

    @property
    def nbytes(self) -> int:
        return int(self.codebook.nbytes + self.indices.nbytes)

    @property
    def grid_bits(self) -> int | None:
        """g such that every entry is a multiple of 2^-g (None if there is no such g up to
        MAX_GRID_BITS): what a fixed-point encoding needs to hold the matrix exactly."""
        return grid_bits(self.codebook)

    def dense(self) -> Matrix:
        """The (rows, cols) float32 matrix this encodes."""
        return self.codebook[self.indices]

    def __array__(self, dtype: Any = None, copy: Any = None) -> npt.NDArray[Any]:
        """np.asarray(matrix): the dense values (all of them: prefer runs of rows)."""
        dense = self.dense()
        return dense if dtype is None else dense.astype(dtype)

    def astype(self, dtype: Any) -> npt.NDArray[Any]:
        """The dense values as `dtype` (as an array's astype)."""
        return self.dense().astype(dtype)

    def __getitem__(self, rows: slice) -> Matrix:
        """The dense float32 values of a run of rows (without densifying the rest)."""
        if not isinstance(rows, slice):
            raise TypeError("a quantised matrix is read by runs of rows (a slice)")
        return self.codebook[self.indices[rows]]


@dataclass(frozen=True)
class CompressionStats:
    """Table 2 quantities for one compression, plus reuse in both orientations.

    `reuse_ratio` is the paper's: over the rows of the feature matrices A and Q (m rows of d).
    `reuse_ratio_products` counts rows as the encrypted products use them: rows of A (input j
    multiplies row j) and rows of Q^T (p_k multiplies column k of Q).
    """

    threshold: float
    clusters: int
    pruning_ratio: float
    reuse_ratio: float
    reuse_ratio_a: float
    reuse_ratio_q: float
    reuse_ratio_products: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CompressedModel:
    """A model whose A and Q are quantised; `model` holds their dense values for prediction."""

    model: CryptoRecModel
    A: QuantizedMatrix
    Q: QuantizedMatrix
    stats: CompressionStats

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays (dense model, codebooks and indices)."""
        m = self.model
        quantised: tuple[object, ...] = (self.A, self.Q)
        dense = sum(int(x.nbytes) for x in (m.A, m.Q) if not any(x is q for q in quantised))
        return dense + int(m.item_means.nbytes) + self.A.nbytes + self.Q.nbytes

    def lean(self) -> CompressedModel:
        """This model without its dense copy of A and Q (two thirds of its memory): `model.A`
        and `model.Q` are the quantised matrices, read by runs of rows. Enough to encode it
        for every backend and to describe it (what the services do), not to predict."""
        model = replace(self.model, A=cast(Any, self.A), Q=cast(Any, self.Q))
        return CompressedModel(model, self.A, self.Q, self.stats)


def kmeans_1d(
    values: npt.NDArray[np.float32], k: int, iterations: int = 30
) -> npt.NDArray[np.float32]:
    """Lloyd's k-means on scalars with linear initialisation over [min, max].

    Returns up to k ascending centroids (clusters that end up empty are dropped). Assignment uses
    the midpoints between sorted centroids, so each iteration is one sort-free searchsorted.
    """
    if len(values) == 0:
        return np.zeros(0, dtype=np.float32)
    v = values.astype(np.float64)
    lo, hi = float(v.min()), float(v.max())
    if lo == hi:
        return np.array([lo], dtype=np.float32)
    centroids = np.linspace(lo, hi, k)
    for _ in range(iterations):
        label = np.searchsorted((centroids[1:] + centroids[:-1]) / 2, v)
        counts = np.bincount(label, minlength=len(centroids))
        sums = np.bincount(label, weights=v, minlength=len(centroids))
        moved = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        if np.allclose(moved, centroids, rtol=0, atol=1e-9):
            break
        centroids = moved
    label = np.searchsorted((centroids[1:] + centroids[:-1]) / 2, v)
    used = np.bincount(label, minlength=len(centroids)) > 0
    return np.sort(centroids[used]).astype(np.float32)


def grid_bits(values: npt.ArrayLike) -> int | None:
    """The smallest g >= 0 such that every one of `values` is an integer multiple of 2^-g, or
    None if there is none up to MAX_GRID_BITS."""
    v = np.unique(np.asarray(values, dtype=np.float64))
    for g in range(MAX_GRID_BITS + 1):
        scaled = v * 2.0**g
        if np.array_equal(scaled, np.rint(scaled)):
            return g
    return None


def grid_step(peak: float) -> float:
    """The grid step (a power of two) that gives values up to `peak` (> 0) GRID_BITS
    significant bits."""
    return float(2.0 ** (int(np.ceil(np.log2(peak))) - GRID_BITS))


def on_grid(centroids: npt.NDArray[np.float32], step: float) -> npt.NDArray[np.float32]:
    """`centroids` (k,) rounded to multiples of `step`, ascending, without duplicates or 0."""
    snapped = np.unique(np.rint(centroids.astype(np.float64) / step) * step)
    out: npt.NDArray[np.float32] = snapped[snapped != 0].astype(np.float32)
    return out


def quantize(W: Matrix, threshold: float, clusters: int = 512) -> QuantizedMatrix:
    """Prune |w| < threshold to zero and k-means the rest of the (rows, cols) matrix W into at
    most `clusters` shared values on the grid of `grid_step(max |kept w|)` (`on_grid`);
    weights under half a step are pruned too."""
    if not 1 <= clusters <= 65534:
        raise ValueError("clusters must be in [1, 65534] (indices are uint16, 0 is reserved)")
    keep = np.abs(W) >= threshold
    peak = float(np.abs(W[keep]).max(initial=0.0))
    if peak == 0.0:
        return QuantizedMatrix(np.zeros(1, np.float32), np.zeros(W.shape, dtype=np.uint16))
    step = grid_step(peak)
    keep &= np.abs(W) >= step / 2
    centroids = on_grid(kmeans_1d(W[keep], clusters), step)
    indices = np.zeros(W.shape, dtype=np.uint16)
    if len(centroids):
        mids = (centroids[1:] + centroids[:-1]) / 2
        indices[keep] = (np.searchsorted(mids, W[keep]) + 1).astype(np.uint16)
    return QuantizedMatrix(codebook=np.r_[np.float32(0.0), centroids], indices=indices)


def row_reuse(indices: npt.NDArray[np.integer[Any]]) -> tuple[int, int]:
    """(sum over rows of distinct non-zero values, sum over rows of non-zero entries) of an
    index matrix whose 0 means pruned; the reuse ratio is 1 - first / second."""
    s = np.sort(indices, axis=1)
    new_value = np.ones(s.shape, dtype=bool)
    new_value[:, 1:] = s[:, 1:] != s[:, :-1]
    nonzero = s != 0
    return int((new_value & nonzero).sum()), int(nonzero.sum())


def _ratio(parts: list[tuple[int, int]]) -> float:
    shared = sum(p[0] for p in parts)
    total = sum(p[1] for p in parts)
    return 1.0 - shared / total if total else 0.0


def threshold_for_fraction(model: CryptoRecModel, fraction: float) -> float:
    """The pruning threshold that removes `fraction` of the weights of A and Q together."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError("fraction must be in [0, 1)")
    weights = np.abs(np.concatenate([model.A.ravel(), model.Q.ravel()]))
    return float(np.quantile(weights, fraction))


def compress(
    model: CryptoRecModel, threshold: float = 5e-4, clusters: int = 512
) -> CompressedModel:
    """Prune and quantise A and Q of `model` (paper: threshold 5e-4, 512 clusters per matrix)."""
    qa = quantize(model.A, threshold, clusters)
    qq = quantize(model.Q, threshold, clusters)
    pruned = int((qa.indices == 0).sum() + (qq.indices == 0).sum())
    a_rows, q_rows, qt_rows = row_reuse(qa.indices), row_reuse(qq.indices), row_reuse(qq.indices.T)
    stats = CompressionStats(
        threshold=threshold,
        clusters=clusters,
        pruning_ratio=pruned / (qa.indices.size + qq.indices.size),
        reuse_ratio=_ratio([a_rows, q_rows]),
        reuse_ratio_a=_ratio([a_rows]),
        reuse_ratio_q=_ratio([q_rows]),
        reuse_ratio_products=_ratio([a_rows, qt_rows]),
    )
    dense = replace(
        model,
        A=qa.dense(),
        Q=qq.dense(),
        meta={**model.meta, "compression": stats.to_dict()},
    )
    return CompressedModel(model=dense, A=qa, Q=qq, stats=stats)
