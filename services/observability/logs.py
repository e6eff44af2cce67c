"""Log lines: text for people, JSON for machines (`--log-format`), at `--log-level`.

What is logged never holds a ciphertext, a key, a token or a rating: calls are logged by their
metadata only (services/observability/interceptor.py), and error messages are cut short.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from cryptorec.services.observability.current import RequestIdFilter

LOG_FORMATS = ("text", "json")
# The fields a call's line carries beyond the message, in the order text lines show them.
CALL_FIELDS = (
    "request_id",
    "trace_id",
    "service",
    "method",
    "code",
    "reason",
    "duration_ms",
    "scheme",
    "mode",
    "model_version",
    "client",
    "peer",
    "bytes_in",
    "bytes_out",
)


class TextFormatter(logging.Formatter):
    """`time level logger message key=value ...` for the call fields a record carries."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = [f"{k}={getattr(record, k)}" for k in CALL_FIELDS if hasattr(record, k)]
        return " ".join([line, *extra])


def configure(fmt: str = "text", level: str = "INFO", stream: Any = None) -> None:
    """Send every `cryptorec.*` log line to stderr (or `stream`) in `fmt` at `level`."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format {fmt!r}: choose one of {LOG_FORMATS}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "name": "logger"},
                timestamp=True,
            )
        )
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
