#!/usr/bin/env bash
# Create a virtual environment and install cryptorec into it; a second run on an unchanged
# checkout installs nothing (each step keeps a stamp of what it installed from).
#
# Pyfhel ships no wheel: pip builds it from source, and its bundled SEAL would download three
# optional dependencies from GitHub. cmake/pyfhel-offline.cmake switches those off so the build
# needs only the package registry (about 3 minutes once on 2 idle cores; pip caches the wheel
# afterwards). CI, the README and the container image (Dockerfile) all install through this one
# script.
#
#   scripts/install.sh                          .venv, editable, with dev tools and plots (development, CI)
#   VENV=/opt/venv MODE=runtime scripts/install.sh    a plain install, no dev tools (image)
#   FORCE=1 scripts/install.sh                  install again even if nothing changed
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
MODE=${MODE:-dev}
FORCE=${FORCE:-}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"need Python 3.11, got {sys.version}"'
export CMAKE_TOOLCHAIN_FILE="$PWD/cmake/pyfhel-offline.cmake"

# What an install depends on: the project files, this script and (strict editable mode links
# each module by name) the list of Python modules, not their contents.
python_stamp() {
  { cat pyproject.toml protos/pyproject.toml cmake/pyfhel-offline.cmake "$0"; echo "$MODE";
    find libcryptorec services benchmarks protos/cryptorec -name '*.py' | LC_ALL=C sort; } \
    | sha256sum | cut -d' ' -f1
}
# The page depends on its pinned packages and its sources.
page_stamp() {
  find web/package-lock.json web/build.mjs web/tsconfig.json web/src web/static -type f \
    | LC_ALL=C sort | xargs cat | sha256sum | cut -d' ' -f1
}
ticker=""
trap '[ -z "$ticker" ] || kill "$ticker" 2>/dev/null || true' EXIT
up_to_date() { [ -z "$FORCE" ] && [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

# Prints the elapsed time every 30 s while a long step runs (pip shows nothing while it
# compiles), so a quiet terminal does not look like a hung one.
tick() {
  local started=$SECONDS
  while sleep 30; do
    echo "  ... still building ($(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s)" >&2
  done
}

install_python() {
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip wheel "setuptools>=77"
  if ! "$VENV/bin/python" -c 'import Pyfhel' 2>/dev/null; then
    local pin
    pin=$(grep -o '"Pyfhel==[^"]*"' pyproject.toml | tr -d '"')
    echo "installing $pin: pip builds SEAL from source unless it cached the wheel before" >&2
    echo "  (about 3 min on 2 idle cores, up to 10 on a busy machine; once per machine)" >&2
    tick &
    ticker=$!
    "$VENV/bin/python" -m pip install --quiet "$pin"
    kill "$ticker" 2>/dev/null || true
    ticker=""
  fi
  # The API distribution (protos/: cryptorec.v1) first: the main package depends on it.
  if [ "$MODE" = dev ]; then
    # Strict editable mode links every module into build/ under its installed name
    # (cryptorec.services from services/, ...): a tree mypy can follow, unlike an import hook.
    # (Its note that build/ must stay is said here instead of in a 12-line box per package.)
    local strict=(--config-settings editable_mode=strict)
    export PYTHONWARNINGS="ignore:Editable installation"
    "$VENV/bin/python" -m pip install --quiet "${strict[@]}" --editable ./protos
    "$VENV/bin/python" -m pip install --quiet "${strict[@]}" --editable ".[dev]"
    unset PYTHONWARNINGS
  else
    "$VENV/bin/python" -m pip install --quiet --no-cache-dir ./protos
    "$VENV/bin/python" -m pip install --quiet --no-cache-dir .
  fi
  "$VENV/bin/python" -c 'import Pyfhel, phe, gmpy2; print("installed: cryptorec, Pyfhel", Pyfhel.__version__)'
}

stamp="$VENV/.cryptorec-installed"
want=$(python_stamp)
if up_to_date "$stamp" "$want" && "$VENV/bin/python" -c 'import cryptorec.services, Pyfhel' 2>/dev/null; then
  echo "up to date: cryptorec in $VENV (FORCE=1 installs again)"
else
  install_python
  echo "$want" > "$stamp"
fi

# The page (web/): npm packages exactly as web/package-lock.json pins them, then its build
# (web/dist), which `cryptorec serve --web-port` serves.
if command -v npm >/dev/null; then
  page="web/dist/.stamp"
  want=$(page_stamp)
  if up_to_date "$page" "$want"; then
    echo "up to date: the page (web/dist)"
  else
    (cd web && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)
    echo "$want" > "$page"
    echo "built: the page (web/dist)"
  fi
else
  echo "npm not found: the page (web/) is not built; --web-port serves the API only" >&2
fi
