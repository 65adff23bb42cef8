#!/usr/bin/env bash
# Quick start, command 1: set up, then serve the lab (the dashboards, with pretrained
# models): open http://127.0.0.1:5006/all. Arguments go to `python -m lab serve`
# (e.g. --port 8000, --num-procs 4).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
exec "${LAB_VENV:-.venv}/bin/python" -m lab serve "$@"
