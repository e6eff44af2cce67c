"""Fixed point for the integer schemes (BFV, Paillier): x, A and Q as integers at public scales,
chosen per model so that no result can leave the plaintext space.

x_int = round(x 2^input_bits), A_int = round(A 2^a_bits), Q_int = round(Q 2^q_bits); the scheme
computes b_int + x_int A_int Q_int^T exactly, at 2^result_bits = 2^(input_bits + a_bits +
q_bits). Compression puts the shared values on a grid (`compression.on_grid`); when a scheme
has the room, it takes the grid's bits for the weights and holds them exactly, so the input's
rounding is the only error left. The bound on any result, for any input a client can make:

    |z_int| <= ||x_int||_2 max_i ||A_int q_int_i||_2 + max |b_int|
    ||x_int||_2 <= ||x||_2 2^input_bits + sqrt(m) / 2          (rounding each of m entries)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from libcryptorec.compression import QuantizedMatrix, grid_bits
from libcryptorec.model import CryptoRecModel
from libcryptorec.norms import max_image_norm

# Fewer input bits than this would make the input's rounding the larger error.
MIN_INPUT_BITS = 12
# More than this buys nothing measurable (ratings have a few significant bits).
MAX_INPUT_BITS = 20
# Grids finer than this are not worth exact weights: the weights are rounded instead.
MAX_WEIGHT_BITS = 20


@dataclass(frozen=True)
class FixedPoint:
    """Public scales of one model's fixed-point encoding: x at 2^input_bits, A at 2^a_bits, Q
    at 2^q_bits, results (and the item biases) at 2^result_bits; `exact`: the weights lie on
    their grids, so only the input is rounded."""

    input_bits: int
    a_bits: int
    q_bits: int
    exact: bool = False

    @property
    def result_bits(self) -> int:
        return self.input_bits + self.a_bits + self.q_bits


def weight_grid(M: Any) -> int | None:
    """The grid bits of a weight matrix (m, d): from a QuantizedMatrix's codebook, or from the
    distinct values of a dense one; None if it lies on no grid up to MAX_WEIGHT_BITS."""
    bits = M.grid_bits if isinstance(M, QuantizedMatrix) else grid_bits(np.asarray(M))
    return bits if bits is not None and bits <= MAX_WEIGHT_BITS else None


def result_bound_bits(model: CryptoRecModel, fp: FixedPoint, image_norm: float) -> int:
    """Bits that hold any |result| (integers at 2^result_bits) of `model` under `fp`, with
    `image_norm` = max_i ||A q_i|| of the weights as encoded; see the module docstring."""
    m = model.n_items
    x_int = model.max_input_norm * 2.0**fp.input_bits + math.sqrt(m) / 2
    bias = float(np.abs(model.item_bias).max(initial=0.0)) * 2.0**fp.result_bits + 0.5
    bound = x_int * image_norm * 2.0 ** (fp.a_bits + fp.q_bits) + bias
    return math.ceil(math.log2(max(bound, 1.0)))


def choose(model: CryptoRecModel, value_bits: int) -> FixedPoint:
    """Scales for `model` whose every result fits in `value_bits` bits plus a sign (a bounded
    plaintext space: BFV's t).

    Exact weights at their grids' bits when they fit with at least MIN_INPUT_BITS for x (the
    most input bits that fit, up to MAX_INPUT_BITS); otherwise the room is split equally
    between x, A and Q and the weights are rounded. ValueError if not even that leaves 6 bits
    each."""
    a, q = weight_grid(model.A), weight_grid(model.Q)
    image = max_image_norm(model.A, model.Q)
    if a is not None and q is not None:
        for bits in range(MAX_INPUT_BITS, MIN_INPUT_BITS - 1, -1):
            fp = FixedPoint(bits, a, q, exact=True)
            if result_bound_bits(model, fp, image) <= value_bits:
                return fp
    # Rounded weights: allow for their rounding (|A_int q_int| grows by at most a few units
    # of the last place per entry) with a margin of 8 in the float bound.
    float_bound = model.max_input_norm * image + float(np.abs(model.item_bias).max(initial=0.0))
    room = value_bits - math.log2(float_bound + 8.0)
    weight = int(room // 3)
    if weight < 6:
        raise ValueError(f"only {room:.1f} bits for fixed point: the model's values are too large")
    return FixedPoint(int(room - 2 * weight), weight, weight)
