#!/usr/bin/env bash
# bench.sh -- the whole benchmark suite in one command, on a fresh machine too:
#   1. scripts/setup.sh (Debian packages, jemalloc source, per-Python venvs,
#      CMake build of frozenshare and the C benchmarks);
#   2. gnuplot (Debian's gnuplot-nox) for the plots;
#   3. a benchmark venv .venv/bench-pyX.Y with the libraries users would pick
#      instead (orjson, msgspec, msgpack, frozendict, immutables);
#   4. the C benchmarks build/bench/bench_* (when built), then the Python
#      benchmarks bench/bench_*.py, then plots and a Markdown report.
#      bench_submit.py (InterpreterPoolExecutor) needs Python 3.14+: on an older
#      Python it prints why and is skipped; --in-root runs it where 3.14 is.
# Results: bench/results/*.json (+ .txt logs, .png plots, report-pyX.Y.md).
#
#   bash scripts/bench.sh                 # full suite (tens of minutes)
#   bash scripts/bench.sh --quick         # a few minutes on 2 cores
#   bash scripts/bench.sh --quick --only handoff,memory
#   bash scripts/bench.sh --python 3.12   # another Python (default: newest >= 3.12)
#   bash scripts/bench.sh --no-setup      # skip step 1 (already built)
#   bash scripts/bench.sh --update-docs   # also rewrite the numbers in docs/benchmarks.md
#   bash scripts/bench.sh --in-root --quick   # bench_submit.py with Python 3.14 inside the
#                                         # Debian unstable root of scripts/sid-root.sh
#                                         # (--python 3.15, --only submit,handoff also work there)
#
# Environment: FS_BUILD_DIR      build directory (default build; also for setup.sh)
#              FS_PYPATH=dir   where `import frozenshare` is found (default:
#              discovered under $FS_BUILD_DIR); FS_BENCH_ARGS extra
#              arguments for every bench_*.py.
#              --in-root: FS_SID_ROOT and the other FS_SID_* of sid-root.sh,
#              FS_SID_PYTHONS and FS_SID_BUILD_DIR as in test-in-root.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
say() { printf '[bench] %s\n' "$*"; }

quick=; only=; pyver=; setup=1; update_docs=; cbench=1; in_root=
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=--quick ;;
        --only) only=$2; shift ;;
        --only=*) only=${1#--only=} ;;
        --python) pyver=$2; shift ;;
        --python=*) pyver=${1#--python=} ;;
        --no-setup) setup= ;;
        --no-c) cbench= ;;
        --update-docs) update_docs=1 ;;
        --in-root) in_root=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) say "unknown argument $1 (see --help)"; exit 2 ;;
    esac
    shift
done

# ---- --in-root: the Python 3.14+ benchmarks inside the Debian unstable root ---------
# Python 3.14/3.15 come only with scripts/sid-root.sh's root (PLATFORM.md). As in
# scripts/test-in-root.sh, the tree is bind-mounted read-only and rsync'ed into /src
# (the root's /src/build-sid and /src/.venv survive between runs), scripts/setup.sh
# builds there, then the chosen benchmarks (default: submit) run with /src/.venv/pyX.Y.
# The host's bench/results/ is bind-mounted as the results directory, so the JSON and
# .txt files land next to the host's. No peer libraries (orjson, ...) are installed.
if [ -n "$in_root" ]; then
    # shellcheck disable=SC2016
    INNER='
set -euo pipefail
say() { printf "[bench-in-root] %s\n" "$*"; }
ver=$1 only=$2 quick=$3 setup=$4
rsync -a --delete --exclude=/.git/ --filter=":- .gitignore" /mnt/host-src/ /src/
if [ -f /mnt/host-src/.deps/jemalloc-5.3.0.tar.bz2 ]; then
    mkdir -p /src/.deps; rsync -a /mnt/host-src/.deps/jemalloc-5.3.0.tar.bz2 /src/.deps/
