#!/usr/bin/env bash
# The command a GPU machine runs (docs/gpu.md): install the wheels carried in .whl/ (POT;
# scripts/gpu-wheels.sh fetches them) and the lab without its dependencies, then
# benchmarks/gpu.py, its results to $OUT. Arguments go to gpu.py (--quick, --part ...).
set -uo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu.sh: could not install the carried wheels" >&2; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . || { echo "gpu.sh: could not install the lab" >&2; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
PYTHONUNBUFFERED=1 exec python3 benchmarks/gpu.py --out "${OUT:-runs/gpu}" "$@"
