#!/usr/bin/env bash
# sanitize.sh -- the C tests under sanitizers, and a short fuzz run.
#   asan  : every Criterion test with AddressSanitizer + UndefinedBehaviorSanitizer (gcc)
#   tsan  : the thread stress program (stress_threads) with ThreadSanitizer (gcc);
#           Criterion's workers do not start under TSan, hence a plain program
#   fuzz  : libFuzzer over fs_image_check and the readers, and over the JSON-to-image
#           path, ASan+UBSan (clang)
#   pyasan: the pytest suite against the extension built with ASan+UBSan, the
#           newest venv Python run with the ASan runtime preloaded
#           (PYTHONMALLOC=malloc so ASan sees every object allocation)
# Any sanitizer report fails the run (halt_on_error / abort_on_error).
# Each step's results go to <its build dir>/test-results/ (emptied first) and
# scripts/test-report.py prints its counts (stages sanitize/asan, ...; recorded
# in $FS_REPORT_DIR when test.sh runs this).
#   bash scripts/sanitize.sh [asan] [tsan] [fuzz]     (default: all three)
# Expects scripts/setup.sh to have run (packages, .deps/ jemalloc source).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
JE=$ROOT/.deps/jemalloc-5.3.0.tar.bz2
steps=("$@"); [ ${#steps[@]} -gt 0 ] || steps=(asan tsan fuzz pyasan)
say() { printf '[sanitize] %s\n' "$*"; }
werror=OFF; [ "${CI:-}" = true ] && werror=ON
results() { mkdir -p "$ROOT/$1/test-results" && rm -f "$ROOT/$1/test-results"/*; echo "$ROOT/$1/test-results"; }
report() { python3 "$ROOT/scripts/test-report.py" stage "sanitize/$1" "$2" --group sanitize || rc=1; }

# jemalloc is not instrumented: reuse the main build's copy when it exists.
reuse=
[ -f "$ROOT/${FS_BUILD_DIR:-build}/jemalloc/src/jemalloc_ext/lib/libjemalloc_pic.a" ] &&
    reuse=-DFS_JEMALLOC_DIR=$ROOT/${FS_BUILD_DIR:-build}/jemalloc/src/jemalloc_ext
configure() {  # dir, extra cmake args...
    local dir=$1; shift
    cmake -S "$ROOT" -B "$ROOT/$dir" -DFS_BUILD_BINDINGS=OFF -DFS_WERROR=$werror \
          -DFS_JEMALLOC_TARBALL="$JE" $reuse "$@" >/dev/null
    cmake --build "$ROOT/$dir" -j "$(nproc)" >/dev/null
}

# Criterion's own worker plumbing is not ours to leak-check; SIGSEGV must
# reach the tests that expect it (handle_segv=0).
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS=suppressions=$ROOT/tests/lsan.supp
rc=0
for s in "${steps[@]}"; do
    case $s in
    asan)
        say "AddressSanitizer + UndefinedBehaviorSanitizer: C tests"
        configure build-asan -DFS_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug
        res=$(results build-asan)
        ASAN_OPTIONS=handle_segv=0:handle_sigbus=0:detect_leaks=1:abort_on_error=1 \
            ctest --test-dir build-asan -j 2 -LE bench-smoke --output-junit "$res/ctest.xml" || rc=1
        report asan "$res"
        ;;
    tsan)
        say "ThreadSanitizer: concurrency tests"
        configure build-tsan -DFS_SANITIZE=thread -DCMAKE_BUILD_TYPE=Debug
        res=$(results build-tsan)
        TSAN_OPTIONS=halt_on_error=1:abort_on_error=1 \
            ctest --test-dir build-tsan -R 'stress_threads|bench_refcount' --output-junit "$res/ctest.xml" || rc=1
        report tsan "$res"
        ;;
    fuzz)
        say "libFuzzer: fs_image_check and readers, JSON to image (${FS_FUZZ_SECONDS:-60} s each)"
        command -v clang >/dev/null || { say "clang missing"; exit 1; }
        CC=clang configure build-fuzz -DFS_FUZZ=ON -DFS_SANITIZE=address,undefined \
            -DFS_BUILD_TESTS=ON -DFS_FUZZ_SECONDS="${FS_FUZZ_SECONDS:-60}"
        res=$(results build-fuzz)
        ASAN_OPTIONS=handle_segv=1:detect_leaks=1 \
            ctest --test-dir build-fuzz -R fuzz_ --output-junit "$res/ctest.xml" || rc=1
        report fuzz "$res"
        ;;
    pyasan)
        # the newest GIL build (the free-threaded 3.13t venv is not ASan's)
        py=$(ls -d "$ROOT"/.venv/py3.* 2>/dev/null | grep -v 't$' | sort -V | tail -n 1)/bin/python
        [ -x "$py" ] || { say "no venv Python: run scripts/setup.sh"; exit 1; }
        say "AddressSanitizer + UBSan: pytest with $py"
        configure build-pyasan -DFS_SANITIZE=address,undefined -DFS_BUILD_BINDINGS=ON \
            -DFS_BUILD_TESTS=OFF -DFS_PYTHONS="$py"
        ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
        # Leaks are not checked here: CPython keeps objects alive at exit by design.
        # Not a ctest entry: the exit status and output go beside pytest's results.
        res=$(results build-pyasan)
        set +e
        LD_PRELOAD=$(gcc -print-file-name=libasan.so) PYTHONMALLOC=malloc \
        ASAN_OPTIONS=detect_leaks=0:handle_segv=0:handle_sigbus=0:abort_on_error=1 \
        PYTHONPATH="$ROOT/build-pyasan/py$ver" FS_SLOW_FACTOR=4 \
            "$py" -m pytest -q -p no:cacheprovider "$ROOT/tests/python" \
                --junitxml="$res/python-$ver.xml" -o junit_logging=out-err -o junit_log_passing_tests=false \
                2>&1 | tee "$res/python-$ver.log"
        echo "${PIPESTATUS[0]}" >"$res/python-$ver.rc"
        set -e
        [ "$(cat "$res/python-$ver.rc")" = 0 ] || rc=1
        report pyasan "$res"
        ;;
    *) say "unknown step $s"; exit 2 ;;
    esac
done
exit $rc