fi
cd /src
[ -z "$setup" ] || bash scripts/setup.sh
PY=/src/.venv/py$ver/bin/python
[ -x "$PY" ] || { say "no $PY: run without --no-setup, or check FS_SID_PYTHONS"; exit 1; }
export FS_PYPATH=/src/$FS_BUILD_DIR/py$ver FS_BENCH_RESULTS=/mnt/host-results
say "Python $("$PY" -c "import sys; print(sys.version.split()[0])"), frozenshare from $FS_PYPATH, load average $(cut -d" " -f1 /proc/loadavg) on $(nproc) cores"
failed=()
for b in ${only//,/ }; do
    say "$b $quick"
    # shellcheck disable=SC2086
    (cd bench && "$PY" "bench_$b.py" $quick ${FS_BENCH_ARGS:-}) 2>&1 | tee "/mnt/host-results/$b-py$ver.txt" \
        || { failed+=("$b"); say "WARNING: bench_$b.py failed"; }
done
say "results in bench/results/ of the host (*-py$ver.json, *-py$ver.txt)"
if [ ${#failed[@]} -gt 0 ]; then say "failed: ${failed[*]}"; exit 1; fi
'
    mkdir -p "$ROOT/bench/results"
    commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || true)
    if [ -n "$commit" ] && [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no)" ]; then
        commit="$commit+dirty"
    fi
    exec bash scripts/sid-root.sh run \
        --bind "$ROOT:/mnt/host-src:ro" --bind "$ROOT/bench/results:/mnt/host-results" \
        --env "FS_PYTHONS=${FS_SID_PYTHONS:-/usr/bin/python3.14 /usr/bin/python3.15}" \
        --env "FS_BUILD_DIR=${FS_SID_BUILD_DIR:-build-sid}" --env FS_WITH_SANITIZE=0 \
        --env "FS_BENCH_COMMIT=$commit" --env "FS_BENCH_ARGS=${FS_BENCH_ARGS:-}" \
        -- bash -c "$INNER" inner "${pyver:-3.14}" "${only:-submit}" "$quick" "$setup"
fi

# ---- 1. set-up and build ------------------------------------------------------
if [ -n "$setup" ]; then
    say "running scripts/setup.sh"
    if ! bash scripts/setup.sh; then
        say "WARNING: setup/build failed: benchmarks run with whatever is built (frozenshare rows may be n/a)"
    fi
fi

# ---- 2. gnuplot -----------------------------------------------------------------
if ! command -v gnuplot >/dev/null; then
    if command -v apt-get >/dev/null; then
        say "installing gnuplot-nox"
        sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
        { $sudo apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
            $sudo apt-get install -y -q --no-install-recommends gnuplot-nox >/dev/null; } \
            || say "WARNING: could not install gnuplot: no plots"
    else
        say "WARNING: no gnuplot and no apt-get: no plots"
    fi
fi

# ---- 3. the benchmark venv ------------------------------------------------------
# Base interpreter: the one behind .venv/pyX.Y (made by setup.sh), newest first.
base=
for v in ${pyver:-3.15 3.14 3.13 3.12}; do
    cand=
    if [ -x "$ROOT/.venv/py$v/bin/python" ]; then
        cand=$("$ROOT/.venv/py$v/bin/python" -c 'import sys; print(getattr(sys, "_base_executable", sys.executable))')
    fi
    for p in "$cand" "$(command -v python$v || true)" "$( (pyenv root 2>/dev/null || echo "$HOME/.pyenv") )/versions/$v"*/bin/python3; do
        if [ -n "$p" ] && [ -x "$p" ] && "$p" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
            base=$p; break 2
        fi
    done
done
[ -n "$base" ] || { say "no Python >= 3.12 found${pyver:+ for $pyver}"; exit 1; }
ver=$("$base" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
venv=$ROOT/.venv/bench-py$ver
if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv from $base"
    "$base" -m venv "$venv"
fi
peers="orjson msgspec msgpack frozendict immutables numpy==2.5.5"
if ! "$venv/bin/python" -c 'import orjson, msgspec, msgpack, frozendict, immutables, numpy' 2>/dev/null; then
    say "installing peer libraries into $venv: $peers"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check $peers \
        || say "WARNING: pip failed: rows of the missing libraries will be absent"
fi
PY=$venv/bin/python
RES=$ROOT/bench/results
mkdir -p "$RES"
fsdir=$("$PY" -c 'import sys; sys.path.insert(0, "bench"); import fsbench; print(fsbench.find_fs_dir() or "")')
if [ -n "$fsdir" ]; then say "frozenshare from $fsdir"; export FS_PYPATH=$fsdir
else say "WARNING: frozenshare is not built for Python $ver: baselines only"; fi
load=$(cut -d' ' -f1 /proc/loadavg)
say "Python $ver ($PY), load average $load on $(nproc) cores"
awk -v l="$load" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }' \
    && say "WARNING: the machine is busy; timings (scaling above all) will be pessimistic"

want() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }
failed=()

# ---- 4a. C benchmarks -------------------------------------------------------------
if [ -n "$cbench" ] && want c; then
    for b in "$ROOT"/"${FS_BUILD_DIR:-build}"/bench/bench_*; do
        [ -f "$b" ] && [ -x "$b" ] || continue
        name=$(basename "$b")
        args=()
        if [ -n "$quick" ]; then
            if "$b" --help 2>&1 | grep -q -- '--quick'; then args=(--quick); else args=(--smoke); fi
        fi
        say "C: $name ${args[*]}"
        if ! timeout 900 "$b" "${args[@]}" 2>&1 | tee "$RES/c-$name.txt"; then
            failed+=("$name"); say "WARNING: $name failed"
        fi
    done
fi

# ---- 4b. Python benchmarks -----------------------------------------------------------
for b in handoff memory access freeze scaling contention processes records submit; do
    want "$b" || continue
    say "$b ${quick}"
    # shellcheck disable=SC2086
    if ! (cd bench && "$PY" "bench_$b.py" $quick ${FS_BENCH_ARGS:-}) 2>&1 | tee "$RES/$b-py$ver.txt"; then
        failed+=("$b"); say "WARNING: bench_$b.py failed"
    fi
done

# ---- 5. plots and report --------------------------------------------------------------
(cd bench && "$PY" plot.py --py "py$ver" --docs) || say "WARNING: plotting failed"
(cd bench && "$PY" report.py --py "py$ver" ${update_docs:+--update-docs}) || say "WARNING: report failed"
say "results in bench/results/ (report-py$ver.md, *.json, *.png)"
grep -h '^TARGET' "$RES"/*-py"$ver".txt 2>/dev/null || true
if [ ${#failed[@]} -gt 0 ]; then say "failed: ${failed[*]}"; exit 1; fi
