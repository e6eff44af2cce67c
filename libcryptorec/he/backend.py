"""The one shape of every homomorphic backend: one `Backend` object per (scheme, mode).

A backend knows its parameter set, the names of the key blobs a client registers and the public
spec a client encrypts for, and makes the three things the system is built from, with the same
method names everywhere:

* `new_client(spec, inputs)`: the client side. Holds the secret key; `key_blobs()` to register,
  `encrypt(ratings)`, `decrypt(replies)`.
* `prepare(packed, spec)`: the model encoded for this backend (a `PreparedModel`), once per
  model version, shared by every client's evaluator.
* `bind(prepared, keys, blobs)`: an evaluator for one registered key set;
  `evaluate(ciphertexts) -> replies`.

Backends register with `libcryptorec.he.registry`; nothing outside the backends and the registry
branches on scheme or mode names. A new backend is one module defining a `Backend` and a line in
the registry's list (or a `registry.register(...)` call); `tests/backend_contract.py` holds every
registered backend to the same contract.
"""

from __future__ import annotations

import contextlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from libcryptorec.compression import CompressedModel
from libcryptorec.he.cancel import StopCheck, never
from libcryptorec.he.errors import HEError, InvalidCiphertextError, InvalidKeyError
from libcryptorec.he.layout import DiagonalPlan
from libcryptorec.model import MODEL_KINDS, STARS, CryptoRecModel, ModelKind, scaled_inputs

# A key set's blobs by name, and a backend's options by name (Backend.options).
Blobs = dict[str, bytes]
Options = Mapping[str, Any]
# No options given: every Option at its default.
EMPTY: Options = {}

# A key blob as a backend reads it: its bytes, or a view of the buffer they arrived in (a
# registration checks its blobs without copying them out).
Blob = bytes | memoryview


class BackendId(NamedTuple):
    """A backend's identity, one value wherever a backend is named: its scheme and mode
    ("ckks", "fast"), written and parsed as "ckks/fast" (quotes, settings, messages)."""

    scheme: str
    mode: str

    def __str__(self) -> str:
        return f"{self.scheme}/{self.mode}"

    @classmethod
    def parse(cls, text: str) -> BackendId:
        """The id written `text` ("scheme/mode"; ValueError otherwise)."""
        scheme, slash, mode = text.partition("/")
        if not (scheme and slash and mode):
            raise ValueError(f"{text!r}: expected scheme/mode, as in ckks/fast")
        return cls(scheme, mode)


@dataclass(frozen=True)
class SchemeSpec:
    """Public parameters of one (scheme, mode) for one model version: all a client needs to
    make keys and encrypt (the model service publishes them)."""

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

    @property
    def backend_id(self) -> BackendId:
        """The backend these parameters are for."""
        return BackendId(self.scheme, self.mode)

    def plan(self) -> DiagonalPlan:
        """The slot layout of the SEAL backends' diagonal products."""
        return DiagonalPlan.for_model(self.slots, self.items, self.dim, self.baby)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ClientInputs:
    """What a client needs to turn ratings into the vectors it encrypts, and its scores into
    what it shows (public model facts)."""

    items: int
    global_mean: float
    input_power: float
    scale: tuple[float, float]
    step_size: float
    input_offset: float = 0.0
    rating_weight: float = 1.0
    kind: ModelKind = STARS

    @classmethod
    def of(cls, model: CryptoRecModel) -> ClientInputs:
        eta = 0.0 if model.ranks_only else model.one_step_tuning().eta
        return cls(
            model.n_items,
            model.global_mean,
            model.input_power,
            model.scale,
            eta,
            model.input_offset,
            model.rating_weight,
            model.kind,
        )

    @property
    def n_items(self) -> int:
        return self.items

    def user_inputs(self, R: sp.csr_matrix) -> tuple[sp.csr_matrix, npt.NDArray[np.float32]]:
        """(x, base) for a (1, m) rating row, exactly as the model computes them: base is what
        the client adds to every decrypted value (its mean for a stars model, 0 for a ranking
        model)."""
        if R.shape[1] != self.items:
            raise ValueError(f"ratings cover {R.shape[1]} items; the model has {self.items}")
        X, means = scaled_inputs(
            R, self.global_mean, self.input_power, self.input_offset, self.rating_weight
        )
        return X, means if self.kind == STARS else np.zeros_like(means)


