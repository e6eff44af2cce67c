"""The client: holds the secret keys, encrypts, streams, verifies, decrypts and ranks.

    client = CryptoRecClient("localhost:50051")          # one target serving every role
    result = client.recommend({1193: 5, 661: 3}, scheme="ckks", mode="fast", top_n=10)
    stars = client.recommend({1193: 5, 661: 3}, kind="stars")  # predicted stars instead

Nothing secret leaves this object: the services receive public keys and ciphertexts only.
The model version is pinned per call (the one GetModel returned), so the evaluator answers
from exactly the model the client encrypted for.
"""

from __future__ import annotations

import functools
import hashlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from cryptorec.services.client.errors import reported
from cryptorec.services.client.keycache import KeyCache
from cryptorec.services.rpc.call_metadata import CallMetadata
from cryptorec.services.rpc.checksum import chunk_checksum
from cryptorec.services.rpc.convert import kind_enum, kind_of, mode_enum, scheme_enum, spec_from_pb
from cryptorec.services.rpc.details import details_of
from cryptorec.services.rpc.options import (
    CHANNEL_OPTIONS,
    CHUNK_BYTES,
    PREDICT_ATTEMPTS,
    PREDICT_BACKOFF_SECONDS,
)
from cryptorec.services.rpc.request_id import request_id_of
from cryptorec.services.rpc.streams import groups_by_bytes, slices
from cryptorec.services.rpc.tls import ClientTls
from cryptorec.services.rpc.tls import channel as open_channel
from cryptorec.v1 import account_service_pb2 as account_pb
from cryptorec.v1 import account_service_pb2_grpc as account_grpc
from cryptorec.v1 import evaluator_service_pb2 as ev_pb
from cryptorec.v1 import evaluator_service_pb2_grpc as ev_grpc
from cryptorec.v1 import key_service_pb2 as key_pb
from cryptorec.v1 import key_service_pb2_grpc as key_grpc
from cryptorec.v1 import model_service_pb2 as model_pb
from cryptorec.v1 import model_service_pb2_grpc as model_grpc
from cryptorec.v1 import types_pb2
from libcryptorec.he import registry
from libcryptorec.he.backend import Client, ClientInputs, SchemeSpec
from libcryptorec.model import STARS, ModelKind


class ReplyError(RuntimeError):
    """The evaluator's reply stream is incomplete, reordered, duplicated or corrupt."""


class InputError(ValueError):
    """The caller's ratings or choices cannot be used with this model (nothing was sent)."""


# The longest wait the library sits out by itself when a replica asks it to retry later.
MAX_RETRY_WAIT_SECONDS = 10.0


def retry_wait(exc: grpc.RpcError | ReplyError, attempt: int) -> float | None:
    """Seconds to wait before sending a failed query again, or None not to: a damaged reply
    or an unreachable replica (round-robin takes the retry elsewhere) after an exponential
    backoff; an overloaded replica after the delay it asked for, if short. Jittered, so that
    clients refused together do not return together. A spent budget is never retried."""
    backoff = PREDICT_BACKOFF_SECONDS * 2**attempt
    if isinstance(exc, ReplyError):
        wait = backoff
    elif not isinstance(exc, grpc.Call):
        return None
    elif exc.code() == grpc.StatusCode.UNAVAILABLE:
        wait = backoff
    elif details_of(exc).reason == "OVERLOADED":
        asked = details_of(exc).retry_after or backoff
        if asked > MAX_RETRY_WAIT_SECONDS:
            return None
        wait = max(asked, backoff)
    else:
        return None
    return float(wait * (0.5 + random.random()))


@dataclass(frozen=True)
class Recommendation:
    """One recommended item and its score: predicted stars from a stars model, a ranking
    score (which only orders items) from a ranking model."""

    item_id: int
    title: str
    score: float


@dataclass
class RecommendResult:
    """Top-N recommendations with what each phase cost; `kind` says what the scores are."""

    model_version: str
    scheme: str
    mode: str
    recommendations: list[Recommendation]
    kind: ModelKind = STARS
    timings: dict[str, float] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    request_id: str = ""  # the Predict call's, as the evaluator logged it
    # What the model service quoted before the query: bytes_up, bytes_down, server_seconds.
    quote: dict[str, float] = field(default_factory=dict)


@dataclass
class _Keys:
    client: Client
    key_id: str


