#!/usr/bin/env bash
# Quick start, command 1: set up, then run the lab's main job. Until the dashboards exist
# that is: train a model on the default data set and say where it was saved.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
exec "${LAB_VENV:-.venv}/bin/python" -m lab train "$@"
