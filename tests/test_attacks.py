"""The boundary holds against an attacker (issue "The boundary holds"; RELIABILITY.md lines 2,
5, 6, 7, 9, 23).

`cryptorec serve --role all` runs as a real process on the directory store and on Redis. The
attacker is tests/attack_client.py, a separate process whose stubs are generated from the
.proto files when it starts: nothing of this project's client. Every crafted request gets its
precise status, never INTERNAL or UNKNOWN, and after each one a legitimate query still
decrypts to the library's prediction.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gmpy2
import numpy as np
import pytest

from cryptorec.services import versions
from cryptorec.services.client.library import CryptoRecClient, ratings_row
from cryptorec.services.rpc.health import SERVING, wait_for
from cryptorec.services.store.file_store import FileStore
from cryptorec.services.store.redis_store import RedisStore
from libcryptorec.he import ckks, seal_format
from libcryptorec.he.params import CKKS_FAST_8192
from tests.redis_server import free_port
from tests.test_service_e2e import ITEMS, RATINGS, _library_prediction, _packed

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.he]
ROOT = Path(__file__).resolve().parents[1]
TRANSFER_GRACE = 2.0  # seconds an idle stream lives (the default is 10)

# Offsets into an uncompressed SEAL 4 ciphertext (libcryptorec/he/seal_format.py).
NTT_AT = 16 + 32
SCALE_AT = NTT_AT + 1 + 3 * 8
DATA_AT = 16 + seal_format.CIPHERTEXT_FIELDS.size + 16 + 8


class Server:
    """A `cryptorec serve --role all` process whose stderr goes to a file (`extra` flags and
    `env` variables on top of the transfer grace period of these tests)."""

    def __init__(
        self,
        store_url: str,
        prefix: str,
        log: Path,
        *extra: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port, self.log = free_port(), log
        env = {
            **os.environ,
            "CRYPTOREC_STORE_PREFIX": prefix,
            "CRYPTOREC_TRANSFER_GRACE_SECONDS": str(TRANSFER_GRACE),
            **(env or {}),
        }
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "cryptorec.services.cli", "serve", "--role", "all"),
                    *("--host", "127.0.0.1", "--port", str(self.port), "--store", store_url),
                    *extra,
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        wait_for(self.target, SERVING, timeout=60)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


@pytest.fixture(scope="module", params=["file", "redis"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    prefix = f"attack-{uuid.uuid4().hex[:8]}:"
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        store: Any = RedisStore(url, prefix=prefix)
    else:
        folder = tmp_path_factory.mktemp("store")
        url, store = f"file://{folder}", FileStore(folder)
    versions.publish(store, "v1", _packed(), [(i + 1, f"Item {i + 1}") for i in range(ITEMS)])
    running = Server(url, prefix, tmp_path_factory.mktemp("log") / "server.log")
    yield running
    running.stop()
    if isinstance(store, RedisStore):
        for key in store._r.scan_iter(match=prefix + "*"):
            store._r.delete(key)


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[CryptoRecClient]:
    c = CryptoRecClient(server.target, timeout=60)
    yield c
    c.close()


# --- crafted bytes --------------------------------------------------------------------------


def _patched(blob: bytes, at: int, value: bytes) -> bytes:
    return blob[:at] + value + blob[at + len(value) :]


def _zeroed(blob: bytes, start: int, end: int | None = None) -> bytes:
    end = len(blob) if end is None else end
    return blob[:start] + bytes(end - start) + blob[end:]


def _second_polynomial_zeroed(blob: bytes) -> bytes:
    ct = seal_format.read_whole_ciphertext(blob)
    half = 8 * ct.degree * ct.limbs
    return _zeroed(blob, DATA_AT + half, DATA_AT + 2 * half)


def _mod_switched_ckks() -> bytes:
    he = ckks._context(CKKS_FAST_8192)
    he.keyGen()
    ct = he.encryptFrac(np.zeros(CKKS_FAST_8192.slots), scale=2.0**CKKS_FAST_8192.input_bits)
    he.mod_switch_to_next(ct)
    return bytes(ct.to_bytes(compr_mode="none"))


def _key_blob(name: str, blob: bytes) -> dict[str, Any]:
    return {"name": name, "size": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}


class Plan:
    """Cases for the attack client, their payload files, and the expected statuses."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.cases: list[dict[str, Any]] = []
        self.expected: dict[str, str] = {}
        self.legit: dict[str, Any] = {}
        folder.mkdir(parents=True, exist_ok=True)

    def file(self, name: str, blob: bytes) -> str:
        (self.folder / name).write_bytes(blob)
        return name

    def add(self, name: str, expected: str, **case: Any) -> None:
        self.cases.append({"name": name, **case})
        self.expected[name] = expected


