#!/usr/bin/env bash
# test-in-root.sh -- build and test against Python 3.14 and 3.15 inside the
# Debian unstable root of scripts/sid-root.sh (those Pythons are not packaged
# for Debian 12/13; PLATFORM.md).
#
#   bash scripts/test-in-root.sh [ctest arguments]      e.g. -R python, -L bench-smoke
#
# What it does, all as root:
#   1. scripts/sid-root.sh creates the root, or reuses it (stamp; see there);
#   2. the source tree is bind-mounted read-only at /mnt/host-src and rsync'ed
#      into /src inside the root, skipping .git and everything .gitignore'd
#      (the host's build*/ and .venv/ stay out; the root's own /src/build-sid and
#      /src/.venv survive between runs, so rebuilds are incremental); the pinned
#      jemalloc tarball in .deps/ is copied when the host has it;
#   3. inside (chroot, /proc and /dev mounted): a preflight of the toolchain, then
#      FS_PYTHONS="/usr/bin/python3.14 /usr/bin/python3.15" FS_BUILD_DIR=build-sid
#      bash scripts/test.sh [ctest arguments]
#      which makes /src/.venv/py3.14 and py3.15 (pytest + hypothesis from PyPI),
#      builds into /src/build-sid and runs ctest;
#   4. prints ctest's summary and exits with test.sh's exit code.
# Counts: the host directory $FS_REPORT_DIR is bind-mounted at /mnt/report and
# the test.sh inside records its stage "sid" there (scripts/test-report.py);
# test.sh on the host prints it in its summary. Run alone (FS_REPORT_DIR
# unset), this script uses a temporary directory and prints the summary itself.
# Nothing else is written into the host's tree. The full log stays in the root:
# <root>/var/log/frozenshare/test-in-root.log (FS_SID_HOST_ROOT, set by
# sid-root.sh, names <root> for the message).
#
# Environment: FS_SID_ROOT, FS_SID_MIRROR, FS_SID_MAX_AGE_DAYS, FS_SID_REFRESH (sid-root.sh)
#              FS_SID_PYTHONS     interpreters inside (default "/usr/bin/python3.14 /usr/bin/python3.15")
#              FS_SID_BUILD_DIR   build directory inside /src (default build-sid)
#              CI=true            passed in: warnings become errors
# Inside, FS_WITH_SID=0: a test.sh that runs this script (in CI or with
# FS_WITH_SID=1) does not recurse when it runs inside the root.
set -euo pipefail
cd "$(dirname "$0")/.."
HOST_SRC=$PWD
PYS=${FS_SID_PYTHONS:-/usr/bin/python3.14 /usr/bin/python3.15}
BUILD=${FS_SID_BUILD_DIR:-build-sid}

# Runs inside the root as: bash -c "$INNER" inner <ctest args...>
# shellcheck disable=SC2016
INNER='
set -euo pipefail
say() { printf "[test-in-root] %s\n" "$*"; }
LOG=/var/log/frozenshare/test-in-root.log
mkdir -p /src "${LOG%/*}"
t0=$(date +%s)
# .gitignore files double as rsync exclude lists (same syntax for what this
# project uses; a "!" line would mean "clear" to rsync, not "re-include").
# Receiver-side files excluded this way (build-sid/, .venv/, .deps/) survive --delete.
rsync -a --delete --exclude=/.git/ --filter=":- .gitignore" /mnt/host-src/ /src/
if [ -f /mnt/host-src/.deps/jemalloc-5.3.0.tar.bz2 ]; then
    mkdir -p /src/.deps
    rsync -a /mnt/host-src/.deps/jemalloc-5.3.0.tar.bz2 /src/.deps/
fi
say "source synced into /src in $(( $(date +%s) - t0 ))s"

# Preflight: what this root is for. Fail early and clearly if it is not there.
for p in $FS_PYTHONS; do
    "$p" -c "import sys, sysconfig, os.path
print(\"[test-in-root]\", sys.executable, sys.version.split()[0],
      \"Python.h\" if os.path.exists(os.path.join(sysconfig.get_paths()[\"include\"], \"Python.h\")) else \"NO Python.h\")"
done
python3.14 -c "import concurrent.interpreters" \
    || { say "python3.14 lacks concurrent.interpreters"; exit 1; }
python3.15 -c "frozendict" || { say "python3.15 lacks the frozendict builtin"; exit 1; }
say "$(gcc --version | head -n1); $(cmake --version | head -n1)"

cd /src
set +e
FS_BUILD_DIR=$FS_BUILD_DIR bash scripts/test.sh "$@" 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
set -e
echo
say "---- summary ($(( $(date +%s) - t0 ))s in the root) ----"
if grep -q "tests passed, " "$LOG"; then
    sed -n "/tests passed, /,\$p" "$LOG"
else
    say "no ctest summary: set-up or build failed (see above)"
fi
say "exit code $rc; full log: ${FS_SID_HOST_ROOT:-<root>}$LOG"
exit "$rc"
'

own_report=
if [ -z "${FS_REPORT_DIR:-}" ]; then
    own_report=$(mktemp -d); FS_REPORT_DIR=$own_report
    trap 'rm -rf "$own_report"' EXIT
fi
mkdir -p "$FS_REPORT_DIR"
rc=0
bash scripts/sid-root.sh run \
    --bind "$HOST_SRC:/mnt/host-src:ro" --bind "$FS_REPORT_DIR:/mnt/report" \
    --env "FS_PYTHONS=$PYS" --env "FS_BUILD_DIR=$BUILD" --env FS_WITH_SID=0 --env FS_WITH_SANITIZE=0 \
    --env FS_REPORT_DIR=/mnt/report --env FS_STAGE_NAME=sid \
    -- bash -c "$INNER" inner "$@" || rc=$?
if [ -n "$own_report" ]; then
    export FS_REPORT_DIR
    python3 scripts/test-report.py close sid $rc
    python3 scripts/test-report.py summary || [ $rc -ne 0 ] || rc=1
fi
exit $rc
