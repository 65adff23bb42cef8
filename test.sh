#!/usr/bin/env bash
# Quick start, command 2: set up (with the test extra), then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh test
exec "${LAB_VENV:-.venv}/bin/python" -m pytest "$@"
