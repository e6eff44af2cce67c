"""A deployment serving a ranking model and a stars model at once, over real gRPC on both
stores (RELIABILITY.md line 37): GetModel finds each kind, each answers encrypted queries whose
decrypted top 10 is its plaintext top 10, and a client that does not know a version's kind is
refused (FAILED_PRECONDITION), never answered wrongly."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from cryptorec.services import versions
from cryptorec.services.app.server import Running, start
from cryptorec.services.client.library import CryptoRecClient, ratings_row
from cryptorec.services.store.base import Store
from cryptorec.services.store.file_store import FileStore
from cryptorec.services.store.redis_store import RedisStore
from cryptorec.v1 import model_service_pb2 as model_pb
from cryptorec.v1 import types_pb2
from libcryptorec.compression import CompressedModel, compress, threshold_for_fraction
from libcryptorec.ranking import masked_scores, top_n_agreement
from libcryptorec.ranking_model import RankingConfig, train_ranking
from tests.test_ranking_model import new_user_split, taste_groups
from tests.test_service_e2e import ITEMS, _packed

pytestmark = [pytest.mark.integration, pytest.mark.he]
CATALOGUE = [(i + 1, f"Item {i + 1}") for i in range(ITEMS)]


def _ranking() -> tuple[CompressedModel, dict[int, float]]:
    """A ranking model over the e2e catalogue, and one new user's ratings (by item id)."""
    train, feed, _ = new_user_split(taste_groups(users=400, items=ITEMS))
    model = train_ranking(train, RankingConfig(dims=(8,), l2_factors=(1.0,))).model
    row = feed[0]
    ratings = {int(i) + 1: float(r) for i, r in zip(row.indices, row.data, strict=True)}
    return compress(model, threshold_for_fraction(model, 0.5), 512), ratings


RANKED, USER = _ranking()


def _store(kind: str, request: pytest.FixtureRequest, tmp: pytest.TempPathFactory) -> Store:
    if kind == "redis":
        url = request.getfixturevalue("redis_url")
        return RedisStore(url, prefix=f"kinds-{uuid.uuid4().hex[:8]}:")
    return FileStore(tmp.mktemp("store"))


