"""Conversions between the protocol's enums and messages and the library's plain values, all
derived from the backend registry (a registered backend declares its enum numbers)."""

from __future__ import annotations

from cryptorec.services.errors import BadRequestError
from cryptorec.v1 import model_service_pb2 as model_pb
from cryptorec.v1 import types_pb2
from libcryptorec.he import registry
from libcryptorec.he.backend import Backend, SchemeSpec
from libcryptorec.model import RANKING, STARS, ModelKind

_KIND_ENUMS: dict[str, types_pb2.ModelKind.ValueType] = {
    STARS: types_pb2.MODEL_KIND_STARS,
    RANKING: types_pb2.MODEL_KIND_RANKING,
}


def scheme_enum(name: str) -> types_pb2.Scheme.ValueType:
    """The wire number of scheme `name`."""
    return types_pb2.Scheme.ValueType(
        next(b.wire[0] for b in registry.backends() if b.scheme == name)
    )


def mode_enum(name: str) -> types_pb2.Mode.ValueType:
    """The wire number of mode `name`."""
    return types_pb2.Mode.ValueType(next(b.wire[1] for b in registry.backends() if b.mode == name))


def kind_enum(kind: str) -> types_pb2.ModelKind.ValueType:
    """The wire number of a model kind (UNSPECIFIED for a kind this API does not know)."""
    return _KIND_ENUMS.get(kind, types_pb2.MODEL_KIND_UNSPECIFIED)


def kind_of(number: int, *, unspecified: ModelKind | None = None) -> ModelKind | None:
    """The model kind a request names by wire number: `unspecified` for 0 (UNSPECIFIED),
    INVALID_ARGUMENT for a number no kind has."""
    if number == types_pb2.MODEL_KIND_UNSPECIFIED:
        return unspecified
    for kind in (STARS, RANKING):
        if _KIND_ENUMS[kind] == number:
            return kind
    raise BadRequestError(f"model kind {number} is not one of stars (1) or ranking (2)")


def backend_for(scheme: int, mode: int) -> Backend:
    """The backend a request names by wire numbers; INVALID_ARGUMENT for UNSPECIFIED (0) or
    numbers no registered backend has."""
    for backend in registry.backends():
        if backend.wire == (scheme, mode):
            return backend
    raise BadRequestError(
        f"scheme {scheme} and mode {mode} name no offered scheme/mode (UNSPECIFIED or unknown)"
    )


# SchemeSpec fields published as SchemeParameters fields of the same meaning (spec -> message).
_SAME = (
    "parameter_set",
    "slots",
    "input_bits",
    "result_bits",
    "reply_slot_bits",
    "reply_per_ciphertext",
    "ciphertexts_per_query",
)


def scheme_parameters(
    s: SchemeSpec, quote: dict[str, float] | None = None
) -> model_pb.SchemeParameters:
    """What the model service publishes of a spec, with its cost quote (if measured)."""
    quote = quote or {}
    return model_pb.SchemeParameters(
        scheme=scheme_enum(s.scheme),
        mode=mode_enum(s.mode),
        width=s.plan().width if s.slots else 0,
        baby_steps=s.baby,
        rotation_steps=list(s.rotation_steps),
        bytes_up=int(quote.get("bytes_up", 0)),
        bytes_down=int(quote.get("bytes_down", 0)),
        server_seconds=float(quote.get("server_seconds", 0.0)),
        **{name: getattr(s, name) for name in _SAME},
    )


def spec_from_pb(p: model_pb.SchemeParameters, items: int, dim: int) -> SchemeSpec:
    """The library's SchemeSpec from what the model service published."""
    backend = backend_for(p.scheme, p.mode)
    return SchemeSpec(
        scheme=backend.scheme,
        mode=backend.mode,
        items=items,
        dim=dim,
        baby=p.baby_steps,
        rotation_steps=tuple(p.rotation_steps),
        **{name: getattr(p, name) for name in _SAME},
    )
