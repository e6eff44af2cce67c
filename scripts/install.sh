#!/usr/bin/env bash
# Create a virtual environment and install cryptorec into it.
#
# Pyfhel ships no wheel: pip builds it from source, and its bundled SEAL would download three
# optional dependencies from GitHub. cmake/pyfhel-offline.cmake switches those off so the build
# needs only the package registry (about 3 minutes once; pip caches the wheel afterwards).
# CI, the README and the container image (Dockerfile) all install through this one script.
#
#   scripts/install.sh                          .venv, editable, with dev tools and plots (development, CI)
#   VENV=/opt/venv MODE=runtime scripts/install.sh    a plain install, no dev tools (image)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
MODE=${MODE:-dev}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"need Python 3.11, got {sys.version}"'

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip wheel setuptools
export CMAKE_TOOLCHAIN_FILE="$PWD/cmake/pyfhel-offline.cmake"
# The API distribution (protos/: cryptorec.v1) first: the main package depends on it.
if [ "$MODE" = dev ]; then
  # Strict editable mode links every module into build/ under its installed name
  # (cryptorec.services from services/, ...): a tree mypy can follow, unlike an import hook.
  # A module added later needs this script run again.
  strict=(--config-settings editable_mode=strict)
  "$VENV/bin/python" -m pip install --quiet "${strict[@]}" --editable ./protos
  "$VENV/bin/python" -m pip install --quiet "${strict[@]}" --editable ".[dev]"
else
  "$VENV/bin/python" -m pip install --quiet --no-cache-dir ./protos
  "$VENV/bin/python" -m pip install --quiet --no-cache-dir .
fi
"$VENV/bin/python" -c 'import Pyfhel, phe, gmpy2; print("installed: cryptorec, Pyfhel", Pyfhel.__version__)'
# The page (web/): npm packages exactly as web/package-lock.json pins them, then its build
# (web/dist), which `cryptorec serve --web-port` serves.
if command -v npm >/dev/null; then
  (cd web && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)
  echo "built: the page (web/dist)"
else
  echo "npm not found: the page (web/) is not built; --web-port serves the API only" >&2
fi
