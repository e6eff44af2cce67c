"""The documentation stays true: every path a docstring, comment or page of this repository
cites exists (generated code aside)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITED = re.compile(
    r"(?<![\w./$-])((?:[\w.-]+/)+[\w.-]+\.(?:py|md|json|yaml|sh|toml|cmake|png|proto))"
)
SKIP = {".venv", "build", ".git", "node_modules", ".hypothesis"}


def _sources() -> list[Path]:
    return [
        p
        for p in ROOT.rglob("*")
        if p.suffix in {".py", ".md", ".yaml", ".sh", ".toml", ".cmake", ".cfg"}
        and not SKIP & set(p.relative_to(ROOT).parts)
        and not p.name.endswith(("_pb2.py", "_pb2_grpc.py"))
    ]


def test_every_cited_path_exists() -> None:
    missing = []
    for source in _sources():
        for match in CITED.finditer(source.read_text(errors="ignore")):
            cited = match.group(1)
            if cited.startswith("../") or cited.startswith("shared/"):
                continue  # the design documents live outside this repository
            bases = (ROOT, source.parent, ROOT / "k8s")
            if not any((base / cited).exists() for base in bases):
                missing.append(f"{source.relative_to(ROOT)}: {cited}")
    assert missing == []
