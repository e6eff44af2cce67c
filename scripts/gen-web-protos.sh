#!/usr/bin/env bash
# Regenerate the page's TypeScript stubs (web/src/gen) from the public protos with
# protoc-gen-es (web/package-lock.json pins it) and the protoc of grpcio-tools (pinned in
# pyproject). ShardService is internal to the evaluators and left out; google.rpc's error
# details (from googleapis-common-protos) are in, for the page to read why a call failed. The
# output is checked in; tests/test_protos.py fails if this would change it.
# Usage: scripts/gen-web-protos.sh [OUTPUT_DIR]   (default: web/src/gen)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-web/src/gen}
plugin=web/node_modules/.bin/protoc-gen-es
[ -x "$plugin" ] || { echo "run 'npm ci' in web/ first ($plugin missing)" >&2; exit 1; }
mkdir -p "$out"
googleapis=$(.venv/bin/python -c 'import os; from google.rpc import error_details_pb2 as m; print(os.path.dirname(os.path.dirname(os.path.dirname(m.__file__))))')
.venv/bin/python -m grpc_tools.protoc -I protos -I "$googleapis" \
  --plugin=protoc-gen-es="$plugin" --es_out="$out" --es_opt=target=ts \
  protos/cryptorec/v1/{types,model_service,key_service,evaluator_service}.proto \
  "$googleapis/google/rpc/error_details.proto"
