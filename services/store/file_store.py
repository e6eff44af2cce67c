"""The embedded store: a local directory, for single-machine use and the one-command demo.

Layout: models/<version>/{manifest.json, <part>.<i>} written into a temporary directory and
renamed into place (atomic on POSIX), a `current` file replaced atomically, and keys/<id>.
Operating-system failures (the directory gone, a full disk, no permission) surface as
StoreError, or StoreFullError for lack of space, as the store contract promises.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptorec.services.store import base
from libcryptorec.he.backend import Blob, KeySet


def _atomic_write(path: Path, data: Blob) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FileStore:
    """A `Store` in a directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        with self._io("create"):
            (self.root / "models").mkdir(parents=True, exist_ok=True)
            (self.root / "keys").mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"FileStore({str(self.root)!r})"

    @contextlib.contextmanager
    def _io(self, what: str) -> Iterator[None]:
        """Turn the operating system's failures into the store's. FileNotFoundError inside an
        operation means the store's own directories are gone (missing entries are handled
        where they are expected)."""
        try:
            yield
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise base.StoreFullError(f"{what}: no space left in {self.root}") from exc
            raise base.StoreError(f"{what}: store directory {self.root} unusable ({exc})") from exc

    def ping(self) -> None:
        if not (self.root / "models").is_dir() or not (self.root / "keys").is_dir():
            raise base.StoreError(f"store directory {self.root} is gone")

    def space(self) -> base.Space | None:
        return None  # a full disk is refused as it happens (ENOSPC: StoreFullError)

    def publish(self, version: str, parts: dict[str, bytes], summary: dict[str, Any]) -> None:
        base.check_version_id(version)
        final = self.root / "models" / version
        with self._io(f"publish {version}"):
            if final.exists():
                raise ValueError(f"version {version} already exists; versions are immutable")
            staging = Path(tempfile.mkdtemp(dir=self.root / "models", prefix=f".{version}."))
            try:
                manifest = base.manifest_for(version, parts, summary)
                for name, blob in parts.items():
                    for i, piece in enumerate(base.chunks(blob)):
                        (staging / f"{name}.{i}").write_bytes(piece)
                (staging / "manifest.json").write_bytes(manifest)
                self._read_dir(staging)  # verify what is on disk before it becomes visible
                os.rename(staging, final)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            _atomic_write(self.root / "current", version.encode())

    def current(self) -> str | None:
        self.ping()  # a vanished store is an outage, not "nothing published"
        with self._io("current"):
            try:
                return (self.root / "current").read_text().strip() or None
            except FileNotFoundError:
                return None

    def versions(self) -> list[base.VersionInfo]:
        out = []
        with self._io("versions"):
            for d in (self.root / "models").iterdir():
                if d.name.startswith(".") or not (d / "manifest.json").is_file():
                    continue
                out.append(base.info_from_manifest(json.loads((d / "manifest.json").read_bytes())))
        return sorted(out, key=lambda v: v.created_unix)

    def read(self, version: str) -> tuple[base.VersionInfo, dict[str, bytes]]:
        base.check_version_id(version)
        d = self.root / "models" / version
        self.ping()
        with self._io(f"read {version}"):
            if not (d / "manifest.json").is_file():
                raise base.ModelNotFoundError(f"model version {version} not found")
            return self._read_dir(d)

    def _read_dir(self, d: Path) -> tuple[base.VersionInfo, dict[str, bytes]]:
        manifest = json.loads((d / "manifest.json").read_bytes())
        parts = {}
        for name, spec in manifest["parts"].items():
            try:
                parts[name] = b"".join(
                    (d / f"{name}.{i}").read_bytes() for i in range(spec["chunks"])
                )
            except FileNotFoundError as exc:
                raise base.CorruptError(
                    f"version {manifest['version']}: missing chunk of {name}"
                ) from exc
        base.verify_parts(manifest, parts)
        return base.info_from_manifest(manifest), parts

    def retain(self, keep: int) -> list[str]:
        doomed = base.versions_to_drop(self, keep)
        with self._io("retain"):
            for d in (self.root / "models").iterdir():
                orphan = d.name.startswith(".") and time.time() - d.stat().st_mtime > 3600
                if d.name in doomed or orphan:
                    shutil.rmtree(d, ignore_errors=True)
        return doomed

    def put_key(self, keys: KeySet, blob: Blob, ttl_seconds: int) -> base.KeyRecord:
        key_id = base.key_id_for(keys, blob)
        record = base.KeyRecord(key_id, keys, blob, time.time() + ttl_seconds)
        with self._io("put_key"):
            _atomic_write(self.root / "keys" / f"{key_id}.blob", blob)
            _atomic_write(self.root / "keys" / f"{key_id}.json", base.record_json(record).encode())
        return record

    def key_info(self, key_id: str) -> base.KeyInfo:
        base.check_key_id(key_id)
        self.ping()
        with self._io("key_info"):
            try:
                stored = (self.root / "keys" / f"{key_id}.json").read_bytes()
            except FileNotFoundError:
                raise base.KeyNotFoundError(f"key id {key_id} not found") from None
        info = base.info_from_record(key_id, stored)
        if info.expires_unix < time.time():
            self.delete_key(key_id)
            raise base.KeyNotFoundError(f"key id {key_id} expired")
        return info

    def get_key(self, key_id: str) -> base.KeyRecord:
        info = self.key_info(key_id)
        with self._io("get_key"):
            try:
                blob = (self.root / "keys" / f"{key_id}.blob").read_bytes()
            except FileNotFoundError:
                raise base.KeyNotFoundError(f"key id {key_id} not found") from None
        return base.KeyRecord(key_id, info.keys, blob, info.expires_unix)

    def delete_key(self, key_id: str) -> None:
        base.check_key_id(key_id)
        self.ping()
        with self._io("delete_key"):
            for suffix in (".json", ".blob"):
                (self.root / "keys" / f"{key_id}{suffix}").unlink(missing_ok=True)

    # --- clients, ownership and budgets --------------------------------------------------------
    # clients/<name>.json holds a client's record, its key sets ({id: [size, expires]}) and its
    # query times; tokens/<sha256> its name; keys/<id>.owners the owners of a key set. Every
    # read-modify-write holds one lock file (flock): atomic for every process on this machine.

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._io("lock"):
            (self.root / "clients").mkdir(exist_ok=True)
            (self.root / "tokens").mkdir(exist_ok=True)
            with (self.root / "clients" / ".lock").open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)

    def _client_file(self, name: str) -> Path:
        return self.root / "clients" / f"{base.check_client_name(name)}.json"

    def _state(self, name: str) -> dict[str, Any]:
        """A client's record (None if it was never added), unexpired key sets and queries."""
        try:
            state: dict[str, Any] = json.loads(self._client_file(name).read_bytes())
        except FileNotFoundError:
            state = {"record": None, "keys": {}, "queries": []}
        now = time.time()
        state["keys"] = {k: v for k, v in state["keys"].items() if v[1] > now}
        # [time, receipt] per query (a bare time from before receipts: one nobody can refund)
        queries = [q if isinstance(q, list) else [q, ""] for q in state["queries"]]
        state["queries"] = [q for q in queries if q[0] > now - base.DAY_SECONDS]
        return state

    def _save(self, name: str, state: dict[str, Any]) -> None:
        _atomic_write(self._client_file(name), json.dumps(state).encode())

    def add_client(self, record: base.ClientRecord) -> None:
        with self._locked(), self._io("add_client"):
            state = self._state(record.name)
            if state["record"] is not None:
                raise ValueError(f"client {record.name} exists already")
            state["record"] = json.loads(record.to_json())
            self._save(record.name, state)
            _atomic_write(self.root / "tokens" / record.token_sha256, record.name.encode())

    def client_by_token(self, token_sha256: str) -> base.ClientRecord:
        if len(token_sha256) != 64 or not set(token_sha256) <= set("0123456789abcdef"):
            raise base.NotFoundError("unknown token")
        self.ping()
        with self._io("client_by_token"):
            try:
                name = (self.root / "tokens" / token_sha256).read_text()
                raw = json.loads(self._client_file(name).read_bytes())["record"]
            except FileNotFoundError:
                raise base.NotFoundError("unknown token") from None
        if raw is None:
            raise base.NotFoundError("unknown token")
        record = base.ClientRecord.from_json(json.dumps(raw))
        if not record.holds(token_sha256):
            raise base.NotFoundError("unknown token")
        return record

    def replace_client(self, record: base.ClientRecord) -> None:
        with self._locked(), self._io("replace_client"):
            state = self._state(record.name)
            if state["record"] is None:
                raise base.NotFoundError(f"client {record.name} not found")
            old = base.ClientRecord.from_json(json.dumps(state["record"]))
            _atomic_write(self.root / "tokens" / record.token_sha256, record.name.encode())
            state["record"] = json.loads(record.to_json())
            self._save(record.name, state)
            if old.previous_token_sha256 not in (None, record.previous_token_sha256):
                (self.root / "tokens" / old.previous_token_sha256).unlink(missing_ok=True)

    def clients(self) -> list[base.ClientRecord]:
        self.ping()
        folder = self.root / "clients"
        with self._io("clients"):
            files = sorted(folder.glob("*.json")) if folder.is_dir() else []
            raws = [json.loads(f.read_bytes())["record"] for f in files]
        return [base.ClientRecord.from_json(json.dumps(r)) for r in raws if r is not None]

    def remove_client(self, name: str) -> None:
        with self._locked(), self._io("remove_client"):
            state = self._state(name)
            if state["record"] is None:
                raise base.NotFoundError(f"client {name} not found")
            record = base.ClientRecord.from_json(json.dumps(state["record"]))
            for sha in filter(None, (record.token_sha256, record.previous_token_sha256)):
                (self.root / "tokens" / sha).unlink(missing_ok=True)
            self._client_file(name).unlink()
        for key_id in state["keys"]:
            if self.release_key(name, key_id) == 0:
                self.delete_key(key_id)

    def claim_key(
        self, client: str, key_id: str, size: int, expires_unix: float, q: base.Quotas
    ) -> None:
        base.check_key_id(key_id)
        with self._locked(), self._io("claim_key"):
            state = self._state(client)
            held = state["keys"]
            if key_id not in held:
                frees = min((v[1] for v in held.values()), default=time.time()) - time.time()
                if len(held) >= q.max_key_sets:
                    raise base.key_quota_full(client, q, True, frees)
                if sum(v[0] for v in held.values()) + size > q.max_key_bytes:
                    raise base.key_quota_full(client, q, False, frees)
            held[key_id] = [size, expires_unix]
            self._save(client, state)
            owners = self._owners(key_id) | {client}
            _atomic_write(
                self.root / "keys" / f"{key_id}.owners", json.dumps(sorted(owners)).encode()
            )

    def _owners(self, key_id: str) -> set[str]:
        try:
            return set(json.loads((self.root / "keys" / f"{key_id}.owners").read_bytes()))
        except FileNotFoundError:
            return set()

    def owns_key(self, client: str, key_id: str) -> bool:
        base.check_key_id(key_id)
        return key_id in self.client_keys(client)

    def client_keys(self, client: str) -> list[str]:
        self.ping()
        with self._io("client_keys"):
            return sorted(self._state(client)["keys"])

    def release_key(self, client: str, key_id: str) -> int:
        base.check_key_id(key_id)
        with self._locked(), self._io("release_key"):
            state = self._state(client)
            state["keys"].pop(key_id, None)
            self._save(client, state)
            owners = self._owners(key_id) - {client}
            path = self.root / "keys" / f"{key_id}.owners"
            if owners:
                _atomic_write(path, json.dumps(sorted(owners)).encode())
            else:
                path.unlink(missing_ok=True)
            return len(owners)

    def spend_query(self, client: str, per_day: int) -> str:
        with self._locked(), self._io("spend_query"):
            state = self._state(client)
            now = time.time()
            if len(state["queries"]) >= per_day:
                wait = min(t for t, _ in state["queries"]) + base.DAY_SECONDS - now
                raise base.budget_spent(client, per_day, wait)
            receipt = secrets.token_hex(8)
            state["queries"].append([now, receipt])
            self._save(client, state)
            return receipt

    def refund_query(self, client: str, receipt: str) -> None:
        with self._locked(), self._io("refund_query"):
            state = self._state(client)
            state["queries"] = [q for q in state["queries"] if q[1] != receipt]
            self._save(client, state)

    def usage(self, client: str) -> base.Usage:
        self.ping()
        with self._io("usage"):
            state = self._state(client)
        held = state["keys"].values()
        oldest = min((t for t, _ in state["queries"]), default=None)
        return base.Usage(len(held), sum(v[0] for v in held), len(state["queries"]), oldest)
