#!/usr/bin/env bash
# Fetch the wheels a GPU machine lacks (it has PyTorch, numpy, scipy, pytest and torchdiffeq,
# not POT, and downloads nothing) into .whl/, ignored by git; the device run carries .whl
# (docs/gpu.md). Python 3.12, x86-64 Linux, as the machine's python3.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl "pot==0.9.7.post1"
ls -la .whl
