"""Evaluator processes for the service benchmarks: real `cryptorec serve` processes on free
ports, their readiness and their resident memory."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

from cryptorec.services.rpc.health import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_evaluator(
    store_dir: Path, *extra: str, log: Path | None = None, port: int | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """A `cryptorec serve --role evaluator` process on a free port over the directory store
    (with `extra` flags; no /metrics port unless they say so), and its target once it
    serves. Its stderr (the log) goes to `log`, if given."""
    port = port or free_port()
    stderr = log.open("ab") if log is not None else None
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "cryptorec.services.cli", "serve", "--role", "evaluator"),
            *("--host", "127.0.0.1", "--port", str(port), "--store", f"file://{store_dir}"),
            *("--metrics-port", "0", *extra),
        ],
        stdout=subprocess.DEVNULL,
        stderr=stderr or subprocess.DEVNULL,
    )
    if stderr is not None:
        stderr.close()  # the child has its own copy
    target = f"127.0.0.1:{port}"
    wait_for(target, timeout=120)
    return proc, target


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then wait for the drain."""
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of a process, MB (`field` "VmHWM": the most it has held)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0
