#!/usr/bin/env bash
# pip-install-check.sh PYTHON -- the packaging path users take: `pip install .`
# of a clean copy of the tree into a fresh virtual environment of PYTHON
# (scikit-build-core drives CMake; jemalloc comes from .deps/ or Debian,
# yyjson from .deps/),
# then freeze a dict and read it from an own-GIL subinterpreter.
set -euo pipefail
py=$1
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A clean copy: only what git tracks, plus the cached jemalloc and yyjson tarballs.
git -C "$src" ls-files -z | (cd "$src" && xargs -0 cp --parents -t "$work/" 2>/dev/null) || \
    (cd "$src" && tar --exclude='./build*' --exclude=./.venv --exclude=./.git -cf - . | tar -C "$work" -xf -)
mkdir -p "$work/.deps" && cp "$src/.deps/"*.tar.bz2 "$src/.deps/"*.tar.xz "$work/.deps/" 2>/dev/null || true
"$py" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --disable-pip-version-check "$work"
cd /
"$work/venv/bin/python" - <<'PY'
import sys, frozenshare as fs
f = fs.freeze({"users": [{"name": "ada"}], "n": 1})
assert f["users"][0]["name"] == "ada" and fs.thaw(f) == {"users": [{"name": "ada"}], "n": 1}
if sys.version_info >= (3, 13):
    import _interpreters as I
    iid = I.create("isolated")
    I.set___main___attrs(iid, {"f": f})
    I.exec(iid, "assert f['users'][0]['name'] == 'ada'")
    I.destroy(iid)
else:
    import _xxsubinterpreters as I
    iid = I.create(isolated=True)
    I.run_string(iid, "assert f['users'][0]['name'] == 'ada'", shared={"f": f})
    I.destroy(iid)
print("pip install . OK:", fs.__file__)
PY
