"""Paillier fast mode as a backend of the registry."""

from __future__ import annotations

from collections.abc import Mapping

from libcryptorec.compression import CompressedModel
from libcryptorec.he import backend as api
from libcryptorec.he.backend import EMPTY, Blobs, KeySet, Options, PreparedModel
from libcryptorec.he.cancel import StopCheck
from libcryptorec.he.paillier.client import PaillierClient
from libcryptorec.he.paillier.encoding import (
    PaillierEncoding,
    ReplyLayout,
    fixed_point_for,
    reply_layout,
)
from libcryptorec.he.paillier.kernels import (
    PAILLIER_EVALUATOR_BYTES,
    PaillierEvaluator,
    PaillierModel,
)
from libcryptorec.he.paillier.keys import (
    DEFAULT_KEY_BITS,
    MAX_KEY_BITS,
    SCHEME,
    PaillierPublicKey,
    validate_modulus,
)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


class PaillierFastBackend(api.Backend):
    """Paillier fast mode (2048-bit keys): fixed point, exact up to rounding (within 1e-2 of
    the plaintext model); the server's work shrinks with every pruned weight."""

    scheme, mode, wire = "paillier", "fast", (3, 1)
    tolerance = 1e-2
    nominal_seconds = 6.9  # README: ml-1m stars model, 2 cores
    key_blob_names = ("modulus",)
    key_bits = DEFAULT_KEY_BITS
    options = (
        api.Option(
            "paillier_workers",
            "1",
            "worker processes per Paillier query (HE work holds the GIL)",
            _positive_int,
        ),
    )

    @property
    def parameter_set(self) -> str:
        return f"paillier-{self.key_bits}"

    def spec(self, packed: CompressedModel) -> api.SchemeSpec:
        fixed, m = fixed_point_for(packed, PaillierEncoding()), packed.model.n_items
        bound_bits = PaillierModel.result_bound_bits(packed, fixed)
        layout = reply_layout(m, bound_bits, self.key_bits, fixed.result_bits)
        return api.SchemeSpec(
            self.scheme,
            self.mode,
            self.parameter_set,
            m,
            packed.model.dim,
            input_bits=fixed.input_bits,
            result_bits=fixed.result_bits,
            reply_slot_bits=layout.slot_bits,
            reply_per_ciphertext=layout.per_reply,
            ciphertexts_per_query=m,
        )

    def new_client(
        self, spec: api.SchemeSpec, inputs: api.ClientInputs, keys: dict[str, bytes] | None = None
    ) -> api.VectorClient:
        layout = ReplyLayout(
            spec.items, spec.reply_slot_bits, spec.reply_per_ciphertext, spec.result_bits
        )
        encoding = PaillierEncoding(input_bits=spec.input_bits)
        return api.VectorClient(
            spec, inputs, PaillierClient(self.key_bits, encoding, keys=keys, layout=layout)
        )

    def prepare(
        self, packed: CompressedModel, spec: api.SchemeSpec, blocks: range | None = None
    ) -> api.PreparedModel:
        api.unsharded(self, blocks)
        return api.PreparedModel(spec, PaillierModel.encode(packed))

    def public_key(self, keys: api.KeySet, blobs: Mapping[str, api.Blob]) -> PaillierPublicKey:
        self.check_keys_for(keys)
        return PaillierPublicKey(SCHEME, self.key_bits, self.blob(blobs, "modulus"))

    def validate_keys(self, keys: api.KeySet, blobs: Mapping[str, api.Blob]) -> None:
        validate_modulus(self.public_key(keys, blobs))

    def bind(
        self, prepared: PreparedModel, keys: KeySet, blobs: Blobs, options: Options = EMPTY
    ) -> api.Bound:
        workers = self.option_value(options, "paillier_workers")
        evaluator = PaillierEvaluator(self.public_key(keys, blobs), prepared.encoded, workers)

        def run(ciphertexts: list[bytes], should_stop: StopCheck) -> list[bytes]:
            return evaluator.fast(evaluator.load_query(ciphertexts), should_stop)

        return api.BoundEvaluator(prepared.spec, run, evaluator.nbytes, evaluator.close)

    def key_set_cap(self) -> int:
        return (MAX_KEY_BITS + 7) // 8

    def query_bytes(self, spec: api.SchemeSpec) -> int:
        return spec.ciphertexts_per_query * 2 * ((MAX_KEY_BITS + 7) // 8)

    def bound_bytes(self, spec: api.SchemeSpec, key_set_bytes: int) -> int:
        return PAILLIER_EVALUATOR_BYTES

    def items_per_reply(self, spec: api.SchemeSpec) -> int:
        return spec.reply_per_ciphertext


BACKEND = PaillierFastBackend()
