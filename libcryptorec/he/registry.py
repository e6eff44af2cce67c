"""Every (scheme, mode) the system offers, derived from the backend modules.

Each module in `BUILT_IN` defines `BACKEND`, a `libcryptorec.he.backend.Backend`; other code
(a plugin, a test) adds its own with `register`. Services, the CLI and the protocol's enum
conversions ask this registry; nothing else branches on scheme or mode names.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from typing import Any

from libcryptorec.compression import CompressedModel
from libcryptorec.he.backend import (
    EMPTY,
    Backend,
    BackendId,
    Bound,
    Client,
    ClientInputs,
    KeySet,
    SchemeSpec,
)

BUILT_IN = (
    "libcryptorec.he.ckks",
    "libcryptorec.he.ckks_accurate",
    "libcryptorec.he.bfv",
    "libcryptorec.he.paillier",
)

_lock = threading.Lock()
_backends: dict[BackendId, Backend] = {}


def register(backend: Backend) -> Backend:
    """Offer `backend` from now on; ValueError if its (scheme, mode) or wire numbers are taken."""
    with _lock:
        key = backend.id
        if key in _backends:
            raise ValueError(f"{key} is registered already")
        if any(b.wire == backend.wire for b in _backends.values()):
            raise ValueError(f"wire numbers {backend.wire} are taken")
        _backends[key] = backend
    return backend


def unregister(scheme: str, mode: str) -> None:
    """Stop offering (scheme, mode) (tests that register a backend of their own)."""
    with _lock:
        _backends.pop(BackendId(scheme, mode), None)


for _module in BUILT_IN:
    register(importlib.import_module(_module).BACKEND)


def backends() -> list[Backend]:
    """Every registered backend, in registration order."""
    with _lock:
        return list(_backends.values())


def get(scheme: str, mode: str) -> Backend:
    """The backend for (scheme, mode); ValueError if none is registered."""
    try:
        return _backends[BackendId(scheme, mode)]
    except KeyError:
        raise ValueError(f"unsupported scheme/mode {BackendId(scheme, mode)}") from None


def named(text: str) -> Backend:
    """The backend written `text` ("ckks/fast"); ValueError if none is registered."""
    return get(*BackendId.parse(text))


def serving(kind: str) -> list[Backend]:
    """The registered backends that compute models of `kind` ("stars" or "ranking")."""
    return [b for b in backends() if kind in b.kinds]


def supported() -> list[tuple[str, str]]:
    """Every registered (scheme, mode)."""
    return [(b.scheme, b.mode) for b in backends()]


def scheme_names() -> list[str]:
    return list(dict.fromkeys(b.scheme for b in backends()))


def mode_names() -> list[str]:
    return list(dict.fromkeys(b.mode for b in backends()))


def specs(packed: CompressedModel) -> list[SchemeSpec]:
    """The public parameters of every registered (scheme, mode) that computes this model
    version's kind."""
    return [b.spec(packed) for b in serving(packed.model.kind)]


def find_spec(all_specs: list[SchemeSpec], scheme: str, mode: str) -> SchemeSpec:
    """The spec for (scheme, mode) among `all_specs`; ValueError if it is not offered."""
    for s in all_specs:
        if (s.scheme, s.mode) == (scheme, mode):
            return s
    offered = ", ".join(str(s.backend_id) for s in all_specs)
    raise ValueError(
        f"{BackendId(scheme, mode)} is not offered for this model (it offers {offered})"
    )


def key_set_for(spec: SchemeSpec, blobs: dict[str, bytes]) -> KeySet:
    """The metadata a key service records for `blobs` registered for `spec`."""
    return KeySet(
        scheme=spec.scheme,
        mode=spec.mode,
        parameter_set=spec.parameter_set,
        rotation_steps=tuple(spec.rotation_steps),
        blobs=tuple((name, len(blob)) for name, blob in blobs.items()),
    )


def open_local(
    packed: CompressedModel, scheme: str, mode: str, options: Mapping[str, Any] = EMPTY
) -> tuple[Client, Bound]:
    """A matched client and evaluator in this process (tests, benchmarks): what the services
    do across the network, without it. `options`: the backend's own (Backend.options)."""
    backend = get(scheme, mode)
    if packed.model.kind not in backend.kinds:
        raise ValueError(f"{backend.id} does not compute {packed.model.kind} models")
    spec = backend.spec(packed)
    client = backend.new_client(spec, ClientInputs.of(packed.model))
    blobs = client.key_blobs()
    bound = backend.bind(backend.prepare(packed, spec), key_set_for(spec, blobs), blobs, options)
    return client, bound