@dataclass(frozen=True)
class KeySet:
    """A registered key set's metadata: what it is for and how its blobs are laid out in the
    stored bytes (in order). Serialised as JSON at the store boundary only."""

    scheme: str
    mode: str
    parameter_set: str
    rotation_steps: tuple[int, ...]
    blobs: tuple[tuple[str, int], ...]

    @property
    def backend_id(self) -> BackendId:
        """The backend the keys are for."""
        return BackendId(self.scheme, self.mode)

    @property
    def size(self) -> int:
        return sum(size for _, size in self.blobs)

    def split(self, data: Blob) -> dict[str, bytes]:
        """The named blobs of `data`, the key set's stored bytes (copies)."""
        if len(data) != self.size:
            raise InvalidKeyError(f"key set holds {len(data)} bytes, its layout {self.size}")
        out, offset = {}, 0
        for name, size in self.blobs:
            out[name] = bytes(data[offset : offset + size])
            offset += size
        return out

    def to_dict(self) -> dict[str, Any]:
        """The metadata as plain JSON-ready values."""
        return asdict(self)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys): what a key id hashes."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> KeySet:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> KeySet:
        """The KeySet of `to_dict`'s values (types checked by conversion)."""
        return cls(
            scheme=str(raw["scheme"]),
            mode=str(raw["mode"]),
            parameter_set=str(raw["parameter_set"]),
            rotation_steps=tuple(int(s) for s in raw["rotation_steps"]),
            blobs=tuple((str(n), int(s)) for n, s in raw["blobs"]),
        )


class Client(Protocol):
    """The client side of one (scheme, mode): the only place a secret key lives."""

    spec: SchemeSpec

    def key_blobs(self) -> dict[str, bytes]:
        """The public blobs to register (never a secret key)."""
        ...

    def export_keys(self) -> dict[str, bytes]:
        """Every key, the secret one included: for the client's own key cache only."""
        ...

    def encrypt(self, ratings: sp.csr_matrix) -> tuple[list[bytes], float]:
        """Ciphertexts for one user's (1, m) ratings, and what the client adds to every
        decrypted value (kept locally: the user's mean for a stars model, 0 for ranking)."""
        ...

    def decrypt(self, replies: list[bytes]) -> npt.NDArray[np.float64]:
        """The (m,) scores minus what `encrypt` returned to add back."""
        ...

    def decrypt_part(self, replies: list[bytes], count: int) -> npt.NDArray[np.float64]:
        """The scores (minus what `encrypt` returned) of `count` consecutive items carried by
        `replies`, consecutive reply ciphertexts: a chunk, decrypted as it arrives."""
        ...


