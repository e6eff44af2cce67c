"""Model versions in the store: publishing one (the compressed artifact, the item catalogue
and a summary), loading one, and which one the services serve."""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from cryptorec.services.cache import ByteBudgetCache
from cryptorec.services.errors import PreconditionError
from cryptorec.services.store.base import (
    CorruptError,
    ModelNotFoundError,
    ModelStore,
    NotFoundError,
    check_version_id,
    version_kind,
)
from libcryptorec import artifact
from libcryptorec.artifact import ArtifactError
from libcryptorec.compression import CompressedModel
from libcryptorec.he import registry
from libcryptorec.he.backend import SchemeSpec
from libcryptorec.he.shards import check_shards, default_shards, shard_blocks
from libcryptorec.model import MODEL_KINDS, ModelKind

log = logging.getLogger("cryptorec.models")


@dataclass
class ModelVersion:
    """A published version: the compressed model, the catalogue as (item id, title) in the
    model's item order, and the summary recorded at publication."""

    version: str
    packed: CompressedModel
    catalogue: list[tuple[int, str]]
    summary: dict[str, Any]

    @property
    def nbytes(self) -> int:
        """Resident memory of the model (the catalogue is small beside it)."""
        return self.packed.nbytes + 64 * len(self.catalogue)

    @cached_property
    def specs(self) -> list[SchemeSpec]:
        """Public parameters per (scheme, mode); computed once (spectral norms take a second)."""
        return registry.specs(self.packed)

    @property
    def kind(self) -> ModelKind:
        """What the version's scores are: "stars" or "ranking"."""
        return self.packed.model.kind

    @property
    def shards(self) -> int:
        """How many item shards the version was split into at publication (1: none)."""
        return int(self.summary.get("shards", 1))

    def shard_runs(self, spec: SchemeSpec) -> list[range]:
        """The item blocks of each shard of a shardable (scheme, mode): the backend plans its
        own blocks."""
        blocks = registry.get(spec.scheme, spec.mode).blocks(spec.items, spec.dim)
        return shard_blocks(blocks, min(self.shards, blocks))

    def quote(self, spec: SchemeSpec) -> dict[str, float]:
        """The cost of one (scheme, mode) query measured at publication ({} if none was)."""
        quotes: dict[str, dict[str, float]] = self.summary.get("quote", {})
        return quotes.get(str(spec.backend_id), {})


def publish(
    store: ModelStore,
    version: str,
    packed: CompressedModel,
    catalogue: list[tuple[int, str]],
    *,
    shards: int | None = None,
    quote: dict[str, dict[str, float]] | None = None,
) -> None:
    """Write a version (artifact + catalogue) and make it current once verified; an artifact
    this code cannot read back is refused before anything is written. `shards`: item shards
    for the shardable schemes (default from the catalogue size); `quote`: measured costs per
    "scheme/mode" (`services/trainer/quote.py`)."""
    if len(catalogue) != packed.model.n_items:
        raise ValueError("the catalogue must name every item of the model, in model order")
    m, d = packed.model.n_items, packed.model.dim
    shardable = [b for b in registry.backends() if b.shardable]
    blocks = max((b.blocks(m, d) for b in shardable), default=1)
    shards = default_shards(blocks) if shards is None else shards
    if not 1 <= shards <= blocks:
        raise ValueError(f"cannot split a catalogue of {blocks} item blocks into {shards} shards")
    for backend in shardable if shards > 1 else ():  # one shard is computed where it lands
        own = backend.blocks(m, d)  # each backend shards its own blocks (shard_runs)
        check_shards(own, min(shards, own), backend.query_block_bytes())
    data, digest = artifact.dumps(packed)
    artifact.loads(data, label=f"model {version}")  # ArtifactError: never becomes current
    model = packed.model
    summary = {
        "kind": model.kind,
        "items": model.n_items,
        "dim": model.dim,
        "artifact_sha256": digest,
        "provenance": {k: v for k, v in model.meta.items() if k != "train_config"},
        "shards": shards,
        "quote": quote or {},
    }
    parts = {"model": data, "catalogue": json.dumps(catalogue).encode()}
    store.publish(version, parts, summary)


