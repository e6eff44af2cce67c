"""ModelService: model versions, the catalogue and the public parameters clients encrypt for."""

from __future__ import annotations

import json

import grpc

from cryptorec.v1 import model_service_pb2 as pb
from cryptorec.v1 import model_service_pb2_grpc as pb_grpc
from libcryptorec.he.schemes import ClientInputs, SchemeSpec
from services import bundle
from services.cache import ByteBudgetCache
from services.rpc.errors import unary
from services.rpc.protocol import mode_enum, scheme_enum
from services.store.base import Store


def scheme_parameters(s: SchemeSpec) -> pb.SchemeParameters:
    return pb.SchemeParameters(
        scheme=scheme_enum(s.scheme),
        mode=mode_enum(s.mode),
        parameter_set=s.parameter_set,
        slots=s.slots,
        width=s.plan().width if s.slots else 0,
        baby_steps=s.baby,
        rotation_steps=list(s.rotation_steps),
        input_bits=s.input_bits,
        result_bits=s.result_bits,
        reply_slot_bits=s.reply_slot_bits,
        reply_per_ciphertext=s.reply_per_ciphertext,
        ciphertexts_per_query=s.ciphertexts_per_query,
    )


class ModelServicer(pb_grpc.ModelServiceServicer):
    """Reads only the store; any replica answers the same."""

    def __init__(self, store: Store, cache_bytes: int = 64 << 20) -> None:
        """`cache_bytes`: memory for described versions (responses only: the catalogue and
        parameters; the models themselves are not kept)."""
        self.store = store
        self._responses: ByteBudgetCache[str, pb.GetModelResponse] = ByteBudgetCache(
            cache_bytes, lambda response: response.ByteSize()
        )
        # Models are loaded only to be described: a small cache of them suffices.
        self.versions = bundle.Versions(store, ByteBudgetCache(1, lambda value: int(value.nbytes)))

    def _describe(self, b: bundle.Bundle) -> pb.GetModelResponse:
        model, stats = b.packed.model, b.packed.stats
        inputs = ClientInputs.of(model)
        response = pb.GetModelResponse(
            version=b.version,
            catalogue=[pb.CatalogItem(item_id=i, title=t) for i, t in b.catalogue],
            dim=model.dim,
            inputs=pb.ClientInputs(
                global_mean=inputs.global_mean,
                input_power=inputs.input_power,
                scale_min=inputs.scale[0],
                scale_max=inputs.scale[1],
                step_size=inputs.step_size,
            ),
            schemes=[scheme_parameters(s) for s in b.specs],
            compression=pb.CompressionStats(
                threshold=stats.threshold,
                clusters=stats.clusters,
                pruning_ratio=stats.pruning_ratio,
                reuse_ratio=stats.reuse_ratio,
            ),
            provenance_json=json.dumps(b.summary.get("provenance", {})),
        )
        return response

    @unary
    def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.ServicerContext
    ) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(
            models=[
                pb.ModelSummary(
                    version=v.version,
                    created_unix=int(v.created_unix),
                    items=int(v.summary.get("items", 0)),
                    dim=int(v.summary.get("dim", 0)),
                )
                for v in self.store.versions()
            ],
            current_version=self.store.current() or "",
        )

    @unary
    def GetModel(
        self, request: pb.GetModelRequest, context: grpc.ServicerContext
    ) -> pb.GetModelResponse:
        version = self.versions.resolve(request.version)
        return self._responses.get(version, lambda: self._describe(self.versions.load(version)))
