"""Every supported (scheme, mode) behind one registry, split the way the services are split.

* `specs(packed)`: the public parameters of each (scheme, mode) for a model version; the model
  service publishes them and they are all a client needs.
* `new_client(spec, inputs)`: key generation, `key_blobs()` to register, `encrypt(ratings)`,
  `decrypt(replies)`. Secret keys stay inside the client object.
* `prepare(packed, spec)` once per model version on the server, then `bind(prepared, meta,
  blobs)` per registered key set gives an evaluator: `evaluate(ciphertexts) -> replies`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from libcryptorec.compression import CompressedModel
from libcryptorec.he.bfv import BFV_8192, BfvClient, BfvEvaluator, BfvModel
from libcryptorec.he.ckks import CkksClient, CkksEvaluator, CkksModel
from libcryptorec.he.ckks_accurate import (
    ACCURATE_16384,
    AccurateClient,
    AccurateEvaluator,
    AccurateMaterial,
    AccurateModel,
)
from libcryptorec.he.errors import HEError, InvalidCiphertextError, InvalidKeyError
from libcryptorec.he.layout import DiagonalPlan
from libcryptorec.he.paillier import (
    DEFAULT_KEY_BITS,
    MAX_KEY_BITS,
    PAILLIER_EVALUATOR_BYTES,
    PaillierClient,
    PaillierEvaluator,
    PaillierModel,
    ReplyLayout,
    validate_modulus,
)
from libcryptorec.he.paillier import PublicMaterial as PaillierMaterial
from libcryptorec.he.params import CKKS_FAST_8192
from libcryptorec.he.seal import (
    PublicMaterial,
    StopCheck,
    check_rotation_steps,
    ciphertext_bytes,
    context_bytes,
    never,
    resident_key_bytes,
)
from libcryptorec.he.seal import key_set_cap as seal_key_set_cap
from libcryptorec.model import CryptoRecModel, scaled_inputs

SUPPORTED = (("ckks", "fast"), ("ckks", "accurate"), ("bfv", "fast"), ("paillier", "fast"))
# How close decrypted results are guaranteed to be to the plaintext compressed model (absolute,
# before clamping): CKKS is approximate; BFV and Paillier are exact integer computations whose
# only error is the fixed-point rounding of inputs and weights (measured < 5e-3 on ml-1m).
TOLERANCE = {"ckks": 1e-3, "bfv": 1e-2, "paillier": 1e-2}


@dataclass(frozen=True)
class SchemeSpec:
    """Public parameters of one (scheme, mode) for one model version."""

    scheme: str
    mode: str
    parameter_set: str
    items: int
    dim: int
    slots: int = 0
    baby: int = 0
    rotation_steps: tuple[int, ...] = ()
    input_bits: int = 0
    result_bits: int = 0
    reply_slot_bits: int = 0
    reply_per_ciphertext: int = 0
    ciphertexts_per_query: int = 0

    def plan(self) -> DiagonalPlan:
        return DiagonalPlan.for_model(self.slots, self.items, self.dim, self.baby)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ClientInputs:
    """What a client needs to turn ratings into the vectors it encrypts (public model facts)."""

    items: int
    global_mean: float
    input_power: float
    scale: tuple[float, float]
    step_size: float

    @classmethod
    def of(cls, model: CryptoRecModel) -> ClientInputs:
        eta = model.one_step_tuning().eta
        return cls(model.n_items, model.global_mean, model.input_power, model.scale, eta)

    @property
    def n_items(self) -> int:
        return self.items

    def user_inputs(self, R: sp.csr_matrix) -> tuple[sp.csr_matrix, npt.NDArray[np.float32]]:
        """(x, rbar) for a (1, m) rating row, exactly as the model computes them."""
        if R.shape[1] != self.items:
            raise ValueError(f"ratings cover {R.shape[1]} items; the model has {self.items}")
        return scaled_inputs(R, self.global_mean, self.input_power)


def specs(packed: CompressedModel) -> list[SchemeSpec]:
    """The public parameters of every supported (scheme, mode) for a model."""
    model = packed.model
    m, d = model.n_items, model.dim
    out = []
    fast = DiagonalPlan.for_model(CKKS_FAST_8192.slots, m, d)
    out.append(
        SchemeSpec(
            "ckks",
            "fast",
            CKKS_FAST_8192.name,
            m,
            d,
            fast.slots,
            fast.baby,
            fast.rotation_steps,
            ciphertexts_per_query=fast.blocks,
        )
    )
    acc = DiagonalPlan.for_model(ACCURATE_16384.slots, m, d)
    out.append(
        SchemeSpec(
            "ckks",
            "accurate",
            ACCURATE_16384.name,
            m,
            d,
            acc.slots,
            acc.baby,
            acc.rotation_steps,
            ciphertexts_per_query=5 * acc.blocks,
        )
    )
    input_bits, weight_bits = BfvModel.fixed_point(model)
    bfv = DiagonalPlan.for_model(BFV_8192.slots, m, d)
    out.append(
        SchemeSpec(
            "bfv",
            "fast",
            BFV_8192.name,
            m,
            d,
            bfv.slots,
            bfv.baby,
            bfv.rotation_steps,
            input_bits,
            input_bits + 2 * weight_bits,
            ciphertexts_per_query=bfv.blocks,
        )
    )
    paillier = PaillierModel.encode(packed, groups=False)
    layout, pm_bits = paillier.reply_layout(DEFAULT_KEY_BITS), paillier.encoding
    out.append(
        SchemeSpec(
            "paillier",
            "fast",
            f"paillier-{DEFAULT_KEY_BITS}",
            m,
            d,
            input_bits=pm_bits.input_bits,
            result_bits=pm_bits.result_bits,
            reply_slot_bits=layout.slot_bits,
            reply_per_ciphertext=layout.per_reply,
            ciphertexts_per_query=m,
        )
    )
    return out


def find_spec(all_specs: list[SchemeSpec], scheme: str, mode: str) -> SchemeSpec:
    for s in all_specs:
        if (s.scheme, s.mode) == (scheme, mode):
            return s
    raise ValueError(f"unsupported scheme/mode {scheme}/{mode}")


class SchemeClient(Protocol):
    spec: SchemeSpec

    def key_blobs(self) -> dict[str, bytes]: ...

    def export_keys(self) -> dict[str, bytes]: ...

    def encrypt(self, ratings: sp.csr_matrix) -> tuple[list[bytes], float]: ...

    def decrypt(self, replies: list[bytes]) -> npt.NDArray[np.float64]: ...


@dataclass
class _Client:
    """The one client implementation: delegates to the scheme's own client class."""

    spec: SchemeSpec
    inputs: ClientInputs
    backend: Any
    _layout: ReplyLayout | None = None

    def key_blobs(self) -> dict[str, bytes]:
        m = self.backend.public_material()
        if self.spec.scheme == "paillier":
            return {"modulus": m.n}
        blobs = {"public_key": m.public_key, "rotation_keys": m.rotation_keys}
        if isinstance(m, AccurateMaterial):
            blobs["relin_key"] = m.relin_key
        return blobs

    def export_keys(self) -> dict[str, bytes]:
        """Every key including the secret one: for the client's own key cache only."""
        return dict(self.backend.export_keys())

    def encrypt(self, ratings: sp.csr_matrix) -> tuple[list[bytes], float]:
        """Ciphertexts for one user's (1, m) ratings, and the user's mean (kept locally)."""
        X, means = self.inputs.user_inputs(ratings)
        if self.spec.mode == "accurate":
            from libcryptorec.he.ckks_accurate import client_vectors

            vectors, rbar = client_vectors(self.inputs, ratings, self.inputs.step_size)
            return [b for v in self.backend.encrypt(vectors) for b in v], rbar
        return self.backend.encrypt(X.toarray().ravel()), float(means[0])

    def decrypt(self, replies: list[bytes]) -> npt.NDArray[np.float64]:
        """The (m,) predictions minus the user's mean."""
        if self._layout is not None:
            return np.asarray(self.backend.decrypt(replies, self._layout))
        return np.asarray(self.backend.decrypt(replies))


