"""An evaluator's memory is bounded by its cache budget (RELIABILITY.md line 23; issue "The
boundary holds", item 6): twenty distinct key sets, each used once, leave the evaluator process
under its baseline plus `--cache-bytes`, where a cache bounded by count kept sixteen of them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cryptorec.services import versions
from cryptorec.services.app.server import start
from cryptorec.services.client.library import CryptoRecClient
from cryptorec.services.rpc.health import SERVING, wait_for
from cryptorec.services.store.file_store import FileStore
from tests.redis_server import free_port
from tests.test_service_e2e import ITEMS, RATINGS, _library_prediction, _packed

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.he]
ROOT = Path(__file__).resolve().parents[1]
BUDGET = 40 << 20


def _peak_rss(pid: int) -> int:
    """The process's largest resident set so far, bytes (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def test_evaluator_memory_stays_under_baseline_plus_cache_budget(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    versions.publish(store, "v1", _packed(), [(i + 1, f"Item {i + 1}") for i in range(ITEMS)])
    front = start(("model", "key"), store)
    port = free_port()
    evaluator = subprocess.Popen(
        [
            *(sys.executable, "-m", "cryptorec.services.cli", "serve", "--role", "evaluator"),
            *(
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--store",
                f"file://{tmp_path / 'store'}",
            ),
            *("--cache-bytes", str(BUDGET)),
        ],
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"127.0.0.1:{port}", SERVING, timeout=60)

        def fresh_client() -> CryptoRecClient:  # new keys each time: a distinct key set
            return CryptoRecClient(
                f"127.0.0.1:{front.port}", evaluator_target=f"127.0.0.1:{port}", timeout=60
            )

        expected = _library_prediction("fast")
        first = fresh_client()
        np.testing.assert_allclose(first.predict(RATINGS)[0], expected, atol=1e-3)
        first.close()
        baseline = _peak_rss(evaluator.pid)  # imports, model, encoding, one key, one query
        key_set = 0
        for _ in range(20):
            client = fresh_client()
            predictions, result = client.predict(RATINGS)
            key_set = result.bytes["keys"]
            client.close()
            np.testing.assert_allclose(predictions, expected, atol=1e-3)
        peak = _peak_rss(evaluator.pid)
        assert key_set > 4 << 20  # each key set is several megabytes ...
        assert 16 * key_set > 2 * BUDGET  # ... so keeping 16 of them would break the budget
        assert peak <= baseline + BUDGET, (
            f"peak {peak / 1e6:.0f} MB > baseline {baseline / 1e6:.0f} MB + budget "
            f"{BUDGET / 1e6:.0f} MB"
        )
    finally:
        evaluator.send_signal(signal.SIGTERM)
        evaluator.wait(timeout=60)
        front.stop(grace=1.0)


def test_servers_ask_glibc_for_one_malloc_arena(monkeypatch: pytest.MonkeyPatch) -> None:
    """`cryptorec serve` limits malloc arenas (services/memory.py), unless told otherwise."""
    from cryptorec.services.memory import limit_malloc_arenas

    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_malloc_arenas() is True  # glibc, as on every machine we deploy to
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False  # the operator's setting wins
