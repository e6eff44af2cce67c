"""A published model version in the store: the compressed artifact, the item catalogue and a
summary. The catalogue lists (item id, title) in the model's item order."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from libcryptorec import artifact
from libcryptorec.compression import CompressedModel
from libcryptorec.he import schemes
from services.store.base import Store


@dataclass
class Bundle:
    version: str
    packed: CompressedModel
    catalogue: list[tuple[int, str]]
    summary: dict[str, Any]

    @property
    def nbytes(self) -> int:
        """Resident memory of the model (the catalogue is small beside it)."""
        return self.packed.nbytes + 64 * len(self.catalogue)

    @cached_property
    def specs(self) -> list[schemes.SchemeSpec]:
        """Public parameters per (scheme, mode); computed once (spectral norms take a second)."""
        return schemes.specs(self.packed)


def publish(
    store: Store, version: str, packed: CompressedModel, catalogue: list[tuple[int, str]]
) -> None:
    """Write a version (artifact + catalogue) and make it current once verified."""
    if len(catalogue) != packed.model.n_items:
        raise ValueError("the catalogue must name every item of the model, in model order")
    data, digest = artifact.dumps(packed)
    model = packed.model
    summary = {
        "items": model.n_items,
        "dim": model.dim,
        "artifact_sha256": digest,
        "provenance": {k: v for k, v in model.meta.items() if k != "train_config"},
    }
    parts = {"model": data, "catalogue": json.dumps(catalogue).encode()}
    store.publish(version, parts, summary)


def load(store: Store, version: str) -> Bundle:
    """Read and verify a version (raises NotFoundError, CorruptError, ArtifactError)."""
    info, parts = store.read(version)
    packed = artifact.loads(parts["model"], label=f"model {version}")
    if not isinstance(packed, CompressedModel):
        raise ValueError(f"model {version} is not compressed")
    catalogue = [(int(i), str(t)) for i, t in json.loads(parts["catalogue"])]
    return Bundle(version, packed, catalogue, info.summary)
