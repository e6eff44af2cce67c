"""Run the gRPC-web front (services/web/front.py) beside a gRPC server: uvicorn in a thread of
its own, forwarding to the gRPC server over a private Unix socket.

The socket lives in a directory only this user can enter, so the front reaches the gRPC
server without TLS or client certificates and no other local user can use that way in; every
call still passes the gRPC server's interceptors (authentication, budgets, limits, metrics).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from cryptorec.services.settings import default_of
from cryptorec.services.web.connections import ConnectionLimits, limited_protocol
from cryptorec.services.web.front import Forwarder, web_app
from cryptorec.services.web.guard import GuardConfig

log = logging.getLogger("cryptorec.web")

# The page built by `npm run build` in web/ (a checkout's; installed packages have none).
DEFAULT_PAGE_DIR = Path(__file__).resolve().parents[2] / "web" / "dist"


def built_page() -> Path | None:
    """DEFAULT_PAGE_DIR if the page has been built there, else None."""
    return DEFAULT_PAGE_DIR if (DEFAULT_PAGE_DIR / "index.html").is_file() else None


@dataclass(frozen=True)
class WebConfig:
    """Where and how the front listens (`cryptorec serve --web-port ...`)."""

    port: int
    host: str = "127.0.0.1"
    # The page's files (None: serve the API only, the page being hosted elsewhere).
    page_dir: Path | None = None
    # Origins whose pages may call the API from elsewhere (CORS); none: same origin only.
    origins: tuple[str, ...] = ()
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # require browser certificates signed by this CA
    # Concurrent connections beyond which the front answers 503 at once; connections one
    # client address may hold (beyond, closed at once); seconds a connection has to send a
    # request's headers, however slowly it trickles (services/web/connections.py).
    max_connections: int = 256
    connections_per_address: int = default_of("web_connections_per_address")
    header_timeout: float = default_of("web_header_timeout")
    drain_seconds: float = 5.0

    def __post_init__(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("the web front's TLS needs both a certificate and a key")
        if self.page_dir is not None and not (self.page_dir / "index.html").is_file():
            raise ValueError(
                f"no page in {self.page_dir} (build it: cd web && npm ci && npm run build)"
            )


class WebServer:
    """The front: its port, the private address the gRPC server must also listen on
    (`grpc_target`, before `start`), and how to stop it."""

    def __init__(
        self, config: WebConfig, guard: GuardConfig, served: set[str] | None = None
    ) -> None:
        """`guard`: what every call is checked for before its body is read (authentication,
        sizes, the upload budget); `served`: the full names of the services the gRPC server
        runs (None: all); the front offers only those, so a pod of one role answers 404 for
        the others' paths."""
        self.config = config
        self._socket_dir = Path(tempfile.mkdtemp(prefix="cryptorec-web-"))  # mode 0700
        self.grpc_target = f"unix:{self._socket_dir / 'grpc.sock'}"
        self.forwarder = Forwarder(self.grpc_target)
        tls: dict[str, Any] = {}
        if config.tls_cert:
            tls = {"ssl_certfile": str(config.tls_cert), "ssl_keyfile": str(config.tls_key)}
            if config.tls_client_ca:
                tls["ssl_ca_certs"] = str(config.tls_client_ca)
                tls["ssl_cert_reqs"] = ssl.CERT_REQUIRED
        app = web_app(self.forwarder, config.page_dir, config.origins, guard, served)
        self.connections = ConnectionLimits(config.connections_per_address, config.header_timeout)
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                lifespan="off",
                access_log=False,
                log_level="warning",
                log_config=None,  # our logging (cryptorec serve --log-format), not uvicorn's
                limit_concurrency=config.max_connections,
                http=limited_protocol(self.connections),
                timeout_graceful_shutdown=int(config.drain_seconds),
                **tls,
            )
        )
        self._socket = socket.create_server((config.host, config.port))
        self.port = int(self._socket.getsockname()[1])
        self._thread = threading.Thread(target=self._run, name="web-front", daemon=True)

    @property
    def scheme(self) -> str:
        return "https" if self.config.tls_cert else "http"

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "") else self.config.host
        return f"{self.scheme}://{host}:{self.port}/"

    def start(self) -> WebServer:
        self._thread.start()
        log.info("web front on %s", self.url)
        return self

    def _run(self) -> None:
        async def serve() -> None:
            try:
                await self._server.serve(sockets=[self._socket])
            finally:
                await self.forwarder.close()

        asyncio.run(serve())

    def begin_stop(self) -> None:
        """Stop accepting connections; in-flight calls go on (within the drain time)."""
        self._server.should_exit = True

    def stop(self) -> None:
        """Finish in-flight calls (within the drain time), then close."""
        self.begin_stop()
        self._thread.join(self.config.drain_seconds + 5)
        self._socket.close()
        shutil.rmtree(self._socket_dir, ignore_errors=True)
