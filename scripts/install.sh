#!/usr/bin/env bash
# Create .venv and install cryptorec with its development tools.
#
# Pyfhel ships no wheel: pip builds it from source, and its bundled SEAL would download three
# optional dependencies from GitHub. cmake/pyfhel-offline.cmake switches those off so the build
# needs only the package registry (about 3 minutes once; pip caches the wheel afterwards).
# CI, the README and the container image all install through this one script.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"need Python 3.11, got {sys.version}"'

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip wheel setuptools
CMAKE_TOOLCHAIN_FILE="$PWD/cmake/pyfhel-offline.cmake" \
  .venv/bin/python -m pip install --quiet --editable ".[dev]"
.venv/bin/python -c 'import Pyfhel, phe, gmpy2; print("installed: cryptorec, Pyfhel", Pyfhel.__version__)'
