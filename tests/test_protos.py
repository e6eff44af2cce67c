"""The checked-in generated code is exactly what the pinned generator produces, and it is
usable on its own (another service needs only the cryptorec.v1 package)."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_regenerating_the_protos_changes_nothing(tmp_path: Path) -> None:
    subprocess.run(
        [str(ROOT / "scripts" / "gen-protos.sh"), str(tmp_path)], check=True, capture_output=True
    )
    package = ROOT / "protos" / "cryptorec" / "v1"
    generated = sorted(p.name for p in (tmp_path / "cryptorec" / "v1").iterdir())
    checked_in = sorted(p.name for p in package.iterdir() if p.suffix in (".py", ".pyi"))
    assert generated == [n for n in checked_in if n != "__init__.py"]
    for name in generated:
        assert filecmp.cmp(tmp_path / "cryptorec" / "v1" / name, package / name, shallow=False), (
            name
        )


def test_stubs_import_without_our_internals() -> None:
    code = (
        "import sys; from cryptorec.v1 import evaluator_service_pb2_grpc, model_service_pb2_grpc,"
        " key_service_pb2_grpc; "
        "ours = ('libcryptorec', 'cryptorec.services'); "
        "assert not [m for m in sys.modules if m.startswith(ours)]"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_regenerating_the_page_stubs_changes_nothing(tmp_path: Path) -> None:
    if not (ROOT / "web" / "node_modules" / ".bin" / "protoc-gen-es").exists():
        pytest.skip("web/node_modules missing: scripts/install.sh runs npm ci when npm exists")
    subprocess.run(
        [str(ROOT / "scripts" / "gen-web-protos.sh"), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    checked_in = ROOT / "web" / "src" / "gen"
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert generated == sorted(
        p.relative_to(checked_in) for p in checked_in.rglob("*") if p.is_file()
    )
    for path in generated:
        assert filecmp.cmp(tmp_path / path, checked_in / path, shallow=False), path
