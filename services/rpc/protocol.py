"""Conversions between protobuf enums/messages and the library's plain values."""

from __future__ import annotations

from typing import TypeAlias

from cryptorec.v1 import model_service_pb2 as model_pb
from cryptorec.v1 import types_pb2
from libcryptorec.he.schemes import SchemeSpec
from services.rpc.errors import invalid

Scheme: TypeAlias = types_pb2.Scheme.ValueType
Mode: TypeAlias = types_pb2.Mode.ValueType

SCHEME_NAMES: dict[Scheme, str] = {
    types_pb2.SCHEME_CKKS: "ckks",
    types_pb2.SCHEME_BFV: "bfv",
    types_pb2.SCHEME_PAILLIER: "paillier",
}
MODE_NAMES: dict[Mode, str] = {types_pb2.MODE_FAST: "fast", types_pb2.MODE_ACCURATE: "accurate"}
SCHEME_VALUES: dict[str, Scheme] = {name: value for value, name in SCHEME_NAMES.items()}
MODE_VALUES: dict[str, Mode] = {name: value for value, name in MODE_NAMES.items()}


def scheme_name(value: Scheme) -> str:
    """The library's name for a Scheme enum; INVALID_ARGUMENT for UNSPECIFIED or unknown."""
    if value not in SCHEME_NAMES:
        raise invalid(f"scheme must be set (got {value}: SCHEME_UNSPECIFIED or unknown)")
    return SCHEME_NAMES[value]


def mode_name(value: Mode) -> str:
    """The library's name for a Mode enum; INVALID_ARGUMENT for UNSPECIFIED or unknown."""
    if value not in MODE_NAMES:
        raise invalid(f"mode must be set (got {value}: MODE_UNSPECIFIED or unknown)")
    return MODE_NAMES[value]


def scheme_enum(name: str) -> Scheme:
    return SCHEME_VALUES[name]


def mode_enum(name: str) -> Mode:
    return MODE_VALUES[name]


def spec_from_pb(p: model_pb.SchemeParameters, items: int, dim: int) -> SchemeSpec:
    """The library's SchemeSpec from what the model service published."""
    return SchemeSpec(
        scheme=scheme_name(p.scheme),
        mode=mode_name(p.mode),
        parameter_set=p.parameter_set,
        items=items,
        dim=dim,
        slots=p.slots,
        baby=p.baby_steps,
        rotation_steps=tuple(p.rotation_steps),
        input_bits=p.input_bits,
        result_bits=p.result_bits,
        reply_slot_bits=p.reply_slot_bits,
        reply_per_ciphertext=p.reply_per_ciphertext,
        ciphertexts_per_query=p.ciphertexts_per_query,
    )
