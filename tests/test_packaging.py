"""What is installed, and under which names: every package of the repository is listed in
pyproject.toml, nothing installs under a generic top-level name, and the API distribution
(protos/: cryptorec.v1) works on its own, in a fresh virtual environment, against a running
server."""

from __future__ import annotations

import os
import subprocess
import textwrap
import tomllib
import venv
from pathlib import Path

import pytest

from cryptorec.services import versions
from cryptorec.services.app.server import start
from cryptorec.services.store.file_store import FileStore
from tests.test_service_e2e import ITEMS, _packed

ROOT = Path(__file__).resolve().parents[1]


def _installed_packages() -> tuple[list[str], dict[str, str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return config["packages"], config["package-dir"]


def test_every_package_folder_is_installed_under_the_project_namespace() -> None:
    packages, folders = _installed_packages()
    found = []
    for init in sorted(ROOT.glob("**/__init__.py")):
        rel = init.parent.relative_to(ROOT)
        if rel.parts[0] in {"tests", "build", "protos", ".venv"} or "build" in rel.parts:
            continue
        name = ".".join(rel.parts)
        for installed, folder in folders.items():
            if name == folder or name.startswith(folder + "."):
                name = installed + name[len(folder) :]
        found.append(name)
    assert sorted(found) == sorted(packages)
    assert {p.split(".")[0] for p in packages} == {"libcryptorec", "cryptorec"}


@pytest.mark.slow
@pytest.mark.integration
def test_the_api_distribution_alone_calls_a_running_server(tmp_path: Path) -> None:
    """Another service needs only cryptorec-api: grpcio and protobuf are all it brings."""
    store = FileStore(tmp_path / "store")
    versions.publish(store, "v1", _packed(), [(i + 1, f"Item {i + 1}") for i in range(ITEMS)])
    running = start(("model",), store)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    try:
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", str(ROOT / "protos")],
            check=True,
            timeout=600,
        )
        freeze = subprocess.run(
            [str(python), "-m", "pip", "freeze"], check=True, capture_output=True, text=True
        ).stdout
        installed = {
            line.split("==")[0].lower().replace("_", "-")
            for line in freeze.splitlines()
            if "==" in line
        }
        assert installed <= {"cryptorec-api", "grpcio", "protobuf", "typing-extensions"}
        script = textwrap.dedent(
            f"""
            import sys
            import grpc
            from cryptorec.v1 import model_service_pb2 as pb, model_service_pb2_grpc as rpc
            stub = rpc.ModelServiceStub(grpc.insecure_channel("127.0.0.1:{running.port}"))
            reply = stub.GetModel(pb.GetModelRequest(), timeout=30)
            assert not [m for m in sys.modules if m.startswith(("libcryptorec", "Pyfhel"))]
            print(reply.version, len(reply.catalogue))
            """
        )
        out = subprocess.run(
            [str(python), "-c", script], check=True, capture_output=True, text=True, cwd=tmp_path
        ).stdout.split()
        assert out == ["v1", str(ITEMS)]
    finally:
        running.stop(grace=1.0)


@pytest.mark.slow
def test_a_second_install_of_an_unchanged_checkout_installs_nothing(tmp_path: Path) -> None:
    """`make demo` runs the install each time: on an unchanged checkout it must not reinstall
    (it took 28 s), and no install prints setuptools' deprecation warnings (the old
    `license = {text = ...}` printed about 150 lines). The checkout is copied so this venv and
    page build leave the working tree's alone; pip's cache holds Pyfhel's wheel by now."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.split(b"\0")
    copy = tmp_path / "checkout"
    for name in filter(None, files):
        source, target = ROOT / name.decode(), copy / name.decode()
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
            target.chmod(source.stat().st_mode)

    def install() -> str:
        done = subprocess.run(
            ["scripts/install.sh"],
            cwd=copy,
            capture_output=True,
            text=True,
            timeout=1500,
            env={**os.environ, "VENV": str(tmp_path / "venv")},
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout + done.stderr

    first = install()
    assert "installed: cryptorec" in first
    assert "Deprecat" not in first, first
    assert "SetuptoolsWarning" not in first, first
    second = install()
    assert "up to date: cryptorec" in second, second
    assert "installed: cryptorec" not in second
    assert "built: the page" not in second
