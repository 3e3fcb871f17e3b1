#!/usr/bin/env bash
# test.sh -- the README's test command: set up (packages, jemalloc source,
# venvs, build) and run every test through ctest. Extra arguments go to
# ctest (e.g. -R python, -L bench-smoke, -V).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ctest --test-dir "${FS_BUILD_DIR:-build}" --output-on-failure -j 2 "$@"
