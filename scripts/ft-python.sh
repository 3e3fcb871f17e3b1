#!/usr/bin/env bash
# ft-python.sh -- a free-threaded CPython 3.13 (configure --disable-gil), built
# from Debian trixie's python3.13 source package and cached outside the
# repository, for the test command's free-threaded suite (issue 16).
#
#   bash scripts/ft-python.sh [ensure]   build it, or reuse it when its stamp matches;
#                                        prints the interpreter's path on stdout
#   bash scripts/ft-python.sh status     print the stamp
#   bash scripts/ft-python.sh remove     delete the build (the tarball stays)
#
# Environment: FS_FT_ROOT       where it lives (default /var/tmp/frozenshare-py3.13t,
#                               beside the sid root; ~250 MiB installed)
#              FS_FT_REFRESH=1  rebuild unconditionally
#
# Why a source build: Debian ships no free-threaded interpreter (PLATFORM.md),
# and sid's source pool lacks python3.14's tarball, so 3.13t is the one that
# can be had; add 3.14t the same way once python3.14's orig tarball downloads.
#
# Reuse: the install carries a stamp, written last, holding the spec below
# (version, tarball SHA-256, configure flags, SPEC). A missing or different
# stamp means a rebuild. The build installs into <root>.partial (DESTDIR) and
# is renamed into place only when complete; an interrupted run leaves at most
# the partial directory, which the next run deletes. Everything holds an
# exclusive flock on <root>.lock, so concurrent runs wait for one build.
# The orig tarball is kept in <root>.src/ across rebuilds. Progress goes to
# stderr; the build's own output to <root>.src/build.log.
set -euo pipefail
cd "$(dirname "$0")/.."
SPEC=1                                    # bump when the build below changes
VERSION=3.13.5
TARBALL=python3.13_$VERSION.orig.tar.xz
SHA=93e583f243454e6e9e4588ca2c2662206ad961659863277afcdb96801647d640
CONFIGURE=(--disable-gil --without-system-libmpdec --with-ensurepip=install)
BUILD_DEPS=(gcc make pkg-config xz-utils libssl-dev zlib1g-dev libffi-dev libbz2-dev liblzma-dev)
R=${FS_FT_ROOT:-/var/tmp/frozenshare-py3.13t}
R=$(realpath -m -- "$R")
PARTIAL=$R.partial
SRC=$R.src
STAMP=$R/.frozenshare-ft-python
PY=$R/bin/python3.13t
say() { printf '[ft-python] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
spec() { printf 'version=%s sha256=%s configure=%s spec=%s\n' "$VERSION" "$SHA" "${CONFIGURE[*]}" "$SPEC"; }
ready() { [ -x "$PY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(spec)" ]; }

build() {
    . scripts/debsrc.sh
    mkdir -p "$SRC"
    if ! debsrc_sha_ok "$SRC/$TARBALL" $SHA; then
        say "fetching Debian trixie's python3.13 source ($TARBALL)"
        debsrc_fetch trixie python3.13 "$TARBALL" $SHA "$SRC/$TARBALL" ||
            die "could not obtain $TARBALL with SHA-256 $SHA; put it in $SRC/"
    fi
    local missing=() p
    for p in "${BUILD_DEPS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        [ "$(id -u)" = 0 ] || die "needs root to install ${missing[*]}"
        say "installing ${missing[*]}"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    fi
    rm -rf "$PARTIAL" "$R" "$SRC/Python-$VERSION"
    tar -C "$SRC" -xf "$SRC/$TARBALL"
    say "building CPython $VERSION ${CONFIGURE[*]} into $R (a few minutes; log: $SRC/build.log)"
    (
        cd "$SRC/Python-$VERSION"
        ./configure --prefix="$R" "${CONFIGURE[@]}"
        make -j "$(nproc)"
        make install DESTDIR="$PARTIAL" COMPILEALL_OPTS=-j0
    ) >"$SRC/build.log" 2>&1 || { tail -30 "$SRC/build.log" >&2; die "the build failed (log: $SRC/build.log)"; }
    mv "$PARTIAL$R" "$R"
    rm -rf "$PARTIAL" "$SRC/Python-$VERSION"
    "$PY" -c 'import sys, sysconfig, ssl, zlib, _decimal
assert sysconfig.get_config_var("Py_GIL_DISABLED") and not sys._is_gil_enabled()' ||
        die "$PY is not a working free-threaded interpreter"
    spec > "$STAMP"
    say "built $PY"
}

case ${1:-ensure} in
    ensure)
        exec 9>"$R.lock"
        flock 9
        if [ "${FS_FT_REFRESH:-0}" = 1 ] || ! ready; then build; fi
        echo "$PY" ;;
    status) if ready; then cat "$STAMP"; else echo "not built (or stale): $R"; fi ;;
    remove) exec 9>"$R.lock"; flock 9; rm -rf "$R" "$PARTIAL"; say "removed $R" ;;
    *) die "usage: ft-python.sh [ensure|status|remove]" ;;
esac
