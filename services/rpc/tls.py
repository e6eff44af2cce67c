"""TLS for every service (and mutual TLS when a client CA is given).

Redis takes its TLS settings in the store URL: rediss://host:port/0?ssl_ca_certs=CA&
ssl_certfile=CERT&ssl_keyfile=KEY (redis-py passes them to the connection).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc


@dataclass(frozen=True)
class ServerTls:
    """Certificate and key of the server; `client_ca` set means clients must present a
    certificate it signed (mutual TLS)."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(Path(self.key).read_bytes(), Path(self.cert).read_bytes())],
            root_certificates=Path(self.client_ca).read_bytes() if self.client_ca else None,
            require_client_auth=self.client_ca is not None,
        )


@dataclass(frozen=True)
class ClientTls:
    """The CA that signed the servers' certificates, and the client's own pair for mutual TLS."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=Path(self.ca).read_bytes(),
            private_key=Path(self.key).read_bytes() if self.key else None,
            certificate_chain=Path(self.cert).read_bytes() if self.cert else None,
        )


def channel(
    target: str, tls: ClientTls | None, options: list[tuple[str, int | str]]
) -> grpc.Channel:
    """A secure channel when `tls` is given, else a plaintext one (local use and tests)."""
    if tls is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, tls.credentials(), options=options)