def new_client(
    spec: SchemeSpec, inputs: ClientInputs, keys: dict[str, bytes] | None = None
) -> SchemeClient:
    """Generate keys for `spec` (the expensive, once-per-client step), or reuse `keys` saved
    from an earlier client's `export_keys`."""
    if spec.scheme == "ckks" and spec.mode == "fast":
        return _Client(spec, inputs, CkksClient(CKKS_FAST_8192, spec.plan(), keys))
    if spec.scheme == "ckks" and spec.mode == "accurate":
        return _Client(spec, inputs, AccurateClient(spec.plan(), keys=keys))
    if spec.scheme == "bfv":
        bfv = BfvClient(BFV_8192, spec.plan(), spec.input_bits, spec.result_bits, keys)
        return _Client(spec, inputs, bfv)
    if spec.scheme == "paillier":
        bits = int(spec.parameter_set.rsplit("-", 1)[1])
        layout = ReplyLayout(spec.items, spec.reply_slot_bits, spec.reply_per_ciphertext)
        return _Client(spec, inputs, PaillierClient(bits, keys=keys), layout)
    raise ValueError(f"unsupported scheme/mode {spec.scheme}/{spec.mode}")


@dataclass
class Prepared:
    """A model encoded for one (scheme, mode), shared by every client's evaluator."""

    spec: SchemeSpec
    encoded: Any
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Resident memory of the encoding (for caches bounded by bytes)."""
        return int(self.encoded.nbytes)


def prepare(packed: CompressedModel, spec: SchemeSpec) -> Prepared:
    """Encode the model for `spec` (seconds; cache per model version)."""
    model = packed.model
    if spec.scheme == "ckks" and spec.mode == "fast":
        return Prepared(spec, CkksModel.encode(CKKS_FAST_8192, model.A, model.Q, model.item_bias))
    if spec.scheme == "ckks" and spec.mode == "accurate":
        return Prepared(spec, AccurateModel.encode(model.A, model.Q, model.item_bias))
    if spec.scheme == "bfv":
        return Prepared(spec, BfvModel.encode(model))
    if spec.scheme == "paillier":
        return Prepared(spec, PaillierModel.encode(packed))
    raise ValueError(f"unsupported scheme/mode {spec.scheme}/{spec.mode}")


class Evaluator(Protocol):
    @property
    def nbytes(self) -> int: ...

    def evaluate(self, ciphertexts: list[bytes], should_stop: StopCheck = never) -> list[bytes]: ...

    def close(self) -> None: ...


@dataclass
class _Bound:
    prepared: Prepared
    backend: Any

    @property
    def nbytes(self) -> int:
        """Resident memory of this client's loaded keys and context (the encoding not
        included: it is shared)."""
        return int(self.backend.nbytes)

    def evaluate(self, ciphertexts: list[bytes], should_stop: StopCheck = never) -> list[bytes]:
        """Replies for one query; CancelledError within milliseconds once should_stop()."""
        spec, enc, be = self.prepared.spec, self.prepared.encoded, self.backend
        if len(ciphertexts) != spec.ciphertexts_per_query:
            raise InvalidCiphertextError(
                f"expected {spec.ciphertexts_per_query} ciphertexts, got {len(ciphertexts)}"
            )
        if spec.scheme == "paillier":
            query: Any = be.load_query(ciphertexts)
        elif spec.mode == "accurate":
            blocks = enc.plan.blocks
            vectors = [ciphertexts[i * blocks : (i + 1) * blocks] for i in range(5)]
            query = be.load_query(vectors, enc.plan)
        else:
            query = be.load_query(ciphertexts, enc.plan)
        try:
            if spec.scheme == "paillier":
                return list(be.fast(query, should_stop))
            if spec.mode == "accurate":
                return list(be.accurate1(query, enc, should_stop))
            return list(be.fast(query, enc, should_stop))
        except (RuntimeError, ValueError) as exc:
            if isinstance(exc, HEError):
                raise
            # The query passed every check we know of and still failed inside the HE library:
            # it is the client's input that it refused (ours is encoded and tested ahead).
            raise InvalidCiphertextError(
                f"the encrypted computation refused this query ({type(exc).__name__}: "
                f"{str(exc)[:200]})"
            ) from exc

    def close(self) -> None:
        if hasattr(self.backend, "close"):
            self.backend.close()


# Names of the key blobs each (scheme, mode) registers; anything else (a secret key above
# all) is refused by the key service before it is read.
KEY_BLOBS: dict[tuple[str, str], tuple[str, ...]] = {
    ("ckks", "fast"): ("public_key", "rotation_keys"),
    ("ckks", "accurate"): ("public_key", "relin_key", "rotation_keys"),
    ("bfv", "fast"): ("public_key", "rotation_keys"),
    ("paillier", "fast"): ("modulus",),
}


# The allow-listed parameter set of each (scheme, mode): what clients may register keys for.
PARAMETER_SETS: dict[tuple[str, str], str] = {
    ("ckks", "fast"): CKKS_FAST_8192.name,
    ("ckks", "accurate"): ACCURATE_16384.name,
    ("bfv", "fast"): BFV_8192.name,
    ("paillier", "fast"): f"paillier-{DEFAULT_KEY_BITS}",
}


# Ring degree and primes (the special one included) of each SEAL (scheme, mode); Paillier
# has neither. What key-set caps and rotation-step checks are derived from.
_RINGS: dict[tuple[str, str], tuple[int, int]] = {
    ("ckks", "fast"): (CKKS_FAST_8192.n, len(CKKS_FAST_8192.primes)),
    ("ckks", "accurate"): (ACCURATE_16384.n, len(ACCURATE_16384.primes)),
    ("bfv", "fast"): (BFV_8192.n, len(BFV_8192.primes)),
}


def key_set_cap(scheme: str, mode: str) -> int:
    """The most bytes a legitimate key set for (scheme, mode) can have: fast mode's caps are
    far below accurate mode's (relinearisation key, a 16384-degree ring with 8 primes)."""
    if (scheme, mode) not in _RINGS:
        return (MAX_KEY_BITS + 7) // 8  # a Paillier modulus
    n, limbs = _RINGS[(scheme, mode)]
    return seal_key_set_cap(n, limbs, relin=mode == "accurate")


