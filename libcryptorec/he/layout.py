"""Slot layouts for encrypted vector x matrix products (scheme-neutral numpy; CKKS and BFV).

Both CryptoRec products run by the diagonal method with baby-step giant-step (BSGS) rotations
over S slots, with W = the model dimension d rounded up to a power of two (W divides S):

* First product p = x A (m -> d). The m inputs fill blocks of S slots. For block c,
  u_k[s] = A[cS + (s + k) mod S, s mod W], k < W, and t = sum_k u_k * rot(x_c, k) gives, after
  log2(S/W) rotate-and-add steps, p_j in every slot s with s = j (mod W): p comes out repeated
  every W slots, which is exactly the input layout the second product needs.
* Second product z = p Q^T (d -> m). For output block c, v_k[s] = Q[cS + s, (s + k) mod W];
  z_c = sum_k v_k * rot(p_rep, k), because rotating a W-periodic vector by k reads p[(s+k) mod W].

BSGS: with k = g*B + b, u_k * rot(x, k) = rot(rot(u_k, -gB) * rot(x, b), gB), so the server
rotates the input B-1 times by one slot, multiplies by pre-rotated diagonals and folds the G
partial sums Horner-style with G-1 rotations by B. Rotation keys needed: {1, B} plus the
powers of two W, 2W, ..., S/2 for the replication.

`rot(v, r)[s] = v[(s + r) mod S]` (a left rotation, as SEAL's rotate_vector with r > 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float64]


@dataclass(frozen=True)
class DiagonalPlan:
    """The geometry of both products for an (m, d) model over `slots` slots.

    Attributes:
        slots: S, slots per ciphertext (N/2 for CKKS and batched BFV).
        items: m, the model's item count.
        width: W, d rounded up to a power of two.
        baby: B, baby steps; giant = W / B.
    """

    slots: int
    items: int
    width: int
    baby: int

    def __post_init__(self) -> None:
        for name in ("slots", "width", "baby"):
            v = getattr(self, name)
            if v < 1 or v & (v - 1):
                raise ValueError(f"{name} must be a power of two, got {v}")
        if self.width > self.slots:
            raise ValueError(f"model dimension {self.width} exceeds the {self.slots} slots")
        if self.baby > self.width:
            raise ValueError("baby steps cannot exceed the width")
        if self.items < 1:
            raise ValueError("a model needs at least one item")

    @classmethod
    def for_model(cls, slots: int, items: int, dim: int, baby: int | None = None) -> DiagonalPlan:
        """The plan for an (items, dim) model; baby defaults to about sqrt(W)."""
        width = 1 << max(0, (dim - 1).bit_length())
        if baby is None:
            baby = 1 << ((width.bit_length() - 1 + 1) // 2)
        return cls(slots=slots, items=items, width=width, baby=min(baby, width))

    @property
    def giant(self) -> int:
        return self.width // self.baby

    @property
    def blocks(self) -> int:
        """Ciphertexts needed for an m-vector (input of the first, output of the second)."""
        return -(-self.items // self.slots)

    @property
    def replication_steps(self) -> tuple[int, ...]:
        """Rotations that fold the first product's partial sums into p repeated every W."""
        steps, r = [], self.width
        while r < self.slots:
            steps.append(r)
            r *= 2
        return tuple(steps)

    @property
    def rotation_steps(self) -> tuple[int, ...]:
        """Every rotation step the evaluator uses: the only Galois keys a client must make."""
        return tuple(sorted({1, self.baby, *self.replication_steps} - {self.slots}))

    def pad_items(self, v: npt.ArrayLike) -> Matrix:
        """An m-vector (or (m, k) matrix) zero-padded to blocks * S rows, reshaped to
        (blocks, S[, k])."""
        a = np.asarray(v, dtype=np.float64)
        out = np.zeros((self.blocks * self.slots, *a.shape[1:]))
        out[: a.shape[0]] = a
        return out.reshape(self.blocks, self.slots, *a.shape[1:])

    def _bsgs(self, diagonals: Matrix) -> Matrix:
        """(blocks, W, S) diagonals u_k -> (blocks, G, B, S) pre-rotated u'_{g,b}."""
        out = diagonals.reshape(diagonals.shape[0], self.giant, self.baby, self.slots).copy()
        for g in range(1, self.giant):
            out[:, g] = np.roll(out[:, g], g * self.baby, axis=-1)
        return out

    def first_diagonals(self, A: Any, blocks: range | None = None) -> Matrix:
        """Pre-rotated diagonals of A (m, d) for p = x A: shape (len(blocks), G, B, S), for
        the item blocks `blocks` (default: all)."""
        s = np.arange(self.slots)
        k = np.arange(self.width)[:, None]
        rows = self._blocks_of(A, blocks)
        return self._bsgs(rows[:, (s + k) % self.slots, s % self.width])  # (blocks, W, S)

    def second_diagonals(self, Q: Any, blocks: range | None = None) -> Matrix:
        """Pre-rotated diagonals of Q (m, d) for z = p Q^T: shape (len(blocks), G, B, S), for
        the output blocks `blocks` (default: all)."""
        s = np.arange(self.slots)
        k = np.arange(self.width)[:, None]
        rows = self._blocks_of(Q, blocks)
        return self._bsgs(rows[:, s, (s + k) % self.width])  # (blocks, W, S)

    def _blocks_of(self, M: Any, blocks: range | None) -> Matrix:
        """The rows of M (m, d) in item blocks `blocks`, zero-padded: (len(blocks), S, W). M
        is an array or anything that slices by rows (a QuantizedMatrix: only those rows are
        made dense)."""
        M = M if hasattr(M, "shape") and hasattr(M, "ndim") else np.asarray(M, np.float64)
        self._check(M)
        blocks = range(self.blocks) if blocks is None else blocks
        if blocks.step != 1 or blocks.start < 0 or blocks.stop > self.blocks:
            raise ValueError(f"blocks {blocks} are not a run of this plan's {self.blocks} blocks")
        first, last = blocks.start * self.slots, blocks.stop * self.slots
        padded = np.zeros((last - first, self.width))
        rows = M[first:last]
        padded[: rows.shape[0], : rows.shape[1]] = rows
        return padded.reshape(len(blocks), self.slots, self.width)

    def _check(self, M: Any) -> None:
        if M.ndim != 2 or M.shape[0] != self.items or M.shape[1] > self.width:
            raise ValueError(
                f"matrix {M.shape} does not fit a plan for ({self.items}, <= {self.width})"
            )


