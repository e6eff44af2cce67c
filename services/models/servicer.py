"""ModelService over gRPC: converts the handler's descriptions into messages, once per version."""

from __future__ import annotations

import json

import grpc

from cryptorec.services.cache import ByteBudgetCache
from cryptorec.services.errors import about
from cryptorec.services.models.handler import ModelDescription, ModelHandler
from cryptorec.services.observability.current import note
from cryptorec.services.rpc.convert import kind_enum, kind_of, scheme_parameters
from cryptorec.services.rpc.errors import unary
from cryptorec.services.store.base import version_kind
from cryptorec.services.versions import served_versions
from cryptorec.v1 import model_service_pb2 as pb
from cryptorec.v1 import model_service_pb2_grpc as pb_grpc


def to_message(d: ModelDescription) -> pb.GetModelResponse:
    """The GetModel response for a description."""
    return pb.GetModelResponse(
        version=d.version,
        kind=kind_enum(d.kind),
        catalogue=[pb.CatalogItem(item_id=i, title=t) for i, t in d.catalogue],
        dim=d.dim,
        inputs=pb.ClientInputs(
            global_mean=d.inputs.global_mean,
            input_power=d.inputs.input_power,
            scale_min=d.inputs.scale[0],
            scale_max=d.inputs.scale[1],
            step_size=d.inputs.step_size,
            input_offset=d.inputs.input_offset,
            rating_weight=d.inputs.rating_weight,
        ),
        schemes=[scheme_parameters(s, d.quotes.get(str(s.backend_id), {})) for s in d.specs],
        compression=pb.CompressionStats(
            threshold=d.compression.threshold,
            clusters=d.compression.clusters,
            pruning_ratio=d.compression.pruning_ratio,
            reuse_ratio=d.compression.reuse_ratio,
        ),
        provenance_json=json.dumps(d.provenance),
    )


class ModelServicer(pb_grpc.ModelServiceServicer):
    def __init__(self, handler: ModelHandler, cache_bytes: int = 64 << 20) -> None:
        """`cache_bytes`: memory for the responses of described versions."""
        self.handler = handler
        self._responses: ByteBudgetCache[str, pb.GetModelResponse] = ByteBudgetCache(
            cache_bytes, lambda response: response.ByteSize()
        )

    def warm(self) -> None:
        """Describe the served models before readiness says so (the current model changed):
        the first GetModel then answers from the cache, like every later one."""
        for version in served_versions(self.handler.versions):
            self._described(version)

    @unary
    def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.ServicerContext
    ) -> pb.ListModelsResponse:
        versions, current = self.handler.listing()
        return pb.ListModelsResponse(
            models=[
                pb.ModelSummary(
                    version=v.version,
                    created_unix=int(v.created_unix),
                    items=int(v.summary.get("items", 0)),
                    dim=int(v.summary.get("dim", 0)),
                    kind=kind_enum(version_kind(v)),
                )
                for v in versions
            ],
            current_version=current or "",
        )

    @unary
    def GetModel(
        self, request: pb.GetModelRequest, context: grpc.ServicerContext
    ) -> pb.GetModelResponse:
        with about("kind"):
            kind = kind_of(request.kind)
        with about("version"):
            version = self.handler.resolve(request.version, kind)
        note(model_version=version)
        return self._described(version)

    def _described(self, version: str) -> pb.GetModelResponse:
        return self._responses.get(version, lambda: to_message(self.handler.describe(version)))
