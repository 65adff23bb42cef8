#!/usr/bin/env bash
# Quick start, command 2: set up (with the test extra), then run the whole test suite.
# Browser tests drive Debian's chromium (Playwright cannot download browsers here): it is
# installed when missing and this runs as root; otherwise those tests are skipped.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh test
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's chromium for the browser tests"
    apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: no chromium (install it as root: apt-get install chromium); browser tests will be skipped"
  fi
fi
# Two workers (CI has two cores; each test keeps torch to one thread); a file's tests stay
# on one worker, in order (a notebook's cells share a kernel). LAB_TEST_WORKERS=0: none.
exec "${LAB_VENV:-.venv}/bin/python" -m pytest -n "${LAB_TEST_WORKERS:-2}" --dist loadfile "$@"
