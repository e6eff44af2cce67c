"""`cryptorec demo`: the whole system on one machine, in one command.

Trains a model on MovieLens (the paper split's training users; the ranking model unless asked
for the stars model), publishes it to an embedded store (or Redis), starts the key, model and
evaluator services on free local ports, and runs one held-out user through the client: their
ratings are encrypted, the server computes on ciphertexts only, and the client decrypts and
ranks. Prints the recommendations beside what the user actually rated highly (ratings the
model never saw).

With `--web`, the same services also serve the page (web/) on a local port, and the demo waits
for you to rate movies in a browser instead.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from cryptorec.services.app.server import ServerConfig, serve_forever, start
from cryptorec.services.client.library import (
    CryptoRecClient,
    RecommendResult,
    recommendations_text,
)
from cryptorec.services.credentials import add_client
from cryptorec.services.store.base import Quotas, Store
from cryptorec.services.trainer.publish import small_config, train_and_publish
from libcryptorec.data import load_movielens
from libcryptorec.model import RANKING, ModelKind
from libcryptorec.ranking_model import RankingConfig
from libcryptorec.splits import paper_split


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _TrainingProgress(logging.Handler):
    """A progress bar on stderr fed by the trainer's log lines (one per validation fit or
    epoch), so the demo shows that training moves without printing each line."""

    def __init__(self, kind: ModelKind) -> None:
        super().__init__(logging.INFO)
        steps = len(RankingConfig().l2_factors) if kind == RANKING else small_config().epochs
        # One line as training starts, one per step, one as the version is published.
        self.bar = tqdm(total=steps + 2, desc=f"training the {kind} model", unit="step")

    def emit(self, record: logging.LogRecord) -> None:
        if self.bar.n < self.bar.total:
            self.bar.update(1)

    def close(self) -> None:
        self.bar.update(self.bar.total - self.bar.n)
        self.bar.close()
        super().close()


@contextlib.contextmanager
def _progress(kind: ModelKind) -> Iterator[None]:
    trainer = logging.getLogger("cryptorec.trainer")
    handler = _TrainingProgress(kind)
    trainer.addHandler(handler)
    try:
        yield
    finally:
        trainer.removeHandler(handler)
        handler.close()


@contextlib.contextmanager
def _trained(
    ratings: Any, split: Any, redis_url: str | None, kind: ModelKind = RANKING
) -> Iterator[tuple[Store, str]]:
    """A store holding a model of `kind` trained on the split's training users, and a client
    token (as deployed, every call needs one; the demo issues itself one)."""
    with tempfile.TemporaryDirectory(prefix="cryptorec-demo-") as tmp:
        store: Store
        if redis_url:
            from cryptorec.services.store.redis_store import RedisStore

            store = RedisStore(redis_url, prefix=f"cryptorec-demo-{uuid.uuid4().hex[:8]}:")
            store.ping()  # an unreachable Redis is found before training, not after
        else:
            from cryptorec.services.store.file_store import FileStore

            store = FileStore(Path(tmp) / "store")
        with _progress(kind):
            train_and_publish(
                ratings, store, kind=kind, rows=split.train_users, config=small_config()
            )
        yield store, add_client(store, "demo", Quotas())


def run_demo(
    data_dir: Path,
    dataset: str = "ml-100k",
    redis_url: str | None = None,
    scheme: str = "ckks",
    mode: str = "fast",
    top_n: int = 10,
    json_out: Path | None = None,
    kind: ModelKind = RANKING,
) -> dict[str, Any]:
    """Train a model of `kind`, serve it and recommend for a held-out user (see the module's
    docstring); returns what `--json` writes."""
    ratings = load_movielens(dataset, data_dir)
    split = paper_split(ratings, seed=0)
    with _trained(ratings, split, redis_url, kind) as (store, token):
        config = ServerConfig(auth=True)
        servers = [start((role,), store, config=config) for role in ("model", "key", "evaluator")]
        targets = {s.roles[0]: f"127.0.0.1:{s.port}" for s in servers}
        _log("services: " + ", ".join(f"{r} {t}" for r, t in targets.items()))
        try:
            return _query(ratings, split, targets, token, scheme, mode, top_n, json_out, kind)
        finally:
            for s in servers:
                s.stop(grace=1.0)


def run_web_demo(
    data_dir: Path, dataset: str = "ml-100k", redis_url: str | None = None, web_port: int = 8080
) -> None:
    """Train, serve every role and the page on `web_port` (0: a free port), print the page's
    address (with the demo's token in its fragment, which browsers never send), and serve
    until Ctrl-C."""
    from cryptorec.services.web.server import DEFAULT_PAGE_DIR, WebConfig, built_page

    page = built_page()
    if page is None:
        raise FileNotFoundError(
            f"the page is not built in {DEFAULT_PAGE_DIR}: run scripts/install.sh (needs npm)"
        )
    ratings = load_movielens(dataset, data_dir)
    split = paper_split(ratings, seed=0)
    with _trained(ratings, split, redis_url) as (store, token):
        config = ServerConfig(auth=True, drain_seconds=1.0)
        web = WebConfig(web_port, page_dir=page, drain_seconds=1.0)
        running = start(("model", "key", "evaluator"), store, config=config, web=web)
        assert running.web is not None
        print(f"\nOpen {running.web.url}#token={token}\n", flush=True)
        _log("Ctrl-C stops")
        serve_forever(running)


def _query(
    ratings: Any,
    split: Any,
    targets: dict[str, str],
    token: str,
    scheme: str,
    mode: str,
    top_n: int,
    json_out: Path | None,
    kind: ModelKind,
) -> dict[str, Any]:
    users = ratings.users
    # A held-out user with a real history (>= 40 ratings to encrypt) and the most hidden
    # ratings of 4 or more, so there is something to compare the recommendations with.
    feed_counts = np.bincount(users[split.feed], minlength=ratings.n_users)
    liked = split.test[ratings.values[split.test] >= 4]
    liked_counts = np.bincount(users[liked], minlength=ratings.n_users)
    candidates = split.new_users[feed_counts[split.new_users] >= 40]
    user = int(candidates[np.argmax(liked_counts[candidates])])
    feed = split.feed[users[split.feed] == user]
    test = split.test[users[split.test] == user]
    known = {int(ratings.item_ids[ratings.items[k]]): float(ratings.values[k]) for k in feed}
    raw_user = int(ratings.user_ids[user])
    _log(f"user {raw_user}: {len(known)} ratings encrypted, {len(test)} held back")
    client = CryptoRecClient(
        targets["model"],
        key_target=targets["key"],
        evaluator_target=targets["evaluator"],
        token=token,
    )
    try:
        result = client.recommend(known, scheme=scheme, mode=mode, top_n=top_n, kind=kind)
    finally:
        client.close()
    liked = sorted(
        ((float(ratings.values[k]), int(ratings.item_ids[ratings.items[k]])) for k in test),
        reverse=True,
    )
    _print(result, raw_user, liked, ratings.titles)
    out = {
        "user": raw_user,
        "recommendations": [asdict(r) for r in result.recommendations],
        "timings": result.timings,
        "bytes": result.bytes,
        "model_version": result.model_version,
        "kind": result.kind,
        "scheme": scheme,
        "mode": mode,
    }
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(out, indent=2) + "\n")
        _log(f"wrote {json_out}")
    return out


def _print(
    result: RecommendResult, user: int, liked: list[tuple[float, int]], titles: dict[int, str]
) -> None:
    print(f"\nUser {user}; the server saw only ciphertexts.")
    print(recommendations_text(result))
    print("\nWhat this user actually rated, hidden from the model (best first):")
    for rating, item in liked[:10]:
        print(f"     {rating:3.1f}  {titles.get(item, item)}")
    print("\nTime per phase: " + ", ".join(f"{k} {v:.3f}s" for k, v in result.timings.items()))
    print("Bytes: " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in result.bytes.items()))
