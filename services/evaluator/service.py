"""EvaluatorService: encrypted predictions for any registered key and any published version.

Stateless: the model version is resolved per request (the current pointer, or the version the
client names) and every request is answered wholly from that version, so a publication during
a stream never mixes versions. Models, their encodings and clients' bound keys are cached.
Every failure leaves as a precise status (see services/rpc/errors.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

import grpc

from cryptorec.v1 import evaluator_service_pb2 as pb
from cryptorec.v1 import evaluator_service_pb2_grpc as pb_grpc
from libcryptorec.he import schemes
from services import bundle
from services.key_service import split_blobs
from services.rpc.checksum import chunk_checksum
from services.rpc.errors import invalid, streaming
from services.rpc.options import CHUNK_BYTES
from services.rpc.protocol import mode_name, scheme_name
from services.store.base import NotFoundError, Store

log = logging.getLogger("cryptorec.evaluator")
K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A small thread-safe LRU cache; `close` is called on evicted values that have one."""

    def __init__(self, size: int) -> None:
        self.size, self._data, self._lock = size, OrderedDict[K, V](), threading.Lock()

    def get(self, key: K, make: Callable[[], V]) -> V:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = make()  # outside the lock: building can take seconds
        with self._lock:
            self._data[key] = value
            while len(self._data) > self.size:
                _, old = self._data.popitem(last=False)
                close = getattr(old, "close", None)
                if close is not None:
                    close()
            return value


def item_ranges(spec: schemes.SchemeSpec, replies: int) -> list[tuple[int, int]]:
    """(first_item, count) covered by each reply ciphertext, in order."""
    per = spec.reply_per_ciphertext if spec.scheme == "paillier" else spec.slots
    return [(i * per, max(0, min(per, spec.items - i * per))) for i in range(replies)]


class EvaluatorServicer(pb_grpc.EvaluatorServiceServicer):
    def __init__(self, store: Store, paillier_workers: int = 1) -> None:
        """`paillier_workers`: processes per Paillier query (SEAL schemes run in-process)."""
        self.store, self.paillier_workers = store, paillier_workers
        self._bundles: LRU[str, bundle.Bundle] = LRU(2)
        self._prepared: LRU[tuple[str, str, str], schemes.Prepared] = LRU(4)
        self._bound: LRU[tuple[str, str, str, str], schemes.Evaluator] = LRU(16)

    @streaming
    def Predict(
        self, request_iterator: Iterator[pb.PredictRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.PredictResponse]:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise invalid("the first message must be a PredictHeader")
        header = first.header
        scheme, mode = scheme_name(header.scheme), mode_name(header.mode)
        version = header.model_version or self.store.current()
        if not version:
            raise NotFoundError("no model has been published yet")
        b = self._bundles.get(version, lambda: bundle.load(self.store, version))
        try:
            spec = schemes.find_spec(b.specs, scheme, mode)
        except ValueError as exc:
            raise invalid(str(exc)) from None
        if header.ciphertext_count != spec.ciphertexts_per_query:
            raise invalid(
                f"{scheme}/{mode} on model {version} takes {spec.ciphertexts_per_query} "
                f"ciphertexts, the header announces {header.ciphertext_count}"
            )
        record = self.store.get_key(header.key_id)
        if (record.meta["scheme"], record.meta["mode"]) != (scheme, mode):
            raise invalid(
                f"key {header.key_id} is for {record.meta['scheme']}/{record.meta['mode']}, "
                f"the request is {scheme}/{mode}"
            )
        ciphertexts = self._receive(request_iterator, spec.ciphertexts_per_query)
        prepared = self._prepared.get(
            (version, scheme, mode), lambda: schemes.prepare(b.packed, spec)
        )
        evaluator = self._bound.get(
            (header.key_id, version, scheme, mode),
            lambda: schemes.bind(
                prepared,
                record.meta,
                split_blobs(record.meta, record.blob),
                workers=self.paillier_workers,
            ),
        )
        if not context.is_active():
            return
        started = time.perf_counter()
        replies = evaluator.evaluate(ciphertexts, should_stop=lambda: not context.is_active())
        log.info("%s/%s on %s: %.3f s", scheme, mode, version, time.perf_counter() - started)
        yield from self._chunks(replies, spec, version, context)

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
