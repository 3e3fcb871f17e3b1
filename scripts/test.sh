#!/usr/bin/env bash
# test.sh -- the README's test command: set up (packages, jemalloc source,
# venvs, build) and run every test through ctest. Extra arguments go to
# ctest (e.g. -R python, -L bench-smoke, -V).
#
# Stages (each prints ctest's summary; the exit code is non-zero if any failed):
#   1. the main build: Criterion tests, benchmark smoke runs, pytest per Python
#   2. sanitizers and fuzzing (scripts/sanitize.sh)       FS_WITH_SANITIZE=0 skips
#   3. Python 3.14 and 3.15 in a Debian unstable root      FS_WITH_SID=0 skips
#      (scripts/test-in-root.sh; needs root or sudo and ~1.6 GiB in /var/tmp)
# Extra ctest arguments apply to stages 1 and 3 only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
rc=0
ctest --test-dir "${FS_BUILD_DIR:-build}" --output-on-failure -j 2 "$@" || rc=$?
if [ "${FS_WITH_SANITIZE:-1}" = 1 ]; then
    bash scripts/sanitize.sh || { r=$?; [ $rc -ne 0 ] || rc=$r; }
fi
if [ "${FS_WITH_SID:-1}" = 1 ]; then
    sudo=; [ "$(id -u)" = 0 ] || sudo="sudo --preserve-env=CI,FS_SID_ROOT,FS_SID_MIRROR,FS_SID_MAX_AGE_DAYS,FS_SID_REFRESH"
    FS_WITH_SANITIZE=0 $sudo bash scripts/test-in-root.sh "$@" || { r=$?; [ $rc -ne 0 ] || rc=$r; }
fi
exit $rc
