"""Model artifacts: bit-exact round trips and clear refusals of anything corrupt."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from libcryptorec import artifact
from libcryptorec.artifact import ArtifactError
from libcryptorec.compression import CompressedModel, compress
from libcryptorec.model import CryptoRecModel, FineTuning
from tests.test_model import make_model, random_ratings


def _model() -> CryptoRecModel:
    model = make_model(m=30, d=8, seed=9)
    model.finetune = FineTuning(steps=3, eta=1.0, l2=0.01)
    model.meta = {"dataset": "synthetic", "valid_rmse_fast": 0.9}
    model.input_offset = 0.5
    return model


def test_dense_round_trip_is_bit_exact(tmp_path: Path) -> None:
    model = _model()
    artifact.save(model, tmp_path / "m.crmodel")
    loaded = artifact.load(tmp_path / "m.crmodel")
    assert isinstance(loaded, CryptoRecModel)
    for name in ("A", "Q", "item_means"):
        a, b = getattr(model, name), getattr(loaded, name)
        assert a.dtype == b.dtype
        assert a.tobytes() == b.tobytes()
    assert loaded.finetune == model.finetune
    assert loaded.meta == model.meta
    assert loaded.global_mean == model.global_mean
    assert loaded.input_power == model.input_power
    assert loaded.input_offset == model.input_offset


def test_compressed_round_trip_is_bit_exact(tmp_path: Path) -> None:
    packed = compress(_model(), threshold=0.05, clusters=32)
    artifact.save(packed, tmp_path / "c.crmodel")
    loaded = artifact.load(tmp_path / "c.crmodel")
    assert isinstance(loaded, CompressedModel)
    assert loaded.A.indices.tobytes() == packed.A.indices.tobytes()
    assert loaded.Q.codebook.tobytes() == packed.Q.codebook.tobytes()
    assert loaded.model.A.tobytes() == packed.model.A.tobytes()
    assert loaded.stats == packed.stats


def test_compressed_artifact_is_smaller(tmp_path: Path) -> None:
    model = make_model(m=400, d=64, seed=1)
    artifact.save(model, tmp_path / "d.crmodel")
    artifact.save(compress(model, 0.01, 64), tmp_path / "c.crmodel")
    assert (tmp_path / "c.crmodel").stat().st_size < 0.6 * (tmp_path / "d.crmodel").stat().st_size


def _rewrite(src: Path, dst: Path, edit: dict[str, bytes | None]) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.namelist():
            data = edit.get(item, zin.read(item))
            if data is not None:
                zout.writestr(item, data)


def test_flipped_array_byte_is_rejected(tmp_path: Path) -> None:
    artifact.save(_model(), tmp_path / "m.crmodel")
    with zipfile.ZipFile(tmp_path / "m.crmodel") as zf:
        blob = bytearray(zf.read("A.npy"))
    blob[-1] ^= 0x01
    _rewrite(tmp_path / "m.crmodel", tmp_path / "bad.crmodel", {"A.npy": bytes(blob)})
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        artifact.load(tmp_path / "bad.crmodel")


def test_truncated_file_is_rejected(tmp_path: Path) -> None:
    artifact.save(_model(), tmp_path / "m.crmodel")
    data = (tmp_path / "m.crmodel").read_bytes()
    (tmp_path / "t.crmodel").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="not a readable model artifact"):
        artifact.load(tmp_path / "t.crmodel")


def test_other_schema_version_is_rejected(tmp_path: Path) -> None:
    artifact.save(_model(), tmp_path / "m.crmodel")
    with zipfile.ZipFile(tmp_path / "m.crmodel") as zf:
        manifest = json.loads(zf.read("manifest.json"))
    manifest["schema_version"] = 99
    _rewrite(
        tmp_path / "m.crmodel",
        tmp_path / "v.crmodel",
        {"manifest.json": json.dumps(manifest).encode()},
    )
    with pytest.raises(ArtifactError, match="schema version 99"):
        artifact.load(tmp_path / "v.crmodel")


def test_missing_manifest_and_missing_array_are_rejected(tmp_path: Path) -> None:
    artifact.save(_model(), tmp_path / "m.crmodel")
    _rewrite(tmp_path / "m.crmodel", tmp_path / "a.crmodel", {"manifest.json": None})
    with pytest.raises(ArtifactError, match="no manifest"):
        artifact.load(tmp_path / "a.crmodel")
    _rewrite(tmp_path / "m.crmodel", tmp_path / "b.crmodel", {"Q.npy": None})
    with pytest.raises(ArtifactError):
        artifact.load(tmp_path / "b.crmodel")


def test_pickled_array_is_refused(tmp_path: Path) -> None:
    import io

    artifact.save(_model(), tmp_path / "m.crmodel")
    buf = io.BytesIO()
    np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    blob = buf.getvalue()
    with zipfile.ZipFile(tmp_path / "m.crmodel") as zf:
        manifest = json.loads(zf.read("manifest.json"))
    import hashlib

    manifest["arrays"]["A"]["sha256"] = hashlib.sha256(blob).hexdigest()
    _rewrite(
        tmp_path / "m.crmodel",
        tmp_path / "p.crmodel",
        {"A.npy": blob, "manifest.json": json.dumps(manifest).encode()},
    )
    with pytest.raises((ArtifactError, ValueError)):
        artifact.load(tmp_path / "p.crmodel")


def test_not_a_zip_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "x.crmodel").write_bytes(b"hello")
    with pytest.raises(ArtifactError):
        artifact.load(tmp_path / "x.crmodel")


def _manifest(path: Path) -> dict[str, object]:
    with zipfile.ZipFile(path) as zf:
        loaded: dict[str, object] = json.loads(zf.read("manifest.json"))
    return loaded


def test_a_ranking_model_keeps_its_kind_and_input_weight(tmp_path: Path) -> None:
    """RELIABILITY.md line 37: a model's kind travels with it; a ranking model read back as a
    stars model would add users' means to its scores and clamp them."""
    from dataclasses import replace

    from libcryptorec.model import RANKING

    model = replace(_model(), kind=RANKING, rating_weight=0.2, global_mean=0.0)
    artifact.save(model, tmp_path / "r.crmodel")
    loaded = artifact.load(tmp_path / "r.crmodel")
    assert isinstance(loaded, CryptoRecModel)
    assert loaded.kind == RANKING
    assert loaded.rating_weight == 0.2
    R = random_ratings(3, 30, 0.3, 1)
    np.testing.assert_array_equal(loaded.predict(R), model.predict(R))
    assert _manifest(tmp_path / "r.crmodel")["schema_version"] == artifact.SCHEMA_VERSION


