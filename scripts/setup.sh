#!/usr/bin/env bash
# Set up score-lab in ./.venv: keep a torch that is already installed, else install the
# CPU wheel torch==2.13.0 (never let pip pull a multi-GB CUDA build), then the project.
# Usage: bash scripts/setup.sh [test]     ("test": also the test extra)
# Environment: PYTHON (default python3) picks the interpreter; LAB_VENV the folder.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${LAB_VENV:-.venv}
extra=""; [ "${1:-}" = "test" ] && extra="[test]"

if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "score-lab needs Python 3.10 or newer; $PY is $("$PY" --version 2>&1)" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV (it sees the system's packages, so an installed torch is kept)"
  "$PY" -m venv --system-site-packages "$VENV"
fi
pip_q() { "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" 2>&1 \
  | grep -v "^WARNING: Location .* is ignored" || true; }

if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
  echo "setup: no torch found; installing torch==2.13.0"
  pip_q torch==2.13.0
fi
# Reinstall only when pyproject.toml or the wanted extra changed.
stamp="$VENV/.score-lab-stamp"
want="$(cat pyproject.toml | cksum)$extra"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] \
   || ! "$VENV/bin/python" -c 'import lab, panel, ot, torchdiffeq' 2>/dev/null; then
  echo "setup: installing score-lab$extra and its dependencies"
  pip_q -e ".$extra"
  "$VENV/bin/python" -c 'import lab, torch' >/dev/null
  echo "$want" > "$stamp"
fi
"$VENV/bin/python" -c 'import torch; print(f"setup: ready (torch {torch.__version__})")'
