#!/usr/bin/env bash
# Regenerate the Python code and typed stubs of protos/cryptorec/v1 into cryptorec/v1.
# The generated files are checked in; tests/test_protos.py fails if this would change them.
# Usage: scripts/gen-protos.sh [OUTPUT_ROOT]   (default: the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.}
mkdir -p "$out/cryptorec/v1"
PATH="$PWD/.venv/bin:$PATH" .venv/bin/python -m grpc_tools.protoc -I protos \
  --python_out="$out" --grpc_python_out="$out" --mypy_out="$out" --mypy_grpc_out="$out" \
  protos/cryptorec/v1/*.proto
touch "$out/cryptorec/__init__.py" "$out/cryptorec/v1/__init__.py"
