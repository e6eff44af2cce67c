"""A gRPC call over raw HTTP/2 (python-hyper's h2) whose reply is never read: the client answers
PINGs and SETTINGS like any client but never opens its flow-control window, so the server can
send no reply data. What a slow-reader attack looks like on the wire."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings


class SlowReader:
    """One call to `path` with the serialized request `message`, from `source` (a loopback
    address), whose reply is never read. Records when the server answered headers, what
    status a trailers-only refusal carried, and when the server ended the stream."""

    def __init__(self, port: int, path: str, message: bytes, source: str = "127.0.0.2") -> None:
        self.started = time.monotonic()
        self.headers_at: float | None = None  # the server began a reply
        self.ended_at: float | None = None  # the server ended the stream (or the connection)
        self.status: int | None = None  # grpc-status, if the server sent one
        self._sock = socket.create_connection(("127.0.0.1", port), source_address=(source, 0))
        self._conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self._conn.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0}
        )
        self._conn.initiate_connection()
        stream = self._conn.get_next_available_stream_id()
        self._conn.send_headers(
            stream,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path),
                (":authority", f"127.0.0.1:{port}"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
        )
        self._stream = stream
        self._pending = b"\x00" + struct.pack(">I", len(message)) + message
        self._send_more()
        self._sock.sendall(self._conn.data_to_send())
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _send_more(self) -> None:
        """Send as much of the request as the server's window allows (the server opens it as
        it reads: the request is sent like any client's)."""
        while self._pending:
            room = min(
                self._conn.local_flow_control_window(self._stream),
                self._conn.max_outbound_frame_size,
            )
            if room <= 0:
                return
            piece, self._pending = self._pending[:room], self._pending[room:]
            self._conn.send_data(self._stream, piece, end_stream=not self._pending)

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    def _pump(self) -> None:
        while self.ended_at is None:
            try:
                data = self._sock.recv(65536)
                if not data:
                    break
                events = self._conn.receive_data(data)
                self._send_more()
                out = self._conn.data_to_send()
                if out:
                    self._sock.sendall(out)  # PING and SETTINGS acks; never a WINDOW_UPDATE
            except (OSError, h2.exceptions.ProtocolError):
                break
            for event in events:
                if isinstance(event, h2.events.ResponseReceived) and self.headers_at is None:
                    self.headers_at = time.monotonic()
                    self._note_status(event.headers)
                elif isinstance(event, h2.events.TrailersReceived):
                    self._note_status(event.headers)
                if isinstance(
                    event,
                    h2.events.StreamEnded | h2.events.StreamReset | h2.events.ConnectionTerminated,
                ):
                    self.ended_at = time.monotonic()
        if self.ended_at is None:
            self.ended_at = time.monotonic()

    def _note_status(self, headers: list[tuple[bytes, bytes]]) -> None:
        for key, value in headers:
            if key in (b"grpc-status", "grpc-status"):
                self.status = int(value)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