class Bound(Protocol):
    """An evaluator for one registered key set."""

    @property
    def nbytes(self) -> int:
        """Resident memory of the keys and context (the shared encoding not included)."""
        ...

    def evaluate(self, ciphertexts: list[bytes], should_stop: StopCheck = never) -> list[bytes]:
        """Replies for one query; CancelledError within milliseconds once should_stop()."""
        ...

    def stream(self, ciphertexts: list[bytes], should_stop: StopCheck = never) -> Iterator[bytes]:
        """The same replies, in order, each as soon as it is computed."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Option:
    """A setting a backend declares for itself: the services offer it on `serve` (flag
    --NAME-WITH-DASHES, variable CRYPTOREC_NAME) and hand its value to `bind`, so nothing
    outside the backend names it. `default` is as typed on a command line."""

    name: str
    default: str
    help: str
    type: Callable[[str], Any] = str


class Backend(ABC):
    """One (scheme, mode). Subclasses set the class attributes and implement the methods."""

    scheme: ClassVar[str]
    mode: ClassVar[str]
    # gRPC enum numbers of the scheme and mode (cryptorec.v1 Scheme and Mode).
    wire: ClassVar[tuple[int, int]]
    # Largest absolute difference from the plaintext model a decrypted result may show.
    tolerance: ClassVar[float]
    key_blob_names: ClassVar[tuple[str, ...]]
    # Whether the model can be split into item shards evaluated by different processes
    # (`prepare(..., blocks=...)`, `bind` gives a ShardBound, `combine` adds partials).
    shardable: ClassVar[bool] = False
    # The kinds of model it computes: every fast mode serves both (the same two products).
    kinds: ClassVar[tuple[ModelKind, ...]] = MODEL_KINDS
    # Settings of its own (Option); their values reach `bind` as `options`, by name.
    options: ClassVar[tuple[Option, ...]] = ()
    # Server seconds one query of the ml-1m stars model takes on one 2-core node, about: what
    # latency alerts compare with when a model version was published without a measured
    # quote (a new backend declares its own; no alert rule names a scheme).
    nominal_seconds: ClassVar[float] = 1.0

    @property
    def id(self) -> BackendId:
        """This backend's identity (scheme and mode)."""
        return BackendId(self.scheme, self.mode)

    @property
    @abstractmethod
    def parameter_set(self) -> str:
        """The allow-listed parameter set clients make keys for."""

    @abstractmethod
    def spec(self, packed: CompressedModel) -> SchemeSpec:
        """The public parameters for a model version."""

    @abstractmethod
    def new_client(
        self, spec: SchemeSpec, inputs: ClientInputs, keys: dict[str, bytes] | None = None
    ) -> Client:
        """Generate keys for `spec` (the expensive, once-per-client step), or reuse `keys`
        saved from an earlier client's `export_keys`."""

    @abstractmethod
    def prepare(
        self, packed: CompressedModel, spec: SchemeSpec, blocks: range | None = None
    ) -> PreparedModel:
        """Encode the model (seconds; cache per model version); a shardable backend encodes
        only the item blocks `blocks` (default: all), a shard."""

    def combine(self, partials: list[bytes], context: Any = None) -> bytes:
        """A shardable backend's first product: the sum of the shards' partials (under
        `context`, from `context()`, to reuse one)."""
        raise ValueError(f"{self.id} is not evaluated by shards")

    def context(self) -> Any:
        """What `combine` needs of the parameter set (no keys); worth caching."""
        raise ValueError(f"{self.id} is not evaluated by shards")

    def blocks(self, items: int, dim: int) -> int:
        """Item blocks of an (items, dim) model: the unit shards are made of."""
        return 1

    def query_block_bytes(self) -> int:
        """The most bytes of query per item block (what a shard's part of a query takes)."""
        return 0

    def reply_bytes(self, spec: SchemeSpec) -> int:
        """The most bytes one reply ciphertext takes (sizes reply chunks)."""
        return self.query_bytes(spec) // max(1, spec.ciphertexts_per_query)

    @abstractmethod
    def bind(
        self, prepared: PreparedModel, keys: KeySet, blobs: Blobs, options: Options = EMPTY
    ) -> Bound:
        """An evaluator for one registered key set (validated). `options`: values of the
        backend's own Options by name (absent: their defaults; `option_value`)."""

    def option_value(self, options: Mapping[str, Any], name: str) -> Any:
        """The value of this backend's Option `name` in `options`, else its default."""
        (option,) = [o for o in self.options if o.name == name]
        value = options.get(name)
        return option.type(option.default) if value is None else value

    @abstractmethod
    def validate_keys(self, keys: KeySet, blobs: Mapping[str, Blob]) -> None:
        """InvalidKeyError unless `blobs` are loadable public keys for this parameter set."""

    @abstractmethod
    def key_set_cap(self) -> int:
        """The most bytes a legitimate key set can have (checked before any byte is read)."""

    def blob_caps(self, rotation_steps: tuple[int, ...]) -> dict[str, int]:
        """The most bytes each blob of a key set for `rotation_steps` can have, by name
        (checked against the header before any byte is read; default: the key set's cap)."""
        return dict.fromkeys(self.key_blob_names, self.key_set_cap())

    # Bytes of a blob's start that `check_blob_start` reads.
    blob_start_bytes: ClassVar[int] = 0

    def check_blob_start(self, name: str, start: bytes, size: int) -> None:
        """InvalidKeyError unless the first `blob_start_bytes` bytes of blob `name` (or all
        of it, if shorter) can begin a blob of `size` bytes: checked as they arrive, before
        the rest is received. By default nothing is read, and nothing refused."""
        return None

    @abstractmethod
    def query_bytes(self, spec: SchemeSpec) -> int:
        """The most bytes a legitimate query can take (sizes upload deadlines)."""

    @abstractmethod
    def bound_bytes(self, spec: SchemeSpec, key_set_bytes: int) -> int:
        """What `bind(...).nbytes` will report for a key set of this size, before binding."""

    def reference(self, model: CryptoRecModel, ratings: sp.csr_matrix) -> npt.NDArray[Any]:
        """The plaintext computation this backend reproduces under encryption, for one user's
        (1, m) ratings: (m,) predictions (fast mode's by default)."""
        return np.asarray(model.predict(ratings)[0])

    def check_key_header(self, rotation_steps: tuple[int, ...]) -> None:
        """InvalidKeyError unless the declared rotation steps can be this backend's."""
        if rotation_steps:
            raise InvalidKeyError(f"{self.id} keys have no rotation steps")

    def items_per_reply(self, spec: SchemeSpec) -> int:
        """Catalogue items each reply ciphertext carries, in order."""
        return spec.slots

    def check_keys_for(self, keys: KeySet) -> None:
        """InvalidKeyError unless `keys` were registered for this backend's parameter set."""
        if keys.backend_id != self.id:
            raise InvalidKeyError(f"keys are for {keys.backend_id}, not {self.id}")
        if keys.parameter_set != self.parameter_set:
            raise InvalidKeyError(f"keys are for {keys.parameter_set}, not {self.parameter_set}")
        unexpected = {name for name, _ in keys.blobs} - set(self.key_blob_names)
        if unexpected:
            raise InvalidKeyError(f"unexpected key blobs {sorted(unexpected)} (public keys only)")

    @staticmethod
    def blob(blobs: Mapping[str, Blob], name: str) -> Blob:
        """The blob called `name`; InvalidKeyError if the key set lacks it."""
        try:
            return blobs[name]
        except KeyError:
            raise InvalidKeyError(f"key set lacks the blob {name!r}") from None


