#!/usr/bin/env bash
# test.sh -- the README's test command: set up (packages, jemalloc source,
# venvs, build) and run every test through ctest. Extra arguments go to
# ctest (e.g. -R python, -L bench-smoke, -V).
#
# Stages (the exit code is non-zero if any failed, or if one recorded no results):
#   1. the main build: Criterion tests, benchmark smoke runs, pytest per Python
#   2. sanitizers and fuzzing (scripts/sanitize.sh)       FS_WITH_SANITIZE=0 skips
#   3. Python 3.14 and 3.15 in a Debian unstable root      FS_WITH_SID=0 skips
#      (scripts/test-in-root.sh; needs root or sudo and ~1.6 GiB in /var/tmp)
# Extra ctest arguments apply to stages 1 and 3 only.
#
# Counting: each test entry writes per-test results into <build>/test-results/
# (Criterion --xml, pytest --junitxml, and ctest --output-junit for the
# entries), which is emptied when its stage starts. After each stage
# scripts/test-report.py prints the stage's rows (ran, passed, failed, skipped
# per part) and records them in $FS_REPORT_DIR; at the end it prints every
# failing test's name and output, then one summary table. ctest prints one
# line per entry and no output: the report carries the failures' output.
# Environment: FS_BUILD_DIR   build directory (default build)
#              FS_STAGE_NAME  stage 1's name in the report (default main)
#              FS_REPORT_DIR  when set, a caller collects the records and prints
#                             the summary (test-in-root.sh sets it inside the root)
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${FS_BUILD_DIR:-build}
STAGE=${FS_STAGE_NAME:-main}
report() {   # the system python3; inside the sid root, one of the test Pythons
    local py
    for py in python3 ${FS_PYTHONS:-}; do command -v "$py" >/dev/null && break; done
    "$py" scripts/test-report.py "$@"
}
own_report=0
if [ -z "${FS_REPORT_DIR:-}" ]; then
    own_report=1
    export FS_REPORT_DIR=$PWD/$BUILD/test-report
    mkdir -p "$FS_REPORT_DIR" && rm -f "$FS_REPORT_DIR"/*.json
fi
rc=0
failed() { [ "$rc" -ne 0 ] || rc=$1; }   # the first failure's status wins

s=0
if bash scripts/setup.sh; then
    results=$PWD/$BUILD/test-results
    mkdir -p "$results" && rm -f "$results"/*
    ctest --test-dir "$BUILD" -j 2 --output-junit "$results/ctest.xml" "$@" || s=$?
    report stage "$STAGE" "$results" || [ $s -ne 0 ] || s=1
else
    s=$?
fi
report close "$STAGE" $s; [ $s = 0 ] || failed $s

if [ "${FS_WITH_SANITIZE:-1}" = 1 ]; then
    s=0; bash scripts/sanitize.sh || s=$?
    report close sanitize $s; [ $s = 0 ] || failed $s
fi
if [ "${FS_WITH_SID:-1}" = 1 ]; then
    sudo=; [ "$(id -u)" = 0 ] || sudo="sudo --preserve-env=CI,FS_REPORT_DIR,FS_SID_ROOT,FS_SID_MIRROR,FS_SID_MAX_AGE_DAYS,FS_SID_REFRESH"
    s=0; FS_WITH_SANITIZE=0 $sudo bash scripts/test-in-root.sh "$@" || s=$?
    report close sid $s; [ $s = 0 ] || failed $s
fi
if [ $own_report = 1 ]; then
    report summary || failed 1
fi
exit $rc