@pytest.fixture(scope="module", params=["redis", "file"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    store = _store(request.param, request, tmp_path_factory)
    versions.publish(store, "s1", _packed(), CATALOGUE)  # stars first, as `train --model both`
    versions.publish(store, "r1", RANKED, CATALOGUE)
    running = start(("key", "model", "evaluator"), store)
    yield running
    running.stop(grace=1.0)


@pytest.fixture(scope="module")
def client(server: Running) -> Iterator[CryptoRecClient]:
    c = CryptoRecClient(f"127.0.0.1:{server.port}")
    yield c
    c.close()


def _code(call) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()


def test_get_model_finds_each_kind(client: CryptoRecClient) -> None:
    current = client.model_info()
    assert (current.version, current.kind) == ("r1", types_pb2.MODEL_KIND_RANKING)
    assert current.inputs.rating_weight == pytest.approx(0.2)
    assert not any(p.mode == types_pb2.MODE_ACCURATE for p in current.schemes)
    stars = client.model_info(kind="stars")
    assert (stars.version, stars.kind) == ("s1", types_pb2.MODEL_KIND_STARS)
    assert stars.inputs.rating_weight == 1.0
    assert client.model_info(kind="ranking").version == "r1"
    listed = client.models.ListModels(model_pb.ListModelsRequest())
    assert {m.version: m.kind for m in listed.models} == {
        "s1": types_pb2.MODEL_KIND_STARS,
        "r1": types_pb2.MODEL_KIND_RANKING,
    }
    wrong = model_pb.GetModelRequest(version="s1", kind=types_pb2.MODEL_KIND_RANKING)
    assert _code(lambda: client.models.GetModel(wrong)) == grpc.StatusCode.FAILED_PRECONDITION
    bad = model_pb.GetModelRequest(kind=7)  # type: ignore[arg-type]
    assert _code(lambda: client.models.GetModel(bad)) == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(("scheme", "mode"), [("ckks", "fast"), ("bfv", "fast")])
def test_the_ranking_models_encrypted_top_10_is_its_plaintext_top_10(
    client: CryptoRecClient, scheme: str, mode: str
) -> None:
    scores, result = client.predict(USER, scheme=scheme, mode=mode, kind="ranking")
    assert result.kind == "ranking"
    info = client.model_info(kind="ranking")
    row = ratings_row(info, USER)
    expected = RANKED.model.predict(row)[0]  # no mean added, no clamping
    np.testing.assert_allclose(scores, expected, atol=1e-3)
    agreement, _ = top_n_agreement(
        masked_scores(expected[None, :], row), masked_scores(scores[None, :], row)
    )
    assert agreement == 1.0
    top = client.recommend(USER, scheme=scheme, mode=mode, kind="ranking")
    plain = np.argsort(-masked_scores(expected[None, :], row)[0], kind="stable")[:10]
    assert [r.item_id for r in top.recommendations] == [int(i) + 1 for i in plain]


def test_a_stars_client_still_gets_stars_beside_the_ranking_model(
    client: CryptoRecClient,
) -> None:
    result = client.recommend(USER, kind="stars")
    assert result.model_version == "s1"
    assert result.kind == "stars"
    assert all(1.0 <= r.score <= 5.0 for r in result.recommendations)


def test_a_client_that_does_not_know_kinds_is_refused_by_a_ranking_model(
    client: CryptoRecClient,
) -> None:
    """A client older than API 1.4.0 sends no kind: it would add its mean to ranking scores
    and clamp them to stars, so a ranking model refuses it; a stars model still answers it."""
    for version, kind, expected in (
        ("r1", None, grpc.StatusCode.FAILED_PRECONDITION),
        ("r1", "stars", grpc.StatusCode.FAILED_PRECONDITION),
        ("s1", "ranking", grpc.StatusCode.FAILED_PRECONDITION),
        ("s1", None, None),
    ):
        info = client.model_info(version)
        keys = client.ensure_keys(info, "ckks", "fast", {}, {})
        query, _ = keys.client.encrypt(ratings_row(info, USER))

        def ask(info=info, keys=keys, query=query, kind=kind):  # type: ignore[no-untyped-def]
            return client.evaluate(
                info.version, keys, "ckks", "fast", query, ITEMS, info.inputs.input_offset, kind
            )

        if expected is None:
            assert ask().values.shape == (ITEMS,)
        else:
            assert _code(ask) == expected


def test_a_deployment_without_a_kind_says_which_it_serves(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    store = FileStore(tmp_path_factory.mktemp("stars-only"))
    versions.publish(store, "s1", _packed(), CATALOGUE)
    running = start(("model",), store)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            from cryptorec.v1 import model_service_pb2_grpc as model_grpc

            stub = model_grpc.ModelServiceStub(channel)
            ask = model_pb.GetModelRequest(kind=types_pb2.MODEL_KIND_RANKING)
            with pytest.raises(grpc.RpcError) as info:
                stub.GetModel(ask)
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
            assert "serves stars models" in str(info.value.details())
    finally:
        running.stop(grace=0.5)


def test_a_nan_input_offset_does_not_pass_for_the_models(client: CryptoRecClient) -> None:
    """RELIABILITY.md line 37: the stale-client check compared `abs(a - b) > 1e-9`, which NaN
    never is: a query claiming a NaN offset is refused like any other wrong one."""
    info = client.model_info("s1")
    keys = client.ensure_keys(info, "ckks", "fast", {}, {})
    query, _ = keys.client.encrypt(ratings_row(info, USER))
    with pytest.raises(grpc.RpcError) as refused:
        client.evaluate(info.version, keys, "ckks", "fast", query, ITEMS, float("nan"), "stars")
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