def load(store: ModelStore, version: str) -> ModelVersion:
    """Read and verify a version (raises NotFoundError, CorruptError, ArtifactError)."""
    info, parts = store.read(version)
    packed = artifact.loads(parts["model"], label=f"model {version}")
    if not isinstance(packed, CompressedModel):
        raise ValueError(f"model {version} is not compressed")
    # The services encode and describe models, never predict in plaintext: a third of the
    # memory (evaluators hold one per version, every shard process the whole of it).
    packed = packed.lean()
    catalogue = [(int(i), str(t)) for i, t in json.loads(parts["catalogue"])]
    return ModelVersion(version, packed, catalogue, info.summary)


class Versions:
    """Model versions as the services see them: loaded through `cache`, and "current"
    resolved to the newest version this process can load. A current version that cannot be
    loaded (another schema from a newer trainer, a corrupt part) is logged and skipped, so the
    previous version keeps serving; asked for by name, it is refused (FAILED_PRECONDITION,
    DATA_LOSS). Whether a version loads is learnt once per process."""

    def __init__(self, store: ModelStore, cache: ByteBudgetCache[tuple[str, ...], Any]) -> None:
        self.store, self.cache = store, cache
        self._loads: dict[str, bool] = {}

    def load(self, version: str) -> ModelVersion:
        """The version called `version` (NotFoundError, ArtifactError, CorruptError)."""
        check_version_id(version)
        try:
            value: ModelVersion = self.cache.get(
                ("model", version), lambda: load(self.store, version)
            )
        except (ArtifactError, CorruptError) as exc:
            if self._loads.get(version, True):
                log.error("model %s cannot be loaded: %s", version, exc)
            self._loads[version] = False
            raise
        self._loads[version] = True
        return value

    def _loadable(self, version: str) -> bool:
        if version not in self._loads:
            with contextlib.suppress(ArtifactError, CorruptError):
                self.load(version)
        return self._loads.get(version, False)

    def resolve(self, requested: str = "", kind: ModelKind | None = None) -> str:
        """The version to serve: `requested` if given (checked; PreconditionError if it is not
        of `kind`), else the current one if it loads (and is of `kind`, if given), else the
        newest loadable version (of that kind). NotFoundError if there is none."""
        if requested:
            check_version_id(requested)
            if kind is not None and self.load(requested).kind != kind:
                raise PreconditionError(f"model {requested} is not a {kind} model")
            return requested
        current = self.store.current()
        if current is None:
            raise ModelNotFoundError("no model has been published yet")
        if kind is None and self._loadable(current):
            return current
        # Kinds come from the listing's summaries (no model is loaded to learn one); the
        # current version comes first, then the others newest first.
        listed = sorted(self.store.versions(), key=lambda v: (v.version == current, v.created_unix))
        for info in reversed(listed):
            if kind is not None and version_kind(info) != kind:
                continue
            if self._loadable(info.version):
                return info.version
        if kind is not None:
            others = sorted({version_kind(v) for v in listed} - {kind})
            served = f"; this deployment serves {' and '.join(others)} models" if others else ""
            raise ModelNotFoundError(f"no {kind} model has been published (or none loads){served}")
        raise ModelNotFoundError(f"no loadable model version (current {current} cannot be loaded)")


def served_versions(versions: Versions) -> list[str]:
    """What clients are served now: the current version (or the newest loadable one, if it
    does not load) and the newest loadable version of each kind (a client may ask for
    either kind)."""
    served = set()
    for kind in (None, *MODEL_KINDS):
        with contextlib.suppress(NotFoundError, PreconditionError):
            served.add(versions.resolve(kind=kind))
    return sorted(served)
