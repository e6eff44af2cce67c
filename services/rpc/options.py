"""Every gRPC server and channel option in one place, each with the reason it is set."""

from __future__ import annotations

import json

# Queries and replies travel as ~1 MiB chunks (a Paillier query for ml-1m is ~2 MB, a CKKS
# accurate query ~9 MB), so client messages stay small; 16 MiB leaves room for one large
# ciphertext (an n = 16384, 7-limb CKKS ciphertext is 1.8 MB) and for one shard's part of a
# query between evaluators (libcryptorec.he.shards.MAX_SHARD_QUERY_BYTES), and refuses
# anything absurd early. Key sets are capped per (scheme, mode) by the backends' key_set_cap.
MAX_MESSAGE_BYTES = 16 << 20
# Bytes per request chunk when streaming ciphertexts up.
CHUNK_BYTES = 1 << 20
# Bytes per reply chunk at most: replies leave as they are computed, so a chunk holds one SEAL
# reply ciphertext (131-528 kB) and the client can decrypt while the rest is computed.
REPLY_CHUNK_BYTES = 256 << 10

SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),  # RESOURCE_EXHAUSTED beyond it
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Clients may ping every 20 s on idle connections without being told "too_many_pings".
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 20_000),
    # Detect dead peers: ping after 60 s of silence, give up 20 s later, for as long as the
    # connection is idle (by default gRPC stops after two pings without data).
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    # grpcio 1.85 waits for a keepalive ping's ack as long as for any ping (60 s by default),
    # whatever keepalive_timeout says: measured in tests/test_keepalive.py.
    ("grpc.http2.ping_timeout_ms", 20_000),
    ("grpc.http2.max_pings_without_data", 0),
    # Recycle connections so new evaluator replicas receive traffic from long-lived clients.
    ("grpc.max_connection_age_ms", 300_000),
    ("grpc.max_connection_age_grace_ms", 120_000),  # let in-flight predictions finish
]

# Unary calls are idempotent: retry them on UNAVAILABLE (a replica going away) with backoff.
# Predict streams are retried whole by the client library (services/client/library.py), since
# gRPC stops retrying once a reply has started.
RETRY_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [
                    {"service": "cryptorec.v1.ModelService"},
                    {"service": "cryptorec.v1.KeyService", "method": "GetKeyInfo"},
                ],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)
PREDICT_ATTEMPTS = 4
PREDICT_BACKOFF_SECONDS = 0.25

CHANNEL_OPTIONS: list[tuple[str, int | str]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),  # >= the server's min ping interval (20 s)
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.http2.ping_timeout_ms", 20_000),  # what grpcio 1.85 actually waits (see above)
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),  # keep pinging an idle channel: find dead peers
    # Spread calls over every address a dns:/// target resolves to (evaluator replicas).
    ("grpc.lb_policy_name", "round_robin"),
    ("grpc.enable_retries", 1),
    ("grpc.service_config", RETRY_SERVICE_CONFIG),
]
