"""Authentication: a server interceptor that lets a call through only with a known client's
bearer token (`authorization: Bearer TOKEN` metadata), before any work. Health checking stays
open (the kubelet has no token); reflection needs a token like the API (an operator's grpcurl
sends one with -H), so nobody without one can hold a call open.

The token is looked up in the store on every call (one read), so removing a client stops its
token at once on every replica. The caller is available to the servicers as `current_client()`.

Evaluators' shard calls to each other (ShardService) carry the peers' shared secret instead:
a client holding a partial product could decrypt rows of the model, so with authentication on
those calls need the secret (and are refused by every server that has none).
"""

from __future__ import annotations

import contextvars
import hmac
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from cryptorec.services.credentials import parse_bearer, token_sha256
from cryptorec.services.errors import UnauthenticatedError
from cryptorec.services.observability.current import note
from cryptorec.services.rpc.errors import abort_for
from cryptorec.services.rpc.handlers import wrap_behaviour
from cryptorec.services.rpc.intercept import CallInterceptor, Handler, Metadata
from cryptorec.services.store.base import ClientRecord, ClientStore, NotFoundError

log = logging.getLogger("cryptorec.auth")
OPEN_SERVICES = ("/grpc.health.v1.Health/",)
PEER_SERVICES = ("/cryptorec.v1.ShardService/",)

# The caller of the call this thread serves, and the sha256 of the token it sent.
_current_client: contextvars.ContextVar[tuple[ClientRecord, str] | None] = contextvars.ContextVar(
    "client", default=None
)


def current_token_sha256() -> str | None:
    """The sha256 of the token the current call carried (None without authentication)."""
    caller = _current_client.get()
    return caller[1] if caller is not None else None


def current_client() -> ClientRecord | None:
    """The authenticated client of the call this thread serves (None without authentication)."""
    caller = _current_client.get()
    return caller[0] if caller is not None else None


class Authenticator(CallInterceptor):
    """Refuses calls without a known client's token (with `clients`), and shard calls without
    the peers' secret (with `clients` or a `peer_secret`): UNAUTHENTICATED."""

    passes = OPEN_SERVICES

    def __init__(self, store: ClientStore, *, clients: bool = True, peer_secret: str | None = None):
        self.store, self.clients, self.peer_secret = store, clients, peer_secret

    def intercept(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str, metadata: Metadata
    ) -> Handler:
        token = parse_bearer(str(metadata.get("authorization", "")))
        if method.startswith(PEER_SERVICES):
            if self.peer_secret is None and not self.clients:
                return handler  # nothing is authenticated on this server
            if self._is_peer(token):
                return handler
            return _refusing(handler, "shard calls need the evaluators' peer secret")
        if not self.clients:
            return handler
        return wrap_behaviour(handler, lambda b, streams: self._checked(b, streams, token))

    def _is_peer(self, token: str | None) -> bool:
        secret = self.peer_secret
        return bool(secret and token and hmac.compare_digest(token.encode(), secret.encode()))

    def _client(self, token: str | None, context: grpc.ServicerContext) -> tuple[ClientRecord, str]:
        """The token's client and the token's sha256, looked up in the pool thread (never the
        server's poll loop)."""
        try:
            if token is None:
                raise UnauthenticatedError(
                    "missing credentials: send 'authorization: Bearer <token>'"
                )
            sha = token_sha256(token)
            try:
                client = self.store.client_by_token(sha)
            except NotFoundError:
                raise UnauthenticatedError("unknown or revoked token") from None
            refused = client.refusal(sha, time.time())
            if refused is not None:
                raise UnauthenticatedError(f"{refused}: ask the operator for a new one")
            note(client=client.name)
            return client, sha
        except Exception as exc:  # a store outage: UNAVAILABLE, like everywhere else
            abort_for(context, exc)

    def _checked(
        self, behaviour: Callable[..., Any], streams: bool, token: str | None
    ) -> Callable[..., Any]:
        if streams:

            def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                reset = _current_client.set(self._client(token, context))
                try:
                    yield from behaviour(request, context)
                finally:
                    _current_client.reset(reset)

            return stream

        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            reset = _current_client.set(self._client(token, context))
            try:
                return behaviour(request, context)
            finally:
                _current_client.reset(reset)

        return unary


def _refusing(
    handler: grpc.RpcMethodHandler[Any, Any], why: str
) -> grpc.RpcMethodHandler[Any, Any]:
    """`handler` answering UNAUTHENTICATED to every call, before reading anything."""

    def refuse(behaviour: Callable[..., Any], streams: bool) -> Callable[..., Any]:
        def abort(request: Any, context: grpc.ServicerContext) -> Any:
            abort_for(context, UnauthenticatedError(why))

        return abort

    return wrap_behaviour(handler, refuse)