F = TypeVar("F", bound=Callable[..., Any])


def _reporting(method: F) -> F:
    """Failed calls leave the library as ServiceError: still a grpc.RpcError with `code()`,
    and shown with the request id the server logged."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except grpc.RpcError as exc:
            raise reported(exc) from exc

    return cast(F, wrapper)


class CryptoRecClient:
    """Talks to the model, key and evaluator services (one target may serve all three)."""

    def __init__(
        self,
        target: str,
        *,
        key_target: str | None = None,
        evaluator_target: str | None = None,
        timeout: float = 120.0,
        key_dir: Path | None = None,
        tls: ClientTls | None = None,
        token: str | None = None,
        whole_messages: bool = False,
    ) -> None:
        """`key_dir`: where to keep generated keys between runs (None: this object only);
        `tls`: the CA (and client certificate for mutual TLS) when the services use TLS;
        `token`: the bearer token the operator issued, when the services require one;
        `whole_messages`: send key sets and queries in one message each (RegisterKeysWhole,
        PredictWhole), as browsers must, instead of streaming them in chunks."""
        self.timeout = timeout
        self.whole_messages = whole_messages
        self.key_target = key_target or target
        self._cache = KeyCache(key_dir) if key_dir is not None else None
        self._channels = {
            t: _channel(t, tls, token)
            for t in {target, key_target or target, evaluator_target or target}
        }
        self.models = model_grpc.ModelServiceStub(self._channels[target])
        self.keys = key_grpc.KeyServiceStub(self._channels[key_target or target])
        self.evaluator = ev_grpc.EvaluatorServiceStub(self._channels[evaluator_target or target])
        self.accounts = account_grpc.AccountServiceStub(self._channels[target])
        self._keys: dict[tuple[Any, ...], _Keys] = {}
        self.retries = 0  # Predict attempts repeated after a replica failed
        self.last_request_id = ""  # the last Predict's

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()

    @_reporting
    def usage(self) -> account_pb.GetUsageResponse:
        """This client's budget and quotas as the service counts them, and when its token
        expires (FAILED_PRECONDITION from a server without authentication)."""
        return self.accounts.GetUsage(account_pb.GetUsageRequest(), timeout=self.timeout)

    @_reporting
    def model_info(
        self, version: str = "", kind: ModelKind | None = None
    ) -> model_pb.GetModelResponse:
        """The model service's description of `version` (default: the current one; with
        `kind`, the newest version of that kind)."""
        request = model_pb.GetModelRequest(version=version)
        if kind is not None:
            request.kind = kind_enum(kind)
        response: model_pb.GetModelResponse = self.models.GetModel(request, timeout=self.timeout)
        return response

    def _spec(self, info: model_pb.GetModelResponse, scheme: str, mode: str) -> SchemeSpec:
        for p in info.schemes:
            if p.scheme == scheme_enum(scheme) and p.mode == mode_enum(mode):
                return spec_from_pb(p, len(info.catalogue), info.dim)
        raise InputError(f"model {info.version} offers no {scheme}/{mode}")

    @_reporting
    def ensure_keys(
        self,
        info: model_pb.GetModelResponse,
        scheme: str,
        mode: str,
        timings: dict[str, float],
        sizes: dict[str, int],
    ) -> _Keys:
        """Generate and register keys for (scheme, mode) once per parameter set and plan."""
        spec = self._spec(info, scheme, mode)
        cache_key = (spec.scheme, spec.mode, spec.parameter_set, spec.rotation_steps, spec.items)
        if cache_key in self._keys:
            return self._keys[cache_key]
        inputs = _inputs(info)
        backend = registry.get(scheme, mode)
        saved = self._cache.load(self.key_target, spec) if self._cache else None
        if saved is not None:
            client = backend.new_client(spec, inputs, keys=saved[0])
            if self._registered(saved[1]):
                keys = _Keys(client, saved[1])
                self._keys[cache_key] = keys
                return keys
        else:
            t0 = time.perf_counter()
            client = backend.new_client(spec, inputs)
            timings["keygen"] = time.perf_counter() - t0
        blobs = client.key_blobs()
        t0 = time.perf_counter()
        key_id = self.register(spec, blobs)
        timings["register"] = time.perf_counter() - t0
        sizes["keys"] = sum(len(b) for b in blobs.values())
        keys = _Keys(client, key_id)
        self._keys[cache_key] = keys
        if self._cache is not None:
            self._cache.save(self.key_target, spec, client.export_keys(), key_id)
        return keys

    @_reporting
    def register(self, spec: SchemeSpec, blobs: dict[str, bytes]) -> str:
        """Register public key blobs for `spec` (a header, then the bytes in chunks); the key
        id (the same for the same keys, whoever registers them)."""
        header = key_pb.KeyHeader(
            scheme=scheme_enum(spec.scheme),
            mode=mode_enum(spec.mode),
            parameter_set=spec.parameter_set,
            rotation_steps=list(spec.rotation_steps),
            blobs=[
                key_pb.KeyBlob(name=n, size=len(b), sha256=hashlib.sha256(b).digest())
                for n, b in blobs.items()
            ],
        )

        data = b"".join(blobs.values())
        if self.whole_messages:
            whole = key_pb.RegisterKeysWholeRequest(header=header, keys=data)
            return str(self.keys.RegisterKeysWhole(whole, timeout=self.timeout).key_id)

        def stream() -> Iterator[key_pb.RegisterKeysRequest]:
            yield key_pb.RegisterKeysRequest(header=header)
            for piece in slices(data, CHUNK_BYTES):
                yield key_pb.RegisterKeysRequest(chunk=piece)

        return str(self.keys.RegisterKeys(stream(), timeout=self.timeout).key_id)

    def _registered(self, key_id: str) -> bool:
        """Whether the key service still holds `key_id` (registrations expire)."""
        try:
            self.keys.GetKeyInfo(key_pb.GetKeyInfoRequest(key_id=key_id), timeout=self.timeout)
            return True
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED):
                # Expired, or registered under another client: registering the same public
                # keys again gives the same id, owned by this client.
                return False
            raise

    @_reporting
    def predict(
        self,
        ratings: dict[int, float],
        scheme: str = "ckks",
        mode: str = "fast",
        version: str = "",
        kind: ModelKind | None = None,
    ) -> tuple[npt.NDArray[np.float64], RecommendResult]:
        """Encrypted scores for every catalogue item, in catalogue order, unclamped, from
        `version` (default: the current one, or the newest of `kind`)."""
        info, result = self._describe(version, scheme, mode, kind)
        return self._predict(info, ratings, result), result

    @_reporting
    def recommend(
        self,
        ratings: dict[int, float],
        scheme: str = "ckks",
        mode: str = "fast",
        top_n: int = 10,
        version: str = "",
        kind: ModelKind | None = None,
    ) -> RecommendResult:
        """Top-N unrated items by encrypted score, from `version` (default: the current one,
        or the newest of `kind`): a ranking model's scores as they are, a stars model's
        clamped to the rating scale."""
        info, result = self._describe(version, scheme, mode, kind)
        predictions = self._predict(info, ratings, result)
        scores = (
            np.clip(predictions, info.inputs.scale_min, info.inputs.scale_max)
            if result.kind == STARS
            else predictions
        )
        ids = np.array([c.item_id for c in info.catalogue])
        rated = np.isin(ids, list(ratings))
        order = [i for i in np.argsort(-scores, kind="stable") if not rated[i]][:top_n]
        result.recommendations = [
            Recommendation(int(ids[i]), info.catalogue[i].title, float(scores[i])) for i in order
        ]
        return result

    def _describe(
        self, version: str, scheme: str, mode: str, kind: ModelKind | None = None
    ) -> tuple[model_pb.GetModelResponse, RecommendResult]:
        """The model's description (one GetModel call) and a result to fill in."""
        t0 = time.perf_counter()
        info = self.model_info(version, kind)
        result = RecommendResult(info.version, scheme, mode, [], kind=model_kind(info))
        result.timings["model"] = time.perf_counter() - t0
        for p in info.schemes:
            if (p.scheme, p.mode) == (scheme_enum(scheme), mode_enum(mode)) and p.bytes_up:
                result.quote = {
                    "bytes_up": float(p.bytes_up),
                    "bytes_down": float(p.bytes_down),
                    "server_seconds": p.server_seconds,
                }
        return info, result

    def _predict(
        self, info: model_pb.GetModelResponse, ratings: dict[int, float], result: RecommendResult
    ) -> npt.NDArray[np.float64]:
        """Encrypt, evaluate remotely, decrypt: (m,) predictions; phases into `result`."""
        timings, sizes = result.timings, result.bytes
        keys = self.ensure_keys(info, result.scheme, result.mode, timings, sizes)
        t0 = time.perf_counter()
        ciphertexts, rbar = keys.client.encrypt(ratings_row(info, ratings))
        timings["encrypt"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        received = self.evaluate(
            info.version,
            keys,
            result.scheme,
            result.mode,
            ciphertexts,
            len(info.catalogue),
            info.inputs.input_offset,
            result.kind,
        )
        # Decryption happens as chunks arrive; "evaluate" is the rest of the wait.
        timings["evaluate"] = time.perf_counter() - t0 - received.decrypt_seconds
        timings["first_reply"] = received.first_chunk_seconds
        timings["decrypt"] = received.decrypt_seconds
        result.request_id = self.last_request_id
        sizes["up"] = sum(map(len, ciphertexts))
        sizes["down"] = received.bytes
        return np.asarray(rbar + received.values, dtype=np.float64)

    def key_sets(self) -> list[Any]:
        """The key sets this client registered (or loaded), as `ensure_keys` returns them."""
        return list(self._keys.values())

    def share_keys(self, other: CryptoRecClient) -> None:
        """Use `other`'s key sets from now on (several clients of one deployment, each aimed
        at another evaluator replica, registering once: benchmarks and fault tests)."""
        self._keys = other._keys

    def evaluate(
        self,
        version: str,
        keys: _Keys,
        scheme: str,
        mode: str,
        ciphertexts: list[bytes],
        items: int,
        input_offset: float = 0.0,
        kind: ModelKind | None = None,
    ) -> Received:
        """Send one query already encrypted under `keys` (from `ensure_keys`) and take in its
        reply (retried on another replica if one fails); `input_offset` and `kind` are echoed
        from GetModel (None: as a client older than API 1.4.0, which sends no kind). `predict`
        does all of it; this is for load tests and probes that encrypt once."""
        header = ev_pb.PredictHeader(
            model_version=version,
            key_id=keys.key_id,
            scheme=scheme_enum(scheme),
            mode=mode_enum(mode),
            ciphertext_count=len(ciphertexts),
            input_offset=input_offset,
            model_kind=kind_enum(kind) if kind is not None else types_pb2.MODEL_KIND_UNSPECIFIED,
        )

        def stream() -> Iterator[ev_pb.PredictRequest]:
            yield ev_pb.PredictRequest(header=header)
            groups = groups_by_bytes([len(c) for c in ciphertexts], CHUNK_BYTES)
            for index, group in enumerate(groups):
                chunk = ev_pb.CiphertextChunk(
                    chunk_index=index, ciphertexts=ciphertexts[group.start : group.stop]
                )
                yield ev_pb.PredictRequest(chunk=chunk)

        # The query is idempotent (and an unanswered one is not charged): if the replica dies,
        # is overloaded or the stream breaks, send it again.
        for attempt in range(PREDICT_ATTEMPTS):
            try:
                started = time.perf_counter()
                if self.whole_messages:
                    whole = ev_pb.PredictWholeRequest(header=header, ciphertexts=ciphertexts)
                    calls = self.evaluator.PredictWhole(whole, timeout=self.timeout)
                else:
                    calls = self.evaluator.Predict(stream(), timeout=self.timeout)
                received = receive_replies(calls, version, items, keys.client.decrypt_part)
                received.first_chunk_seconds -= started
                self.last_request_id = request_id_of(calls) or ""
                return received
            except (grpc.RpcError, ReplyError) as exc:
                wait = retry_wait(exc, attempt)
                if wait is None or attempt == PREDICT_ATTEMPTS - 1:
                    raise
                self.retries += 1
                time.sleep(wait)
        raise AssertionError("unreachable")


def recommendations_text(result: RecommendResult) -> str:
    """A result's top list for people: a heading that says what the scores are, then one
    numbered line per item."""
    what = "predicted stars" if result.kind == STARS else "ranking score"
    note = "" if result.kind == STARS else "; scores only order the list, they are not stars"
    lines = [
        f"Top {len(result.recommendations)} by {what} ({result.scheme}/{result.mode}, "
        f"{result.kind} model {result.model_version}{note}):"
    ]
    lines += [
        f"{rank:>3}. {r.score:5.2f}  {r.title}" for rank, r in enumerate(result.recommendations, 1)
    ]
    return "\n".join(lines)


def _channel(target: str, tls: ClientTls | None, token: str | None) -> grpc.Channel:
    """A channel to `target` (TLS if given) that sends a request id, and `token` if given,
    with every call."""
    channel = open_channel(target, tls, CHANNEL_OPTIONS)
    return grpc.intercept_channel(channel, CallMetadata(token))


@dataclass
class Received:
    """A reply as the client took it in: the (m,) decrypted values (the user's mean not yet
    added), its size, when its first chunk arrived and the time spent decrypting."""

    values: npt.NDArray[np.float64]
    bytes: int = 0
    first_chunk_seconds: float = 0.0
    decrypt_seconds: float = 0.0


def receive_replies(
    responses: Any,
    version: str,
    items: int,
    decrypt_part: Callable[[list[bytes], int], npt.NDArray[np.float64]],
) -> Received:
    """Check each chunk as it arrives (its index, version and checksum, and that its items
    are new and in the catalogue) and decrypt it at once; at the end, that the chunks covered
    every item exactly once. Chunks may come in any item order (shards compute them)."""
    received = Received(np.zeros(items))
    covered = np.zeros(items, dtype=bool)
    expected_index, total = 0, None
    for r in responses:
        if expected_index == 0:
            received.first_chunk_seconds = time.perf_counter()
        if r.chunk_index != expected_index:
            raise ReplyError(f"chunk {r.chunk_index} arrived where {expected_index} was due")
        if r.model_version != version:
            raise ReplyError(f"chunk from model {r.model_version}, expected {version}")
        total = r.total_chunks if total is None else total
        end = r.first_item + r.count
        if r.total_chunks != total or not 0 <= r.first_item < end <= items:
            raise ReplyError("chunks do not tile the catalogue")
        if covered[r.first_item : end].any():
            raise ReplyError(f"chunk {r.chunk_index} repeats items already received")
        if r.checksum != chunk_checksum(
            r.chunk_index, r.first_item, r.count, r.model_version, r.ciphertexts
        ):
            raise ReplyError(f"chunk {r.chunk_index}: checksum mismatch")
        t0 = time.perf_counter()
        received.values[r.first_item : end] = decrypt_part(list(r.ciphertexts), r.count)
        received.decrypt_seconds += time.perf_counter() - t0
        covered[r.first_item : end] = True
        received.bytes += sum(map(len, r.ciphertexts))
        expected_index += 1
    if total is None or expected_index != total or not covered.all():
        raise ReplyError(
            f"reply incomplete: {expected_index} of {total} chunks, "
            f"{int(covered.sum())} of {items} items"
        )
    return received


def model_kind(info: model_pb.GetModelResponse) -> ModelKind:
    """What the described version's scores are; a server older than API 1.4.0 says nothing
    and serves stars models only."""
    kind = kind_of(info.kind, unspecified=STARS)
    assert kind is not None
    return kind


def _inputs(info: model_pb.GetModelResponse) -> ClientInputs:
    i = info.inputs
    kind = model_kind(info)
    return ClientInputs(
        len(info.catalogue),
        i.global_mean,
        i.input_power,
        (i.scale_min, i.scale_max),
        i.step_size,
        i.input_offset,
        # Older servers leave it 0: their stars models weigh deviations by 1.
        i.rating_weight if info.kind else 1.0,
        kind,
    )


def ratings_row(info: model_pb.GetModelResponse, ratings: dict[int, float]) -> sp.csr_matrix:
    """The (1, m) rating row over the catalogue; items the model does not know are dropped."""
    position = {c.item_id: k for k, c in enumerate(info.catalogue)}
    known = [(position[i], float(r)) for i, r in ratings.items() if i in position]
    if not known:
        raise InputError("none of the rated items is in the model's catalogue")
    lo, hi = info.inputs.scale_min, info.inputs.scale_max
    if any(not lo <= r <= hi for _, r in known):
        raise InputError(f"ratings must lie in [{lo}, {hi}]")
    cols, vals = zip(*sorted(known), strict=True)
    return sp.csr_matrix(
        (np.array(vals, np.float32), (np.zeros(len(cols), int), np.array(cols))),
        shape=(1, len(info.catalogue)),
    )