@dataclass
class PreparedModel:
    """A backend's encoding of a model version (`encoded` reports its resident `nbytes`)."""

    spec: SchemeSpec
    encoded: Any

    @property
    def nbytes(self) -> int:
        return int(self.encoded.nbytes)


class VectorKernel(Protocol):
    """A scheme's client kernel that encrypts the (m,) input vector x."""

    def encrypt(self, x: npt.ArrayLike) -> list[bytes]: ...

    def decrypt(self, blobs: list[bytes]) -> npt.NDArray[np.float64]: ...

    def decrypt_block(self, blob: bytes) -> npt.NDArray[np.float64]: ...

    def public_blobs(self) -> dict[str, bytes]: ...

    def export_keys(self) -> dict[str, bytes]: ...


@dataclass
class VectorClient:
    """The `Client` of every backend whose query is Enc(x) for the user's scaled, centred
    ratings x: the user's mean stays with the client, which adds it back after decrypting."""

    spec: SchemeSpec
    inputs: ClientInputs
    kernel: VectorKernel

    def key_blobs(self) -> dict[str, bytes]:
        return self.kernel.public_blobs()

    def export_keys(self) -> dict[str, bytes]:
        return self.kernel.export_keys()

    def encrypt(self, ratings: sp.csr_matrix) -> tuple[list[bytes], float]:
        X, means = self.inputs.user_inputs(ratings)
        return self.kernel.encrypt(X.toarray().ravel()), float(means[0])

    def decrypt(self, replies: list[bytes]) -> npt.NDArray[np.float64]:
        return np.asarray(self.kernel.decrypt(replies), dtype=np.float64)

    def decrypt_part(self, replies: list[bytes], count: int) -> npt.NDArray[np.float64]:
        return decrypt_part(self.kernel.decrypt_block, replies, count)


def decrypt_part(
    decrypt_block: Callable[[bytes], npt.NDArray[np.float64]], replies: list[bytes], count: int
) -> npt.NDArray[np.float64]:
    """The first `count` values of `replies` decrypted one by one (InvalidCiphertextError if
    they carry fewer)."""
    values = np.concatenate([decrypt_block(r) for r in replies]) if replies else np.zeros(0)
    if len(values) < count:
        raise InvalidCiphertextError(f"{len(replies)} replies carry {len(values)} of {count} items")
    return np.asarray(values[:count], dtype=np.float64)


