"""EvaluatorService: encrypted predictions for any registered key and any published version.

Stateless: the model version is resolved per request (the current pointer, or the version the
client names) and every request is answered wholly from that version, so a publication during
a stream never mixes versions. Models, their encodings and clients' bound keys share one cache
bounded by bytes. The work (encoding, loading keys, evaluating) takes a work slot only once the
request is complete and valid. Every failure leaves as a precise status
(services/rpc/errors.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import grpc

from cryptorec.v1 import evaluator_service_pb2 as pb
from cryptorec.v1 import evaluator_service_pb2_grpc as pb_grpc
from libcryptorec.he import schemes
from services import bundle
from services.cache import ByteBudgetCache
from services.key_service import split_blobs
from services.rpc.admission import Admission, current_upload
from services.rpc.checksum import chunk_checksum
from services.rpc.errors import invalid, streaming
from services.rpc.options import CHUNK_BYTES
from services.rpc.protocol import mode_name, scheme_name
from services.store.base import Store, check_key_id

log = logging.getLogger("cryptorec.evaluator")


def item_ranges(spec: schemes.SchemeSpec, replies: int) -> list[tuple[int, int]]:
    """(first_item, count) covered by each reply ciphertext, in order."""
    per = spec.reply_per_ciphertext if spec.scheme == "paillier" else spec.slots
    return [(i * per, max(0, min(per, spec.items - i * per))) for i in range(replies)]


class EvaluatorServicer(pb_grpc.EvaluatorServiceServicer):
    def __init__(
        self,
        store: Store,
        admission: Admission,
        cache_bytes: int,
        paillier_workers: int = 1,
    ) -> None:
        """`cache_bytes`: memory for models, their encodings and clients' loaded keys, shared
        by all three; `paillier_workers`: processes per Paillier query."""
        self.store, self.admission, self.paillier_workers = store, admission, paillier_workers
        self.cache: ByteBudgetCache[tuple[str, ...], Any] = ByteBudgetCache(
            cache_bytes, lambda value: int(value.nbytes)
        )
        self.versions = bundle.Versions(store, self.cache)

    @streaming
    def Predict(
        self, request_iterator: Iterator[pb.PredictRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.PredictResponse]:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise invalid("the first message must be a PredictHeader")
        header = first.header
        scheme, mode = scheme_name(header.scheme), mode_name(header.mode)
        key_id = check_key_id(header.key_id)
        version = self.versions.resolve(header.model_version)
        b = self.versions.load(version)
        try:
            spec = schemes.find_spec(b.specs, scheme, mode)
        except ValueError as exc:
            raise invalid(str(exc)) from None
        if header.ciphertext_count != spec.ciphertexts_per_query:
            raise invalid(
                f"{scheme}/{mode} on model {version} takes {spec.ciphertexts_per_query} "
                f"ciphertexts, the header announces {header.ciphertext_count}"
            )
        key = self.store.key_info(key_id)  # metadata only: the bytes only if not yet bound
        if (key.meta["scheme"], key.meta["mode"]) != (scheme, mode):
            raise invalid(
                f"key {key_id} is for {key.meta['scheme']}/{key.meta['mode']}, "
                f"the request is {scheme}/{mode}"
            )
        upload = current_upload()
        if upload is not None:
            upload.expect(schemes.query_bytes(spec))
        ciphertexts = self._receive(request_iterator, spec.ciphertexts_per_query)
        with self.admission.work():  # taken only now: the request is complete and valid
            prepared = self.cache.get(
                ("prepared", version, scheme, mode), lambda: schemes.prepare(b.packed, spec)
            )
            evaluator = self.cache.get(
                ("bound", key_id, version, scheme, mode),
                lambda: self._bind(prepared, key_id),
                expected_size=schemes.bound_bytes(spec, key.size),
            )
            if not context.is_active():
                return
            started = time.perf_counter()
            replies = evaluator.evaluate(ciphertexts, should_stop=lambda: not context.is_active())
        log.info("%s/%s on %s: %.3f s", scheme, mode, version, time.perf_counter() - started)
        yield from self._chunks(replies, spec, version, context)

    def _bind(self, prepared: schemes.Prepared, key_id: str) -> schemes.Evaluator:
        record = self.store.get_key(key_id)
        meta, blobs = record.meta, split_blobs(record.meta, record.blob)
        del record  # the blobs are copies: let the whole go before the keys are loaded
        return schemes.bind(prepared, meta, blobs, workers=self.paillier_workers)

    def _receive(self, request_iterator: Iterator[pb.PredictRequest], expected: int) -> list[bytes]:
        ciphertexts: list[bytes] = []
        for index, message in enumerate(request_iterator):
            if message.WhichOneof("part") != "chunk":
                raise invalid("only ciphertext chunks may follow the header")
            if message.chunk.chunk_index != index:
                raise invalid(f"chunk {message.chunk.chunk_index} arrived where {index} was due")
            ciphertexts.extend(message.chunk.ciphertexts)
            if len(ciphertexts) > expected:
                raise invalid(f"more than the announced {expected} ciphertexts")
        if len(ciphertexts) != expected:
            raise invalid(f"received {len(ciphertexts)} ciphertexts, expected {expected}")
        return ciphertexts

    def _chunks(
        self, replies: list[bytes], spec: schemes.SchemeSpec, version: str, context: Any
    ) -> Iterator[pb.PredictResponse]:
        ranges = item_ranges(spec, len(replies))
        groups: list[list[int]] = [[]]
        size = 0
        for i, reply in enumerate(replies):
            if groups[-1] and size + len(reply) > CHUNK_BYTES:
                groups.append([])
                size = 0
            groups[-1].append(i)
            size += len(reply)
        for index, group in enumerate(groups):
            if not context.is_active():
                return  # the client went away: stop sending
            first = ranges[group[0]][0]
            count = sum(ranges[i][1] for i in group)
            cts = [replies[i] for i in group]
            yield pb.PredictResponse(
                chunk_index=index,
                total_chunks=len(groups),
                first_item=first,
                count=count,
                model_version=version,
                ciphertexts=cts,
                checksum=chunk_checksum(index, first, count, version, cts),
            )
