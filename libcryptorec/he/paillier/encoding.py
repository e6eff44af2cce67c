"""Paillier's fixed point (the input's bits, the weights at their grid) and how replies pack
several results into one plaintext."""

from __future__ import annotations

from dataclasses import dataclass

from libcryptorec.compression import CompressedModel
from libcryptorec.he.fixed_point import FixedPoint, weight_grid


@dataclass(frozen=True)
class PaillierEncoding:
    """The client's fixed point, public: inputs at 2^input_bits, within max_abs_input (the
    results' scale comes with the reply layout)."""

    input_bits: int = 16
    max_abs_input: float = 8.0


# Weights off a compression grid are rounded to this many bits.
ROUNDED_WEIGHT_BITS = 12


def fixed_point_for(packed: CompressedModel, encoding: PaillierEncoding) -> FixedPoint:
    """The model's fixed point: the client's input bits, the weights' grid bits (exact) when
    they have a grid, else ROUNDED_WEIGHT_BITS."""
    a, q = weight_grid(packed.A), weight_grid(packed.Q)
    if a is None or q is None:
        return FixedPoint(encoding.input_bits, ROUNDED_WEIGHT_BITS, ROUNDED_WEIGHT_BITS)
    return FixedPoint(encoding.input_bits, a, q, exact=True)


@dataclass(frozen=True)
class ReplyLayout:
    """How results are packed: `per_reply` slots of `slot_bits`, each holding value + offset,
    the value an integer at 2^result_bits."""

    items: int
    slot_bits: int
    per_reply: int
    result_bits: int

    @property
    def offset(self) -> int:
        return 1 << (self.slot_bits - 1)

    @property
    def replies(self) -> int:
        return -(-self.items // self.per_reply)


def reply_layout(items: int, bound_bits: int, key_bits: int, result_bits: int) -> ReplyLayout:
    """Slots of bound_bits + 1 bits, as many as fit below n."""
    slot_bits = bound_bits + 1
    return ReplyLayout(items, slot_bits, max(1, (key_bits - 2) // slot_bits), result_bits)
