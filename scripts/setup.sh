#!/usr/bin/env bash
# setup.sh -- everything a fresh Debian 12/13 machine needs before building:
# packages, the pinned jemalloc source, one virtual environment per
# Python >= 3.12 found, then CMake configure + build into ./build.
#
#   bash scripts/setup.sh            # idempotent: reuses what is already there
#
# Environment: FS_PYTHONS="p1 p2"  interpreters to use instead of discovery
#              FS_BUILD_DIR        build directory (default: build)
#              FS_WITH_SANITIZE=0  skip clang (only the fuzzing stage needs it)
#              FS_WITH_FT=0        no free-threaded 3.13t (scripts/ft-python.sh builds
#                                  it once, ~3 min, cached in /var/tmp)
#              CI=true             warnings become errors
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${FS_BUILD_DIR:-build}
JE_SHA=2db82d1e7119df3e71b7640219b6dfe84789bc0537983c3b7ac4f7189aecfeaa
JE_TARBALL=$ROOT/.deps/jemalloc-5.3.0.tar.bz2
say() { printf '[setup] %s\n' "$*"; }

# ---- 1. Debian packages ------------------------------------------------------
apt_updated=0
apt_install() {
    command -v apt-get >/dev/null || { say "apt-get not found: install $* yourself"; return 1; }
    local sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
    if [ $apt_updated = 0 ]; then $sudo apt-get update -q >/dev/null; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "$@" >/dev/null
}
need=()
command -v cc >/dev/null || need+=(gcc)
command -v make >/dev/null || need+=(make)
command -v cmake >/dev/null || need+=(cmake)
command -v bzip2 >/dev/null || need+=(bzip2)
# scripts/test-report.py (stdlib only); with FS_PYTHONS given, one of those serves
command -v python3 >/dev/null || [ -n "${FS_PYTHONS:-}" ] || need+=(python3)
[ -f /usr/include/criterion/criterion.h ] || need+=(libcriterion-dev)
[ -f /usr/include/xxhash.h ] || need+=(libxxhash-dev)              # XXH3: portable image hashes
if [ "${FS_WITH_SANITIZE:-1}" = 1 ]; then                       # scripts/sanitize.sh fuzzes with clang
    command -v clang >/dev/null || need+=(clang)
    ls /usr/lib/llvm-*/lib/clang/*/lib/*/libclang_rt.fuzzer*.a >/dev/null 2>&1 || need+=(libclang-rt-dev)
fi
if [ ${#need[@]} -gt 0 ]; then say "installing ${need[*]}"; apt_install "${need[@]}"; fi

# ---- 2. jemalloc 5.3.0 source (Debian's orig tarball is the upstream file) ---
je_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = $JE_SHA ]; }
if ! je_ok "$JE_TARBALL"; then
    mkdir -p "$ROOT/.deps"
    if command -v apt-get >/dev/null; then
        if ! grep -rqs '^Types:.*deb-src\|^deb-src ' /etc/apt/sources.list /etc/apt/sources.list.d/; then
            say "enabling Debian source entries (deb-src)"
            if [ -f /etc/apt/sources.list.d/debian.sources ]; then
                sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
                    > /etc/apt/sources.list.d/frozenshare-src.sources
            else
                grep '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' \
                    > /etc/apt/sources.list.d/frozenshare-src.list
            fi
            apt_updated=0
        fi
        [ $apt_updated = 1 ] || { apt-get update -q >/dev/null; apt_updated=1; }
        tmp=$(mktemp -d)
        say "fetching Debian's jemalloc source package"
        (cd "$tmp" && apt-get source --download-only -q jemalloc >/dev/null)
        je_ok "$tmp/jemalloc_5.3.0.orig.tar.bz2" && cp "$tmp/jemalloc_5.3.0.orig.tar.bz2" "$JE_TARBALL"
        rm -rf "$tmp"
    fi
    je_ok "$JE_TARBALL" || { say "could not obtain jemalloc-5.3.0.tar.bz2 with SHA-256 $JE_SHA; put it in .deps/"; exit 1; }
fi

# ---- 2b. yyjson 0.10.0 source (fs.from_json): Debian trixie's orig tarball -----
# Debian 12 has no yyjson package; debsrc.sh fetches trixie's on 12 and 13 alike.
. "$ROOT/scripts/debsrc.sh"
YY_SHA=ae6fde69a193e10afab426ef13f113d6903446405f9db9ee98bfb572bd6c961a
YY_TARBALL=$ROOT/.deps/yyjson_0.10.0+ds.orig.tar.xz
if ! debsrc_sha_ok "$YY_TARBALL" $YY_SHA; then say "fetching Debian trixie's yyjson 0.10.0 source"; fi
debsrc_fetch trixie yyjson=0.10.0+ds-1 yyjson_0.10.0+ds.orig.tar.xz $YY_SHA "$YY_TARBALL" ||
    { say "could not obtain yyjson_0.10.0+ds.orig.tar.xz with SHA-256 $YY_SHA; put it in .deps/"; exit 1; }