def simulate_first(plan: DiagonalPlan, x_blocks: Matrix, diagonals: Matrix) -> Matrix:
    """What the encrypted first product computes, on plain slot vectors (for tests).

    x_blocks (blocks, S), diagonals from `first_diagonals`; returns p_rep (S,).
    """
    acc = np.zeros(plan.slots)
    for g in reversed(range(plan.giant)):
        inner = sum(
            diagonals[c, g, b] * np.roll(x_blocks[c], -b)
            for c in range(plan.blocks)
            for b in range(plan.baby)
        )
        acc = np.roll(acc, -plan.baby) + inner
    for r in plan.replication_steps:
        acc = acc + np.roll(acc, -r)
    return np.asarray(acc)


def simulate_second(plan: DiagonalPlan, p_rep: Matrix, diagonals: Matrix) -> Matrix:
    """What the encrypted second product computes on plain slots; returns (blocks, S)."""
    rotated = [np.roll(p_rep, -b) for b in range(plan.baby)]
    out = np.zeros((plan.blocks, plan.slots))
    for c in range(plan.blocks):
        acc = np.zeros(plan.slots)
        for g in reversed(range(plan.giant)):
            inner = sum(diagonals[c, g, b] * rotated[b] for b in range(plan.baby))
            acc = np.roll(acc, -plan.baby) + inner
        out[c] = acc
    return out
