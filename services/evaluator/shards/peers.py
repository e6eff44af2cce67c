"""The evaluators that compute item shards, and which of them computes which shard.

`--shard-peers` names them: `host:port,host:port,...`, or `dns:///name:port` for every
address a name resolves to (a headless Service's pods), looked up again every few seconds.
Shards are assigned by rendezvous hashing of (version, scheme, mode, shard) over the peers,
bounded so that no peer takes more than its share (`assign`): every router sends a shard to
the same replica, which alone prepares and caches that shard's encoding; the shards of a
query spread over as many peers as there are; a failed call goes to the next peer in the
shard's ranking; and when peers come or go, few shards move.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from cryptorec.services.rpc.call_metadata import CallMetadata
from cryptorec.services.rpc.options import CHANNEL_OPTIONS
from cryptorec.services.rpc.tls import ClientTls
from cryptorec.services.rpc.tls import channel as open_channel

log = logging.getLogger("cryptorec.peers")
DNS_PREFIX = "dns:///"

Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    """Every `ip:port` a host name resolves to (IPv6 in brackets), sorted."""
    found = {str(i[4][0]) for i in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    return sorted(f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}" for ip in found)


def rank(key: str, addresses: list[str]) -> list[str]:
    """`addresses` by rendezvous hashing for `key`: the first serves it, the rest in turn."""
    return sorted(addresses, key=lambda a: hashlib.sha256(f"{key}|{a}".encode()).digest())


def assign(keys: list[str], addresses: list[str]) -> list[list[str]]:
    """For each key (a shard of a query), the peers to ask in order: first its owner, the
    highest-ranked peer that has fewer than ceil(len(keys) / len(addresses)) keys already
    (so a query's shards spread evenly), then every other peer by rank. The same for every
    router that knows the same peers."""
    if not addresses:
        return [[] for _ in keys]
    share = -(-len(keys) // len(addresses))
    load: dict[str, int] = {}
    out = []
    for key in keys:
        ranked = rank(key, addresses)
        owner = next(a for a in ranked if load.get(a, 0) < share)
        load[owner] = load.get(owner, 0) + 1
        out.append([owner, *(a for a in ranked if a != owner)])
    return out


@dataclass(frozen=True)
class PeerTls:
    """How evaluators reach each other over TLS: the CA, the certificate pair (for mutual TLS)
    and the name the peers' certificate carries (they are dialled by address)."""

    tls: ClientTls
    server_name: str | None = None


class Peers:
    """The shard-computing evaluators and a channel to each (sending `secret` as a bearer
    token: servers refuse shard calls without it when authentication is on)."""

    def __init__(
        self,
        spec: str,
        *,
        secret: str | None = None,
        tls: PeerTls | None = None,
        refresh_seconds: float = 5.0,
        resolver: Resolver = resolve,
    ) -> None:
        self.spec, self.secret, self.tls = spec.strip(), secret, tls
        self.refresh_seconds, self._resolver = refresh_seconds, resolver
        self._lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}
        self._resolved: tuple[float, list[str]] = (-1.0, [])
        if not self.spec:
            raise ValueError("no shard peers given")
        if not self.spec.startswith(DNS_PREFIX):
            self._resolved = (float("inf"), [a.strip() for a in self.spec.split(",") if a.strip()])

    def addresses(self) -> list[str]:
        """The peers now (a DNS name is looked up again after `refresh_seconds`; while a
        lookup fails, the last answer stands)."""
        with self._lock:
            at, known = self._resolved
        now = time.monotonic()
        if now - at < self.refresh_seconds:
            return known
        host, _, port = self.spec[len(DNS_PREFIX) :].rpartition(":")
        try:
            found = self._resolver(host, int(port))
        except (OSError, ValueError) as exc:
            log.warning("cannot resolve shard peers %s: %s", self.spec, exc)
            found = known
        with self._lock:
            self._resolved = (now, found)
        return found

    def assign(self, keys: list[str]) -> list[list[str]]:
        """`assign(keys, the peers now)`."""
        return assign(keys, self.addresses())

    def channel(self, address: str) -> grpc.Channel:
        """A channel to `address`, made once."""
        with self._lock:
            if address not in self._channels:
                options = list(CHANNEL_OPTIONS)
                if self.tls is not None and self.tls.server_name:
                    options.append(("grpc.ssl_target_name_override", self.tls.server_name))
                raw = open_channel(address, self.tls.tls if self.tls else None, options)
                self._channels[address] = grpc.intercept_channel(raw, CallMetadata(self.secret))
            return self._channels[address]

    def close(self) -> None:
        with self._lock:
            channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            channel.close()