# ---- 3. Pythons >= 3.12 with headers, one venv each --------------------------
# Pins where the free-threaded 3.13t differs: hypothesis 6.155.7 is the newest
# with a pure wheel there (later ones are sdists needing Rust crates), and
# NumPy 2.5 has no cp313t wheels (2.4.6 is the newest that does).
HYPO_FT=6.155.7
NUMPY=2.5.5 NUMPY_FT=2.4.6
candidates=()
if [ -n "${FS_PYTHONS:-}" ]; then
    read -r -a candidates <<<"$FS_PYTHONS"
else
    for v in 3.12 3.13 3.14 3.15; do
        for p in "$(command -v python$v || true)" /usr/bin/python$v /usr/local/bin/python$v; do
            [ -n "$p" ] && candidates+=("$p")
        done
    done
    proot=$( (pyenv root 2>/dev/null) || echo "$HOME/.pyenv")
    for d in "$proot"/versions/3.1[2-9]*; do [ -x "$d/bin/python3" ] && candidates+=("$d/bin/python3"); done
    # Free-threaded CPython (issue 16): Debian ships none, so build 3.13t.
    if [ "${FS_WITH_FT:-1}" = 1 ]; then
        ft=$(bash "$ROOT/scripts/ft-python.sh" ensure) && candidates+=("$ft") ||
            say "no free-threaded Python (scripts/ft-python.sh failed): its suite is left out"
    fi
fi
declare -A seen=()
venv_pythons=()
for p in "${candidates[@]}"; do
    # X.Y, or X.Yt for a free-threaded build (its own venv, ABI and suite)
    ver=$("$p" -c 'import sys, sysconfig
t = "t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""
print("%d.%d%s" % (*sys.version_info[:2], t) if sys.version_info >= (3, 12) else None)' 2>/dev/null) || continue
    [ -n "$ver" ] && [ "$ver" != None ] && [ -z "${seen[$ver]:-}" ] || continue
    inc=$("$p" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    if [ ! -f "$inc/Python.h" ]; then say "skipping $p: no Python.h (install python$ver-dev)"; continue; fi
    seen[$ver]=1
    venv=$ROOT/.venv/py$ver
    if [ ! -x "$venv/bin/python" ]; then
        say "creating $venv from $p"
        if ! "$p" -m venv "$venv" 2>/dev/null; then
            rm -rf "$venv"; apt_install "python$ver-venv" || true
            "$p" -m venv "$venv"
        fi
    fi
    if ! "$venv/bin/python" -c 'import pytest, hypothesis' 2>/dev/null; then
        say "installing test dependencies into $venv"
        hypo=hypothesis; [ "${ver%t}" != "$ver" ] && hypo=hypothesis==$HYPO_FT
        "$venv/bin/python" -m pip install -q --disable-pip-version-check pytest "$hypo"
    fi
    # NumPy for the typed-buffer tests: a wheel only (where PyPI has none for
    # this Python, those tests skip rather than build NumPy from source).
    np=$NUMPY; [ "${ver%t}" != "$ver" ] && np=$NUMPY_FT
    if ! "$venv/bin/python" -c 'import numpy' 2>/dev/null; then
        say "installing NumPy into $venv"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check --only-binary=:all: \
            "numpy==$np" || say "no NumPy $np wheel for Python $ver: its NumPy tests skip"
    fi
    # Real engines for tests/python/test_engines.py, in one venv (PyPI has
    # Ray for 3.13 here; the tests skip where they are absent).
    if [ "$ver" = 3.13 ] && ! "$venv/bin/python" -c 'import ray, distributed' 2>/dev/null; then
        say "installing Ray and Dask into $venv"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check \
            'ray==2.60.0' 'distributed==2026.8.0'
    fi
    venv_pythons+=("$venv/bin/python")
done
if [ ${#venv_pythons[@]} -eq 0 ]; then
    say "no Python >= 3.12 with headers found: install python3-dev (3.12+) or set FS_PYTHONS"
    exit 1
fi
say "Pythons: ${venv_pythons[*]}"

# ---- 4. configure and build ---------------------------------------------------
werror=OFF; [ "${CI:-}" = true ] && werror=ON
pylist=$(IFS=';'; echo "${venv_pythons[*]}")
cmake -S "$ROOT" -B "$ROOT/$BUILD" -DFS_WERROR=$werror -DFS_PYTHONS="$pylist" \
      -DFS_JEMALLOC_TARBALL="$JE_TARBALL" >/dev/null
cmake --build "$ROOT/$BUILD" -j "$(nproc)"
say "built into $BUILD/"