def _build_plan(folder: Path, client: CryptoRecClient) -> tuple[Plan, Any]:
    info = client.model_info()
    ckks_keys = client.ensure_keys(info, "ckks", "fast", {}, {})
    bfv_keys = client.ensure_keys(info, "bfv", "fast", {}, {})
    row = ratings_row(info, RATINGS)
    good_ckks, _ = ckks_keys.client.encrypt(row)
    good_bfv, _ = bfv_keys.client.encrypt(row)
    plan = Plan(folder)
    header = {"model_version": "v1", "key_id": ckks_keys.key_id, "scheme": 1, "mode": 1}
    header["ciphertext_count"] = len(good_ckks)
    header["input_offset"] = info.inputs.input_offset  # as GetModel says, like any client
    bfv_header = {**header, "key_id": bfv_keys.key_id, "scheme": 2}
    legit_files = [plan.file(f"legit{k}.bin", c) for k, c in enumerate(good_ckks)]
    plan.legit = {"header": header, "ciphertexts": legit_files}
    invalid = "INVALID_ARGUMENT"

    plan.add("four idle streams", "idle", rpc="idle", count=4, wait=TRANSFER_GRACE + 15)

    # Crafted ciphertexts: each passes SEAL's own loading and used to fail inside SEAL.
    c0 = good_ckks[0]
    crafted = {
        "ckks ntt flag cleared": _patched(c0, NTT_AT, b"\x00"),
        "ckks scale nan": _patched(c0, SCALE_AT, struct.pack("<d", float("nan"))),
        "ckks scale +inf": _patched(c0, SCALE_AT, struct.pack("<d", float("inf"))),
        "ckks scale -inf": _patched(c0, SCALE_AT, struct.pack("<d", float("-inf"))),
        "ckks scale negative": _patched(c0, SCALE_AT, struct.pack("<d", -(2.0**40))),
        "ckks all zero (transparent)": _zeroed(c0, DATA_AT),
        "ckks second polynomial zero": _second_polynomial_zeroed(c0),
        "ckks after mod_switch_to_next": _mod_switched_ckks(),
        "ckks bytes after the object": c0 + b"\x00" * 8,
        "ckks reserved header bytes": _patched(c0, 6, b"\x01\x01"),
    }
    for name, blob in crafted.items():
        plan.add(name, invalid, rpc="Predict", header=header, ciphertexts=[plan.file(name, blob)])
    b0 = good_bfv[0]
    for name, blob in {
        "bfv all zero (transparent)": _zeroed(b0, DATA_AT),
        "bfv second polynomial zero": _second_polynomial_zeroed(b0),
        "bfv ntt flag set": _patched(b0, NTT_AT, b"\x01"),
    }.items():
        plan.add(
            name, invalid, rpc="Predict", header=bfv_header, ciphertexts=[plan.file(name, blob)]
        )

    # Keys that used to register and then fail every Predict.
    spec = next(p for p in info.schemes if (p.scheme, p.mode) == (1, 1))
    steps = list(spec.rotation_steps)
    he = ckks._context(CKKS_FAST_8192)
    he.keyGen()
    he.rotateKeyGen(rot_steps=[1])
    public = bytes(he.to_bytes_public_key(compr_mode="none"))
    only_step_1 = bytes(he.to_bytes_rotate_key(compr_mode="none"))
    he.rotateKeyGen(rot_steps=steps)
    all_steps = bytes(he.to_bytes_rotate_key(compr_mode="none"))
    zero_public = _zeroed(public, DATA_AT)

    def keys_case(name: str, expected: str, blobs: dict[str, bytes], **overrides: Any) -> None:
        key_header = {
            "scheme": 1,
            "mode": 1,
            "parameter_set": spec.parameter_set,
            "rotation_steps": steps,
            "blobs": [_key_blob(n, b) for n, b in blobs.items()],
            **overrides,
        }
        files = [plan.file(f"{name}-{n}", b) for n, b in blobs.items()]
        plan.add(name, expected, rpc="RegisterKeys", header=key_header, files=files)

    keys_case(
        "rotation keys for step 1 only, all steps declared",
        invalid,
        {"public_key": public, "rotation_keys": only_step_1},
    )
    keys_case(
        "all-zero public key", invalid, {"public_key": zero_public, "rotation_keys": all_steps}
    )
    keys_case(
        "a million rotation steps",
        invalid,
        {"public_key": public, "rotation_keys": all_steps},
        rotation_steps=list(range(1, 1_000_001)),
    )
    keys_case(
        "bytes after the public key",
        invalid,
        {"public_key": public + b"\x00" * 8, "rotation_keys": all_steps},
    )
    negative = {"name": "public_key", "size": -5, "sha256": "00" * 32}
    plan.add(
        "negative blob size",
        invalid,
        rpc="RegisterKeys",
        header={
            "scheme": 1,
            "mode": 1,
            "parameter_set": spec.parameter_set,
            "rotation_steps": steps,
            "blobs": [negative, _key_blob("rotation_keys", b"")],
        },
        files=[],
    )
    paillier = next(p for p in info.schemes if p.scheme == 3)
    rng = gmpy2.random_state(7)
    prime = gmpy2.next_prime(gmpy2.mpz_urandomb(rng, 2047) | (gmpy2.mpz(1) << 2047))
    prime = prime if prime.bit_length() == 2048 else gmpy2.next_prime(gmpy2.mpz(1) << 2047)
    low = gmpy2.next_prime(gmpy2.mpz(1) << 2036) * 2003  # a factor above 2,000, far below 2^1024
    small_factor = low * gmpy2.next_prime((gmpy2.mpz(1) << 2047) // low)
    for name, n in {
        "paillier prime modulus": prime,
        "paillier modulus with factor 2003": small_factor,
    }.items():
        blob = int(n).to_bytes(256, "big")
        plan.add(
            name,
            invalid,
            rpc="RegisterKeys",
            header={
                "scheme": 3,
                "mode": 1,
                "parameter_set": paillier.parameter_set,
                "blobs": [_key_blob("modulus", blob)],
            },
            files=[plan.file(name, blob)],
        )

    # Hostile strings: every one refused at the boundary, none reaching a file name or a log.
    versions = {
        "dots": "../",
        "nul": "v\x001",
        "non-ascii": "v\u00e91",
        "upper case": "V1",
        "65 chars": "v" * 65,
        "1 MB": "v" * (1 << 20),
    }
    for label, version in versions.items():
        plan.add(
            f"predict version {label}",
            invalid,
            rpc="Predict",
            header={**header, "model_version": version},
            ciphertexts=legit_files,
        )
        plan.add(
            f"get model version {label}", invalid, rpc="GetModel", request={"version": version}
        )
    for label, key_id in {"251 chars": "a" * 251, "long non-ascii": "\u00e9" * 300}.items():
        plan.add(
            f"predict key id {label}",
            invalid,
            rpc="Predict",
            header={**header, "key_id": key_id},
            ciphertexts=legit_files,
        )
        for rpc in ("GetKeyInfo", "DeleteKeys"):
            plan.add(f"{rpc} key id {label}", invalid, rpc=rpc, request={"key_id": key_id})
    for k in range(20):  # the flood: the log must not grow by the strings' size
        plan.add(
            f"flood {k}",
            invalid,
            rpc="GetModel",
            request={"version": "x" * (4 << 20)},
            then_legit=False,
        )
    return plan, ckks_keys


def _run_attacker(server: Server, plan: Plan, out: Path) -> dict[str, Any]:
    plan_path = plan.folder / "plan.json"
    plan_path.write_text(json.dumps({"cases": plan.cases, "legit": plan.legit}))
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "attack_client.py"),
            server.target,
            str(plan_path),
            str(out),
        ],
        check=True,
        timeout=900,
        cwd=plan.folder,
    )
    return dict(json.loads(out.read_text()))