def query_bytes(spec: SchemeSpec) -> int:
    """The most bytes a legitimate query for `spec` can take (to size upload deadlines)."""
    if (spec.scheme, spec.mode) not in _RINGS:
        return spec.ciphertexts_per_query * 2 * ((MAX_KEY_BITS + 7) // 8)
    n, limbs = _RINGS[(spec.scheme, spec.mode)]
    return spec.ciphertexts_per_query * ciphertext_bytes(n, limbs - 1)


def bound_bytes(spec: SchemeSpec, key_set_bytes: int) -> int:
    """Resident memory an evaluator bound to a key set of `key_set_bytes` will hold (what
    `bind(...).nbytes` reports once built), known before building it."""
    if (spec.scheme, spec.mode) not in _RINGS:
        return PAILLIER_EVALUATOR_BYTES
    n, limbs = _RINGS[(spec.scheme, spec.mode)]
    return context_bytes(n, limbs) + resident_key_bytes(key_set_bytes)


def check_key_header(scheme: str, mode: str, rotation_steps: tuple[int, ...]) -> None:
    """InvalidKeyError unless the declared rotation steps can be those of a key set for
    (scheme, mode): distinct powers of two below the slot count (none for Paillier)."""
    if (scheme, mode) not in _RINGS:
        if rotation_steps:
            raise InvalidKeyError(f"{scheme} keys have no rotation steps")
        return
    check_rotation_steps(rotation_steps, _RINGS[(scheme, mode)][0])


@dataclass(frozen=True)
class _Target:
    scheme: str
    mode: str
    parameter_set: str


def _backend(
    spec: SchemeSpec | _Target,
    meta: dict[str, Any],
    blobs: dict[str, bytes],
    model: Any,
    workers: int = 1,
) -> Any:
    """The scheme's evaluator object with the client's keys loaded (validated); `model` is
    the prepared encoding (None to validate keys only)."""
    if meta.get("scheme") != spec.scheme or meta.get("mode") != spec.mode:
        raise InvalidKeyError(
            f"keys are for {meta.get('scheme')}/{meta.get('mode')}, not {spec.scheme}/{spec.mode}"
        )
    if meta.get("parameter_set") != spec.parameter_set:
        raise InvalidKeyError(f"keys are for {meta.get('parameter_set')}, not {spec.parameter_set}")
    unexpected = set(blobs) - set(KEY_BLOBS[(spec.scheme, spec.mode)])
    if unexpected:
        raise InvalidKeyError(f"unexpected key blobs {sorted(unexpected)} (public keys only)")
    steps = tuple(int(s) for s in meta.get("rotation_steps", ()))
    try:
        if spec.scheme == "paillier":
            bits = int(spec.parameter_set.rsplit("-", 1)[1])
            material = PaillierMaterial("paillier", bits, blobs["modulus"])
            if model is None:
                validate_modulus(material)
                return None
            return PaillierEvaluator(material, model, workers=workers)
        if spec.mode == "accurate":
            acc = AccurateMaterial(
                "ckks",
                spec.parameter_set,
                blobs["public_key"],
                blobs["relin_key"],
                blobs["rotation_keys"],
                steps,
            )
            return AccurateEvaluator(acc)
        pm = PublicMaterial(
            spec.scheme, spec.parameter_set, blobs["public_key"], blobs["rotation_keys"], steps
        )
        if spec.scheme == "bfv":
            return BfvEvaluator(pm)
        return CkksEvaluator(CKKS_FAST_8192, pm)
    except KeyError as exc:
        raise InvalidKeyError(f"key set lacks the blob {exc}") from None


def validate_keys(meta: dict[str, Any], blobs: dict[str, bytes]) -> None:
    """Raise InvalidKeyError unless the blobs are loadable public keys for the allow-listed
    parameter set of meta's scheme and mode."""
    key = (str(meta.get("scheme")), str(meta.get("mode")))
    if key not in PARAMETER_SETS:
        raise InvalidKeyError(f"unsupported scheme/mode {key[0]}/{key[1]}")
    backend = _backend(_Target(*key, PARAMETER_SETS[key]), meta, blobs, None)
    if hasattr(backend, "close"):
        backend.close()


def bind(
    prepared: Prepared, meta: dict[str, Any], blobs: dict[str, bytes], workers: int = 1
) -> Evaluator:
    """An evaluator for one registered key set (validated: scheme, parameter set, sizes).
    `workers`: Paillier worker processes (SEAL schemes compute in this process)."""
    return _Bound(prepared, _backend(prepared.spec, meta, blobs, prepared.encoded, workers))


def open_local(
    packed: CompressedModel, scheme: str, mode: str, workers: int = 1
) -> tuple[SchemeClient, Evaluator]:
    """A matched client and evaluator in this process (tests, benchmarks): what the services
    do across the network, without it."""
    spec = find_spec(specs(packed), scheme, mode)
    client = new_client(spec, ClientInputs.of(packed.model))
    meta = {
        "scheme": scheme,
        "mode": mode,
        "parameter_set": spec.parameter_set,
        "rotation_steps": list(spec.rotation_steps),
    }
    return client, bind(prepare(packed, spec), meta, client.key_blobs(), workers)
