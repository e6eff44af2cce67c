#!/usr/bin/env bash
# Regenerate the Python code and typed stubs of protos/cryptorec/v1 beside the .proto files
# (the cryptorec-api distribution, protos/pyproject.toml). The generated files are checked in;
# tests/test_protos.py fails if this would change them.
# Usage: scripts/gen-protos.sh [OUTPUT_ROOT]   (default: protos/)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-protos}
mkdir -p "$out/cryptorec/v1"
PATH="$PWD/.venv/bin:$PATH" .venv/bin/python -m grpc_tools.protoc -I protos \
  --python_out="$out" --grpc_python_out="$out" --mypy_out="$out" --mypy_grpc_out="$out" \
  protos/cryptorec/v1/*.proto
