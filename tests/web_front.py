"""Helpers for the web front's tests: published models served with the front, and gRPC-web
calls made by hand (the wire format, not a client library's view of it)."""

from __future__ import annotations

import ssl
import struct
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptorec.services import versions
from cryptorec.services.app.server import Running, ServerConfig, start
from cryptorec.services.credentials import add_client
from cryptorec.services.store.base import Quotas
from cryptorec.services.store.file_store import FileStore
from cryptorec.services.web.server import WebConfig
from libcryptorec.compression import compress, threshold_for_fraction
from libcryptorec.ranking_model import RankingConfig, train_ranking
from tests.test_ranking_model import taste_groups
from tests.test_service_e2e import _packed

# The default TrainConfig.dim and the rank the ranking model chooses on ml-1m, so the rotation
# steps (and key set sizes) are the real models'.
ITEMS, DIM, RANK = 300, 500, 128


def publish_model(store: FileStore) -> None:
    """What `train --model both` leaves (items titled "Item N"): the end-to-end tests' stars
    model at ITEMS x DIM as version v1, then a ranking model of rank RANK trained on taste
    groups over the same items as r1, the current version."""
    catalogue = [(i + 1, f"Item {i + 1}") for i in range(ITEMS)]
    versions.publish(store, "v1", _packed(ITEMS, DIM), catalogue)
    ranking = train_ranking(
        taste_groups(users=800, items=ITEMS, groups=6), RankingConfig(dims=(RANK,))
    ).model
    packed = compress(ranking, threshold_for_fraction(ranking, 0.5), 512)
    versions.publish(store, "r1", packed, catalogue)


@dataclass
class Served:
    running: Running
    token: str

    @property
    def url(self) -> str:
        assert self.running.web is not None
        return self.running.web.url

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.running.port}"


def serve(
    root: Path,
    *,
    page_dir: Path | None = None,
    origins: tuple[str, ...] = (),
    **web_options: Any,
) -> Served:
    """Every role with authentication on (as deployed) and the web front on a free port
    (`web_options`: more WebConfig fields)."""
    store = FileStore(root)
    publish_model(store)
    token = add_client(store, "browser", Quotas(queries_per_day=1000, max_key_sets=64))
    running = start(
        ("key", "model", "evaluator"),
        store,
        config=ServerConfig(auth=True),
        web=WebConfig(0, page_dir=page_dir, origins=origins, **web_options),
    )
    return Served(running, token)


@dataclass
class WebReply:
    http_status: int
    messages: list[bytes] = field(default_factory=list)
    trailers: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def grpc_status(self) -> int:
        return int(self.trailers.get("grpc-status", self.headers.get("grpc-status", "-1")))


def grpc_web_call(
    base_url: str,
    path: str,
    message: bytes,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> WebReply:
    """POST one gRPC-web message to `path` and split the reply into messages and trailers."""
    body = b"\x00" + struct.pack(">I", len(message)) + message
    request = urllib.request.Request(
        base_url.rstrip("/") + path,
        data=body,
        method="POST",
        headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"} | (headers or {}),
    )
    try:
        with urllib.request.urlopen(request, timeout=60, context=context) as response:
            status, raw, got = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return WebReply(exc.code, headers={k.lower(): v for k, v in exc.headers.items()})
    reply = WebReply(status, headers={k.lower(): v for k, v in got.items()})
    at = 0
    while at < len(raw):
        flags, size = raw[at], struct.unpack(">I", raw[at + 1 : at + 5])[0]
        frame = raw[at + 5 : at + 5 + size]
        at += 5 + size
        if flags & 0x80:
            for line in frame.decode().split("\r\n"):
                if line:
                    key, _, value = line.partition(":")
                    reply.trailers[key.strip().lower()] = value.strip()
        else:
            reply.messages.append(frame)
    return reply