def test_attack_suite_every_case_gets_its_precise_status_and_the_server_keeps_serving(
    server: Server, client: CryptoRecClient, tmp_path: Path
) -> None:
    """RELIABILITY.md lines 2, 5, 6, 7, 9: crafted ciphertexts, keys and strings are refused
    with INVALID_ARGUMENT (never INTERNAL or UNKNOWN); idle streams are closed by the server
    (DEADLINE_EXCEEDED) within the upload deadline while health, ListModels and a legitimate
    Predict on the same process succeed; the flood leaves the log under 1 MB larger."""
    plan, keys = _build_plan(tmp_path / "plan", client)
    log_before = server.log.stat().st_size
    results = _run_attacker(server, plan, tmp_path / "out" / "results.json")
    expected = _library_prediction("fast")
    info = client.model_info()
    rbar = keys.client.encrypt(ratings_row(info, RATINGS))[1]

    def decrypts_right(name: str) -> None:
        folder = tmp_path / "out" / "replies" / name
        replies = [p.read_bytes() for p in sorted(folder.glob("*.bin"), key=lambda p: int(p.stem))]
        np.testing.assert_allclose(rbar + keys.client.decrypt(replies), expected, atol=1e-3)

    idle = results.pop("four idle streams")
    assert (idle["health"], idle["list_models"], idle["legit"]) == ("OK", "OK", "OK")
    decrypts_right("four idle streams")
    assert [code for _, code in idle["idle_ended"]] == ["DEADLINE_EXCEEDED"] * 4
    assert all(when < TRANSFER_GRACE + 3 for when, _ in idle["idle_ended"]), idle["idle_ended"]
    for name, outcome in results.items():
        assert outcome["status"] == plan.expected[name], name
        if not name.startswith("flood"):
            assert outcome["legit"] == "OK", name
            decrypts_right(name)
    grown = server.log.stat().st_size - log_before
    assert grown < 1 << 20, f"the log grew by {grown} bytes"
