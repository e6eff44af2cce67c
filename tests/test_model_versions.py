"""RELIABILITY.md line 26: two model versions served by one evaluator process. Every query is
answered wholly from its own version, for every scheme and mode, with the kernels in-process and
in worker processes: no model state lives at module level.

The two versions share A and Q and differ only in their item biases (by a whole star), so a
query packed or finished with the other version's biases is off by far more than a tolerance.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from cryptorec.services import versions
from cryptorec.services.app.server import start
from cryptorec.services.client.library import CryptoRecClient
from cryptorec.services.store.file_store import FileStore
from cryptorec.services.store.redis_store import RedisStore
from libcryptorec import artifact
from libcryptorec.artifact import ArtifactError
from libcryptorec.compression import compress
from libcryptorec.he import registry
from tests.test_model import make_model, random_ratings
from tests.test_service_e2e import ITEMS as ITEMS_E2E
from tests.test_service_e2e import RATINGS, _library_prediction
from tests.test_service_e2e import _packed as _service_packed

pytestmark = pytest.mark.he
ITEMS, DIM = 50, 6
CASES = [(s, m, 1) for s, m in registry.supported()] + [("paillier", "fast", 2)]


def _versions():  # type: ignore[no-untyped-def]
    model = make_model(m=ITEMS, d=DIM, seed=11)
    model.A *= 0.4
    model.Q *= 0.4
    model.meta["finetune_one_step"] = {"steps": 1, "eta": 1.0, "l2": 0.0}
    shifted = replace(model, item_means=model.item_means + np.float32(1.0))
    return compress(model, 0.005, 64), compress(shifted, 0.005, 64)


def _expected(packed, ratings, scheme: str, mode: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    return registry.get(scheme, mode).reference(packed.model, ratings)


@pytest.mark.parametrize(("scheme", "mode", "workers"), CASES)
def test_two_versions_in_one_process_each_answer_from_their_own(
    scheme: str, mode: str, workers: int
) -> None:
    v1, v2 = _versions()
    ratings = random_ratings(1, ITEMS, 0.3, 5)
    client1, evaluator1 = registry.open_local(v1, scheme, mode, {"paillier_workers": workers})
    try:
        client2, evaluator2 = registry.open_local(v2, scheme, mode, {"paillier_workers": workers})
        try:
            # Version 2 was bound last; version 1's queries must still use version 1 only.
            for client, evaluator, packed in (
                (client1, evaluator1, v1),
                (client2, evaluator2, v2),
                (client1, evaluator1, v1),
            ):
                query, rbar = client.encrypt(ratings)
                predicted = rbar + client.decrypt(evaluator.evaluate(query))
                np.testing.assert_allclose(
                    predicted,
                    _expected(packed, ratings, scheme, mode),
                    atol=registry.get(scheme, mode).tolerance,
                )
        finally:
            evaluator2.close()
    finally:
        evaluator1.close()


def _other_schema(data: bytes) -> bytes:
    """The artifact `data` as a writer with another schema version would have written it."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(out, "w") as zout:
        for name in zin.namelist():
            content = zin.read(name)
            if name == "manifest.json":
                manifest = json.loads(content)
                manifest["schema_version"] = 99
                content = json.dumps(manifest).encode()
            zout.writestr(name, content)
    return out.getvalue()


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["file", "redis"])
def test_unloadable_current_version_leaves_the_previous_one_serving(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RELIABILITY.md line 15: a version whose artifact has another schema is refused (by the
    publisher, and by name at the services) while the previous version keeps serving."""
    store: Any = (
        FileStore(tmp_path)
        if kind == "file"
        else RedisStore(request.getfixturevalue("redis_url"), prefix=f"v-{uuid.uuid4().hex}:")
    )
    packed = _service_packed()
    catalogue = [(i + 1, f"Item {i + 1}") for i in range(ITEMS_E2E)]
    versions.publish(store, "v1", packed, catalogue)
    good, _ = artifact.dumps(packed)
    bad = _other_schema(good)
    with monkeypatch.context() as patched:  # our publisher never lets it become current ...
        patched.setattr(artifact, "dumps", lambda _: (bad, "sha"))
        with pytest.raises(ArtifactError):
            versions.publish(store, "v2", packed, catalogue)
    assert store.current() == "v1"
    # ... but a writer of another schema (a newer trainer mid-upgrade) can publish it.
    parts = {"model": bad, "catalogue": json.dumps(catalogue).encode()}
    store.publish("v2", parts, {"items": ITEMS_E2E, "dim": 8})
    assert store.current() == "v2"
    running = start(("key", "model", "evaluator"), store)
    client = CryptoRecClient(f"127.0.0.1:{running.port}")
    try:
        assert client.model_info().version == "v1"
        predictions, result = client.predict(RATINGS)
        assert result.model_version == "v1"
        np.testing.assert_allclose(predictions, _library_prediction("fast"), atol=1e-3)
        with pytest.raises(grpc.RpcError) as refused:
            client.model_info("v2")
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        client.close()
        running.stop(grace=1.0)
        if isinstance(store, RedisStore):
            for key in store._r.scan_iter(match=store.prefix + "*"):
                store._r.delete(key)
