"""The client's own key cache: keys are generated and registered once per (server, parameter
set, model shape) and reused across runs.

Secret keys are written here and nowhere else: one file per key set, mode 0600, in a directory
of mode 0700, replaced atomically. A file whose metadata does not match what it is looked up
for is ignored (and regenerated), never trusted.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import asdict
from pathlib import Path

from libcryptorec.he.backend import SchemeSpec


class KeyCache:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _path(self, target: str, spec: SchemeSpec) -> Path:
        ident = json.dumps({"target": target, "spec": asdict(spec)}, sort_keys=True)
        return self.directory / f"{hashlib.sha256(ident.encode()).hexdigest()[:32]}.keys"

    def load(self, target: str, spec: SchemeSpec) -> tuple[dict[str, bytes], str] | None:
        """(keys, key id) saved for this server and spec, or None."""
        path = self._path(target, spec)
        try:
            with zipfile.ZipFile(path) as zf:
                meta = json.loads(zf.read("meta.json"))
                if meta["spec"] != json.loads(json.dumps(asdict(spec))) or meta["target"] != target:
                    return None
                keys = {name: zf.read(name) for name in meta["keys"]}
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            return None
        return keys, str(meta["key_id"])

    def save(self, target: str, spec: SchemeSpec, keys: dict[str, bytes], key_id: str) -> Path:
        """Write atomically with owner-only permissions."""
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zf:
            meta = {"target": target, "spec": asdict(spec), "key_id": key_id, "keys": list(keys)}
            zf.writestr("meta.json", json.dumps(meta))
            for name, blob in keys.items():
                zf.writestr(name, blob)
        path = self._path(target, spec)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getvalue())
        os.replace(tmp, path)
        return path
