"""ModelService: model versions, the catalogue and the public parameters clients encrypt for."""

from __future__ import annotations

import json
from functools import lru_cache

import grpc

from cryptorec.v1 import model_service_pb2 as pb
from cryptorec.v1 import model_service_pb2_grpc as pb_grpc
from libcryptorec.he.schemes import ClientInputs, SchemeSpec
from services import bundle
from services.rpc.errors import unary
from services.rpc.protocol import mode_enum, scheme_enum
from services.store.base import NotFoundError, Store


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

    def __init__(self, store: Store) -> None:
        self.store = store
        self._bundle = lru_cache(maxsize=4)(self._load)

    def _load(self, version: str) -> tuple[bundle.Bundle, pb.GetModelResponse]:
        b = bundle.load(self.store, version)
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
        return b, response

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
        version = request.version or self.store.current()
        if not version:
            raise NotFoundError("no model has been published yet")
        return self._bundle(version)[1]
