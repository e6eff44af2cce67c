"""Model artifacts: one zip file of raw .npy arrays plus a JSON manifest. No pickle anywhere.

The manifest carries a schema version, the library versions that wrote it, the model's
parameters and, for every array, its shape, dtype and sha256; loading checks all of them and
refuses a mismatch with `ArtifactError`, so a truncated or tampered file never becomes a model.
A compressed model stores codebooks and uint16 indices instead of float matrices.

Schema 2 added the model's kind (stars or ranking) and its input's rating weight. A reader of
schema 1 would take a ranking model for a stars model and serve wrong scores, so it must refuse
the file, and does: the schema number changed. Schema 1 files are stars models and still load.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from libcryptorec import __version__
from libcryptorec.compression import CompressedModel, CompressionStats, QuantizedMatrix
from libcryptorec.model import STARS, CryptoRecModel, FineTuning

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
MANIFEST = "manifest.json"
# Refuse absurd declarations before reading: an ml-1m model is about 16 MB of arrays.
MAX_ARRAY_BYTES = 2 << 30


class ArtifactError(ValueError):
    """A model artifact is corrupt, truncated, of another schema, or inconsistent."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _npy_bytes(array: npt.NDArray[Any]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def save(model: CryptoRecModel | CompressedModel, path: Path) -> str:
    """Write `model` to `path` atomically (temp file then rename); returns the manifest sha256."""
    data, digest = dumps(model)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return digest


def load(path: Path) -> CryptoRecModel | CompressedModel:
    """Read an artifact written by `save`, verifying schema, shapes, dtypes and checksums."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{path}: not a readable model artifact ({exc})") from exc
    return loads(data, label=str(path))


def dumps(model: CryptoRecModel | CompressedModel) -> tuple[bytes, str]:
    """The artifact as bytes, and the sha256 of its manifest."""
    arrays: dict[str, npt.NDArray[Any]]
    if isinstance(model, CompressedModel):
        kind = "compressed"
        base = model.model
        arrays = {
            "A.codebook": model.A.codebook,
            "A.indices": model.A.indices,
            "Q.codebook": model.Q.codebook,
            "Q.indices": model.Q.indices,
            "item_means": base.item_means,
        }
        extra: dict[str, Any] = {"compression": model.stats.to_dict()}
    else:
        kind, base = "dense", model
        arrays = {"A": base.A, "Q": base.Q, "item_means": base.item_means}
        extra = {}
    blobs = {name: _npy_bytes(a) for name, a in arrays.items()}
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "writer": {"cryptorec": __version__, "numpy": np.__version__},
        "n_items": base.n_items,
        "dim": base.dim,
        "global_mean": base.global_mean,
        "scale": list(base.scale),
        "input_power": base.input_power,
        "input_offset": base.input_offset,
        "rating_weight": base.rating_weight,
        "model_kind": base.kind,
        "finetune": asdict(base.finetune),
        "meta": base.meta,
        "arrays": {
            name: {"shape": list(a.shape), "dtype": a.dtype.str, "sha256": _sha256(blobs[name])}
            for name, a in arrays.items()
        },
        **extra,
    }
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, blob in blobs.items():
            zf.writestr(f"{name}.npy", blob)
        zf.writestr(MANIFEST, manifest_bytes)
    return buffer.getvalue(), _sha256(manifest_bytes)


def loads(data: bytes, label: str = "artifact") -> CryptoRecModel | CompressedModel:
    """Parse artifact bytes, verifying schema, shapes, dtypes and checksums."""
    path = label
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            manifest = _read_manifest(zf)
            arrays = {
                name: _read_array(zf, name, spec) for name, spec in manifest["arrays"].items()
            }
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise ArtifactError(f"{path}: not a readable model artifact ({exc})") from exc
    try:
        return _build(manifest, arrays)
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{path}: inconsistent model artifact ({exc})") from exc


def _read_manifest(zf: zipfile.ZipFile) -> dict[str, Any]:
    try:
        manifest = json.loads(zf.read(MANIFEST))
    except KeyError as exc:
        raise ArtifactError("no manifest.json: not a CryptoRec model artifact") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"manifest.json is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("schema_version") not in READABLE_SCHEMAS:
        found = manifest.get("schema_version") if isinstance(manifest, dict) else None
        raise ArtifactError(
            f"schema version {found!r}; this cryptorec ({__version__}) reads "
            + ", ".join(map(str, READABLE_SCHEMAS))
        )
    if manifest.get("kind") not in ("dense", "compressed"):
        raise ArtifactError(f"unknown artifact kind {manifest.get('kind')!r}")
    return manifest


def _read_array(zf: zipfile.ZipFile, name: str, spec: dict[str, Any]) -> npt.NDArray[Any]:
    try:
        info = zf.getinfo(f"{name}.npy")
    except KeyError as exc:
        raise ArtifactError(f"array {name} is listed in the manifest but missing") from exc
    if info.file_size > MAX_ARRAY_BYTES:
        raise ArtifactError(f"array {name} declares {info.file_size} bytes, over the cap")
    blob = zf.read(info)
    if _sha256(blob) != spec["sha256"]:
        raise ArtifactError(f"array {name}: sha256 mismatch (corrupt or tampered artifact)")
    array = np.lib.format.read_array(io.BytesIO(blob), allow_pickle=False)
    if list(array.shape) != spec["shape"] or array.dtype.str != spec["dtype"]:
        raise ArtifactError(f"array {name}: shape or dtype differs from the manifest")
    return array


def _build(
    manifest: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]
) -> CryptoRecModel | CompressedModel:
    common: dict[str, Any] = {
        "item_means": arrays["item_means"],
        "global_mean": float(manifest["global_mean"]),
        "scale": (float(manifest["scale"][0]), float(manifest["scale"][1])),
        "finetune": FineTuning(**manifest["finetune"]),
        "input_power": float(manifest["input_power"]),
        # Artifacts written before the offset existed were trained without one.
        "input_offset": float(manifest.get("input_offset", 0.0)),
        # Schema 1 knew only the paper's stars model.
        "rating_weight": float(manifest.get("rating_weight", 1.0)),
        "kind": str(manifest.get("model_kind", STARS)),
        "meta": dict(manifest["meta"]),
    }
    if manifest["kind"] == "dense":
        return CryptoRecModel(A=arrays["A"], Q=arrays["Q"], **common)
    qa = QuantizedMatrix(arrays["A.codebook"], arrays["A.indices"])
    qq = QuantizedMatrix(arrays["Q.codebook"], arrays["Q.indices"])
    model = CryptoRecModel(A=qa.dense(), Q=qq.dense(), **common)
    return CompressedModel(model, qa, qq, CompressionStats(**manifest["compression"]))
