"""The registry the services use: public specs -> client; prepare + bind -> evaluator; the
result equals the library's plaintext prediction for every (scheme, mode)."""

from __future__ import annotations

import numpy as np
import pytest

from libcryptorec.compression import compress
from libcryptorec.he import schemes
from libcryptorec.he.errors import InvalidCiphertextError, InvalidKeyError
from libcryptorec.model import FineTuning
from tests.test_model import make_model, random_ratings

pytestmark = pytest.mark.he


@pytest.fixture(scope="module")
def packed():  # type: ignore[no-untyped-def]
    model = make_model(m=70, d=9, seed=2)
    model.A *= 0.4
    model.Q *= 0.4
    model.meta["finetune_one_step"] = {"steps": 1, "eta": 1.0, "l2": 0.0}
    return compress(model, 0.005, 128)


@pytest.mark.parametrize(("scheme", "mode"), schemes.SUPPORTED)
def test_registry_round_trip_equals_library(packed, scheme: str, mode: str) -> None:  # type: ignore[no-untyped-def]
    spec = schemes.find_spec(schemes.specs(packed), scheme, mode)
    inputs = schemes.ClientInputs.of(packed.model)
    client = schemes.new_client(spec, inputs)
    evaluator = schemes.bind(
        schemes.prepare(packed, spec),
        {
            "scheme": scheme,
            "mode": mode,
            "parameter_set": spec.parameter_set,
            "rotation_steps": list(spec.rotation_steps),
        },
        client.key_blobs(),
    )
    try:
        ratings = random_ratings(1, 70, 0.3, 9)
        ciphertexts, rbar = client.encrypt(ratings)
        predicted = rbar + client.decrypt(evaluator.evaluate(ciphertexts))
        model = packed.model
        expected = (
            model.predict_accurate(ratings, FineTuning(1, 1.0, 0.0))[0]
            if mode == "accurate"
            else model.predict(ratings)[0]
        )
        tolerance = 1e-3 if scheme == "ckks" else 1e-2
        np.testing.assert_allclose(predicted, expected, atol=tolerance)
        with pytest.raises(InvalidCiphertextError):
            evaluator.evaluate(ciphertexts[:-1])
    finally:
        evaluator.close()


def test_bind_refuses_keys_of_another_scheme_or_set(packed) -> None:  # type: ignore[no-untyped-def]
    spec = schemes.find_spec(schemes.specs(packed), "ckks", "fast")
    prepared = schemes.prepare(packed, spec)
    with pytest.raises(InvalidKeyError):
        schemes.bind(prepared, {"scheme": "bfv", "mode": "fast"}, {})
    with pytest.raises(InvalidKeyError):
        schemes.bind(prepared, {"scheme": "ckks", "mode": "fast", "parameter_set": "x"}, {})
    with pytest.raises(InvalidKeyError, match="lacks"):
        schemes.bind(
            prepared,
            {"scheme": "ckks", "mode": "fast", "parameter_set": spec.parameter_set},
            {"public_key": b""},
        )