def test_schema_1_artifacts_are_stars_models(tmp_path: Path) -> None:
    """Artifacts written before kinds existed (schema 1) load as the stars models they are."""
    model = _model()
    artifact.save(model, tmp_path / "m.crmodel")
    manifest = _manifest(tmp_path / "m.crmodel")
    manifest["schema_version"] = 1
    del manifest["model_kind"], manifest["rating_weight"]
    _rewrite(
        tmp_path / "m.crmodel",
        tmp_path / "old.crmodel",
        {"manifest.json": json.dumps(manifest).encode()},
    )
    loaded = artifact.load(tmp_path / "old.crmodel")
    assert isinstance(loaded, CryptoRecModel)
    assert loaded.kind == "stars"
    assert loaded.rating_weight == 1.0
    R = random_ratings(3, 30, 0.3, 1)
    np.testing.assert_array_equal(loaded.predict(R), model.predict(R))


def test_an_unknown_model_kind_is_refused(tmp_path: Path) -> None:
    artifact.save(_model(), tmp_path / "m.crmodel")
    manifest = _manifest(tmp_path / "m.crmodel")
    manifest["model_kind"] = "clicks"
    _rewrite(
        tmp_path / "m.crmodel",
        tmp_path / "k.crmodel",
        {"manifest.json": json.dumps(manifest).encode()},
    )
    with pytest.raises(ArtifactError, match="model kind 'clicks'"):
        artifact.load(tmp_path / "k.crmodel")
