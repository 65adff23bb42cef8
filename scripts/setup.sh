#!/usr/bin/env bash
# Set up score-lab in a virtual environment (default ./.venv): keep a torch >= 2.1 that is
# already installed, else install torch==2.13.0 (never let pip choose a torch by itself),
# then the project. Usage: bash scripts/setup.sh [test]   ("test": with the test extra)
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
if [ -d "$VENV" ] && ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  echo "setup: $VENV is broken (no working pip); making it again"
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV (it sees the system's packages, so an installed torch is kept)"
  if ! "$PY" -m venv --system-site-packages "$VENV" || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    rm -rf "$VENV"
    echo "setup: could not make a virtual environment; install python3-venv (Debian/Ubuntu) or use conda (environment.yml)" >&2
    exit 1
  fi
fi
# pip's output without the noise of this machine's local package mirrors; pip's own exit
# status is kept (a failed install stops the setup).
pip_install() {
  local log; log=$(mktemp)
  if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" >"$log" 2>&1; then
    grep -v "^WARNING: Location .* is ignored" "$log" >&2 || true
    rm -f "$log"; echo "setup: pip install $* failed" >&2; exit 1
  fi
  grep -v "^WARNING: Location .* is ignored" "$log" || true
  rm -f "$log"
}

if ! "$VENV/bin/python" -c 'import sys, torch; v = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]); sys.exit(v < (2, 1))' 2>/dev/null; then
  echo "setup: no torch >= 2.1 found; installing torch==2.13.0"
  pip_install torch==2.13.0
fi
# Reinstall only when pyproject.toml or the wanted extra changed, or an import fails.
stamp="$VENV/.score-lab-stamp"
want="$(cksum < pyproject.toml)$extra"
check='import lab, lab.train, panel, holoviews, ot, torchdiffeq, tqdm'
[ -n "$extra" ] && check="$check, pytest, xdist, nbval, yaml, playwright"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! "$VENV/bin/python" -c "$check" 2>/dev/null; then
  echo "setup: installing score-lab$extra and its dependencies"
  pip_install -e ".$extra"
  "$VENV/bin/python" -c "$check"
  echo "$want" > "$stamp"
fi
"$VENV/bin/python" -c 'import torch; print(f"setup: ready (torch {torch.__version__})")'
