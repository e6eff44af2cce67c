"""AccountService over gRPC: what the calling client may still do (its budget and quotas,
as the store counts them) and when its token stops working. Served by every role."""

from __future__ import annotations

import time

import grpc

from cryptorec.services.errors import PreconditionError
from cryptorec.services.rpc.auth import current_client, current_token_sha256
from cryptorec.services.rpc.errors import unary
from cryptorec.services.store.base import ClientStore
from cryptorec.v1 import account_service_pb2 as pb
from cryptorec.v1 import account_service_pb2_grpc as pb_grpc


class AccountServicer(pb_grpc.AccountServiceServicer):
    def __init__(self, store: ClientStore) -> None:
        self.store = store

    @unary
    def GetUsage(
        self, request: pb.GetUsageRequest, context: grpc.ServicerContext
    ) -> pb.GetUsageResponse:
        caller, token = current_client(), current_token_sha256()
        if caller is None or token is None:
            raise PreconditionError(
                "this server runs without authentication (serve --auth): there is no client "
                "whose usage to tell"
            )
        used, q = self.store.usage(caller.name), caller.quotas
        now = time.time()
        spent = used.queries_today >= q.queries_per_day
        return pb.GetUsageResponse(
            client=caller.name,
            queries_today=used.queries_today,
            queries_per_day=q.queries_per_day,
            next_query_unix=now + used.query_frees_in(now) if spent else 0.0,
            key_sets=used.key_sets,
            max_key_sets=q.max_key_sets,
            key_bytes=used.key_bytes,
            max_key_bytes=q.max_key_bytes,
            token_expires_unix=caller.token_expires(token) or 0.0,
        )