@dataclass
class BoundEvaluator:
    """The `Bound` of a backend: checks the count, then `run(ciphertexts, should_stop)`
    loads and computes; anything the HE library still refuses is the client's input."""

    spec: SchemeSpec
    run: Callable[[list[bytes], StopCheck], list[bytes]]
    nbytes: int
    closer: Callable[[], None] | None = None

    def evaluate(self, ciphertexts: list[bytes], should_stop: StopCheck = never) -> list[bytes]:
        expect_count(ciphertexts, self.spec)
        return refused_by_library(lambda: list(self.run(ciphertexts, should_stop)))

    def stream(self, ciphertexts: list[bytes], should_stop: StopCheck = never) -> Iterator[bytes]:
        """The replies of `evaluate` (computed together, then handed out)."""
        return iter(self.evaluate(ciphertexts, should_stop))

    def close(self) -> None:
        if self.closer is not None:
            self.closer()


@dataclass
class ShardBound:
    """The `Bound` of a shardable backend for one key set and one shard (a run of item
    blocks; every block for an unsharded model):

    * `first(ciphertexts)`: the shard's partial first product, for its input blocks;
    * `second(first, start)`: given the sum of every shard's partial (the backend's
      `combine`), the shard's reply blocks from `start` on, each as soon as it is computed.

    Partials are for the servers only: decrypted, a chosen input's partial reveals rows of
    the model. `evaluate` and `stream` run an unsharded query."""

    spec: SchemeSpec
    blocks: range
    first_fn: Callable[[list[bytes], StopCheck], bytes]
    second_fn: Callable[[bytes, int, StopCheck], Iterator[bytes]]
    nbytes: int

    def first(self, ciphertexts: list[bytes], should_stop: StopCheck = never) -> bytes:
        if len(ciphertexts) != len(self.blocks):
            raise InvalidCiphertextError(
                f"expected {len(self.blocks)} ciphertexts for this shard, got {len(ciphertexts)}"
            )
        with library_refusals():
            return self.first_fn(ciphertexts, should_stop)

    def second(
        self, first: bytes, start: int = 0, should_stop: StopCheck = never
    ) -> Iterator[bytes]:
        if not 0 <= start <= len(self.blocks):
            raise ValueError(f"start {start} outside the shard's {len(self.blocks)} blocks")
        with library_refusals():
            replies = self.second_fn(first, start, should_stop)
        while True:
            with library_refusals():
                reply = next(replies, None)
            if reply is None:
                return
            yield reply

    def stream(self, ciphertexts: list[bytes], should_stop: StopCheck = never) -> Iterator[bytes]:
        expect_count(ciphertexts, self.spec)
        yield from self.second(self.first(ciphertexts, should_stop), 0, should_stop)

    def evaluate(self, ciphertexts: list[bytes], should_stop: StopCheck = never) -> list[bytes]:
        return list(self.stream(ciphertexts, should_stop))

    def close(self) -> None:
        pass


def unsharded(backend: Backend, blocks: range | None) -> None:
    """ValueError if a backend that is not shardable is asked for a shard."""
    if blocks is not None:
        raise ValueError(f"{backend.id} evaluates whole models only")


def expect_count(ciphertexts: list[bytes], spec: SchemeSpec) -> None:
    """InvalidCiphertextError unless the query holds the spec's number of ciphertexts."""
    if len(ciphertexts) != spec.ciphertexts_per_query:
        raise InvalidCiphertextError(
            f"expected {spec.ciphertexts_per_query} ciphertexts, got {len(ciphertexts)}"
        )


def refused_by_library(compute: Callable[[], list[bytes]]) -> list[bytes]:
    """Run a computation on a query that passed every check we know of (see
    `library_refusals`)."""
    with library_refusals():
        return compute()


@contextlib.contextmanager
def library_refusals() -> Iterator[None]:
    """Should the HE library still refuse a query that passed every check we know of, that
    is the client's input it refused (our own is encoded and tested ahead):
    InvalidCiphertextError, never an internal error."""
    try:
        yield
    except (RuntimeError, ValueError) as exc:
        if isinstance(exc, HEError):
            raise
        raise InvalidCiphertextError(
            f"the encrypted computation refused this query ({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc
