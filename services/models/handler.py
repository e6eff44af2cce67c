"""The model service's work, without gRPC: which versions exist, which one serves, and what a
client needs to encrypt for one (catalogue, input transform, each scheme's parameters)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptorec.services.cache import ByteBudgetCache
from cryptorec.services.store.base import ModelStore, VersionInfo
from cryptorec.services.versions import Versions
from libcryptorec.compression import CompressionStats
from libcryptorec.he.backend import ClientInputs, SchemeSpec
from libcryptorec.model import ModelKind


@dataclass(frozen=True)
class ModelDescription:
    """Everything public about a model version."""

    version: str
    kind: ModelKind
    catalogue: list[tuple[int, str]]
    dim: int
    inputs: ClientInputs
    specs: list[SchemeSpec]
    compression: CompressionStats
    provenance: dict[str, Any]
    # Per "scheme/mode": bytes_up, bytes_down, server_seconds measured at publication.
    quotes: dict[str, dict[str, float]]


class ModelHandler:
    """Reads only the store; any replica answers the same."""

    def __init__(self, store: ModelStore) -> None:
        self.store = store
        # Models are loaded only to be described, once per version: none is kept.
        self.versions = Versions(
            store, ByteBudgetCache(0, lambda value: int(value.nbytes), keep_oversized=False)
        )

    def listing(self) -> tuple[list[VersionInfo], str | None]:
        """Complete versions, oldest first, and the current one."""
        return self.store.versions(), self.store.current()

    def resolve(self, version: str, kind: ModelKind | None = None) -> str:
        """The version a request for `version` ("" = current) of `kind` (None: any) is served
        from."""
        return self.versions.resolve(version, kind)

    def describe(self, version: str) -> ModelDescription:
        """Load `version` and describe it (seconds for a large model: cache the result)."""
        loaded = self.versions.load(version)
        model = loaded.packed.model
        return ModelDescription(
            version=loaded.version,
            kind=loaded.kind,
            catalogue=loaded.catalogue,
            dim=model.dim,
            inputs=ClientInputs.of(model),
            specs=loaded.specs,
            compression=loaded.packed.stats,
            provenance=dict(loaded.summary.get("provenance", {})),
            quotes={str(s.backend_id): loaded.quote(s) for s in loaded.specs},
        )
