#!/usr/bin/env bash
# demo.sh -- the README's demo: N worker interpreters that all need the same
# large data set, frozenshare vs pickle copies (time-to-ready and memory).
# On a fresh machine it first runs scripts/setup.sh (packages, jemalloc,
# venvs, build); later runs reuse the build.
#
#   bash scripts/demo.sh                   # defaults: 4 workers, 50 MB data set
#   bash scripts/demo.sh --size 200MB --workers 8
#   bash scripts/demo.sh --help
#   FS_DEMO_PYTHON=3.12 bash scripts/demo.sh   # another Python (default: newest >= 3.12)
#   FS_DEMO_NO_SETUP=1 bash scripts/demo.sh    # skip the set-up step
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
say() { printf '[demo] %s\n' "$*"; }

help=
for a in "$@"; do case "$a" in -h|--help) help=1 ;; esac; done

if [ -z "$help" ] && [ -z "${FS_DEMO_NO_SETUP:-}" ]; then
    say "set-up and build (scripts/setup.sh; the first run takes a few minutes, later runs seconds)"
    log=$(mktemp)
    if ! bash scripts/setup.sh >"$log" 2>&1; then
        tail -n 30 "$log"; rm -f "$log"
        say "set-up failed (log above)"; exit 1
    fi
    grep '^\[setup\]' "$log" || true
    rm -f "$log"
fi

py=
for v in ${FS_DEMO_PYTHON:-3.15 3.14 3.13 3.12}; do
    if [ -x "$ROOT/.venv/py$v/bin/python" ]; then py=$ROOT/.venv/py$v/bin/python; break; fi
done
if [ -z "$py" ]; then
    for v in ${FS_DEMO_PYTHON:-3.15 3.14 3.13 3.12}; do
        if command -v "python$v" >/dev/null && "python$v" -c 'import sys' 2>/dev/null; then py=$(command -v "python$v"); break; fi
    done
fi
[ -n "$py" ] || { say "no Python >= 3.12 found: run scripts/setup.sh"; exit 1; }
exec "$py" "$ROOT/bench/demo.py" "$@"
