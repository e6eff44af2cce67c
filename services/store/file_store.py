"""The embedded store: a local directory, for single-machine use and the one-command demo.

Layout: models/<version>/{manifest.json, <part>.<i>} written into a temporary directory and
renamed into place (atomic on POSIX), a `current` file replaced atomically, and keys/<id>.
Operating-system failures (the directory gone, a full disk, no permission) surface as
StoreError, or StoreFullError for lack of space, as the store contract promises.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptorec.services.store import base

from libcryptorec.he.backend import KeySet


def _atomic_write(path: Path, data: bytes) -> None:
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
                raise base.NotFoundError(f"model version {version} not found")
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

    def put_key(self, keys: KeySet, blob: bytes, ttl_seconds: int) -> base.KeyRecord:
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
                raise base.NotFoundError(f"key id {key_id} not found") from None
        info = base.info_from_record(key_id, stored)
        if info.expires_unix < time.time():
            self.delete_key(key_id)
            raise base.NotFoundError(f"key id {key_id} expired")
        return info

    def get_key(self, key_id: str) -> base.KeyRecord:
        info = self.key_info(key_id)
        with self._io("get_key"):
            try:
                blob = (self.root / "keys" / f"{key_id}.blob").read_bytes()
            except FileNotFoundError:
                raise base.NotFoundError(f"key id {key_id} not found") from None
        return base.KeyRecord(key_id, info.keys, blob, info.expires_unix)

    def delete_key(self, key_id: str) -> None:
        base.check_key_id(key_id)
        self.ping()
        with self._io("delete_key"):
            for suffix in (".json", ".blob"):
                (self.root / "keys" / f"{key_id}{suffix}").unlink(missing_ok=True)
