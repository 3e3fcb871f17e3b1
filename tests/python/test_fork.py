"""fork: images made before os.fork() serve the child (issue 13).

Layout: each test runs its scenario in a fresh `python -c` (run_python) that
forks children of its own, so no thread or region of the pytest process is
forked. A child reports through its exit status (0 = every check passed;
the message on stderr otherwise) or through a pipe (numbers).

What must hold (DESIGN.md I1, arena.c "fork"):
  * regions made before the fork read the same in the child; the child can
    freeze, hand its own regions to its subinterpreters, and drop regions
    (its counts go to zero; the parent's stay as they were);
  * the arena and the refcount layer are consistent after a fork that races
    other interpreters' freezes in other threads (their locks are held
    across fork());
  * the image's pages stay shared: a child that reads all of the data adds
    almost nothing to its private memory, where the same data as plain
    objects is copied page by page by the refcount writes of reading it
    (/proc/self/smaps_rollup).
"""
import os
import textwrap

import pytest

from _fshelpers import readme_examples, run_python, skip_under_asan

HERE = os.path.dirname(os.path.abspath(__file__))

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

PRELUDE = f"""
import gc, os, sys, time
sys.path.insert(0, {HERE!r})
import frozenshare as fs

def wait_child(pid, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "hung"

def child(body):
    # run body() in a forked child; its exit code (0: passed)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            import signal
            signal.alarm(50)                 # a deadlocked child dies instead
            body()
            code = 0
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    return wait_child(pid)
"""


def run(code, timeout=180):
    r = run_python(PRELUDE + textwrap.dedent(code), timeout=timeout)
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr[-4000:]}"
    return r.stdout


def test_child_reads_freezes_shares_with_a_subinterpreter_and_drops():
    out = run("""
        from _fshelpers import Interp
        src = [{"id": i, "name": "n%d" % (i % 97), "tags": ["a", "b"][: i % 3], "f": i / 7}
               for i in range(20000)]
        frozen = fs.freeze(src)
        fs.publish("cfg", fs.freeze({"mode": "fork", "n": 3}))
        before = fs.stats()["live_regions"]

        def body():
            global frozen
            assert fs.thaw(frozen) == src
            assert [r["name"] for r in frozen[:200]] == [r["name"] for r in src[:200]]
            assert fs.lookup("cfg")["n"] == 3
            mine = fs.freeze({"child": list(range(1000)), "pid": os.getpid()})
            it = Interp()                  # the child's own subinterpreter
            try:
                it.run("reply(sum(x['child']))", shared={"x": mine})
                assert it.recv() == sum(range(1000))
            finally:
                it.destroy()
            assert fs.stats()["live_regions"] == before + 1
            del mine
            fs.unpublish("cfg")
            frozen = None
            gc.collect()
            assert fs.stats()["live_regions"] == 0, fs.stats()

        assert child(body) == 0
        # the parent is untouched by what the child dropped
        assert fs.stats()["live_regions"] == before
        assert fs.thaw(frozen) == src and fs.lookup("cfg")["mode"] == "fork"
        print("ok")
    """)
    assert out.strip() == "ok"


def test_fork_while_other_threads_freeze_leaves_the_child_consistent():
    # Two threads freeze and drop in a loop while the main thread forks again
    # and again; each child freezes, reads and drops (its watchdog turns a
    # deadlock into a failure). The threads take turns on the GIL, so what
    # this exercises is CPython's fork hooks plus ours and jemalloc's; the
    # truly concurrent case (threads of C code inside the arena and region
    # locks at the fork) is tests/test_region.c's fork test. Forking while
    # subinterpreters exist is CPython's limit, not ours: without frozenshare
    # the child hangs (3.12), aborts (3.13) or segfaults (3.14, 3.15).
    out = run("""
        import threading, warnings
        warnings.simplefilter("ignore", DeprecationWarning)   # fork with threads
        stop = threading.Event()
        loops = [0, 0]

        def churn(k):
            while not stop.is_set():
                f = fs.freeze({"k%d" % i: ("v" * (i % 50), i) for i in range(300)})
                assert len(f) == 300
                del f
                loops[k] += 1

        threads = [threading.Thread(target=churn, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()

        def body():
            live = fs.stats()["live_regions"]   # the threads' regions stay counted
            f = fs.freeze([{"a": i, "b": "x" * (i % 40)} for i in range(5000)])
            assert f[4999]["a"] == 4999 and len(fs.thaw(f)) == 5000
            assert fs.stats()["live_regions"] == live + 1
            del f
            gc.collect()
            assert fs.stats()["live_regions"] == live, fs.stats()

        codes = [child(body) for _ in range(40)]
        stop.set()
        for t in threads:
            t.join()
        assert all(c == 0 for c in codes), codes
        assert min(loops) > 0, loops
        print("ok", loops)
    """)
    assert out.startswith("ok")


@skip_under_asan
@pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"), reason="needs smaps_rollup")
def test_forked_readers_share_the_image_pages_plain_objects_do_not():
    # 300k records read in full by each of 2 forked children: the frozen
    # image adds almost nothing private per child; the same records as plain
    # objects (gc.freeze() or not) are copied by the refcount writes.
    out = run("""
        def private_kb():
            with open("/proc/self/smaps_rollup") as f:
                return sum(int(l.split()[1]) for l in f
                           if l.startswith(("Private_Dirty:", "Private_Clean:")))

        src = [{"id": i, "name": "user%d" % i, "score": i * 0.5, "tags": ["x", "y"]}
               for i in range(300000)]
        frozen = fs.freeze(src)
        image_kb = fs.info(frozen)["image_bytes"] // 1024
        gc.collect()
        gc.freeze()

        def reader(data, w):
            def body():
                before = private_kb()
                total = 0
                for r in data:
                    total += r["id"] + len(r["name"]) + len(r["tags"])
                assert total > 0
                os.write(w, b"%d\\n" % (private_kb() - before))
            return body

        res = {}
        for name, data in (("frozen", frozen), ("plain", src)):
            rfd, wfd = os.pipe()
            codes = [child(reader(data, wfd)) for _ in range(2)]
            os.close(wfd)
            grew = [int(x) for x in os.read(rfd, 1 << 16).split()]
            os.close(rfd)
            assert codes == [0, 0], codes
            res[name] = max(grew)
        print(image_kb, res["frozen"], res["plain"])
    """)
    image_kb, frozen_kb, plain_kb = map(int, out.split())
    print("image %d KiB; private growth per reader: frozen %d KiB, plain %d KiB" % (image_kb, frozen_kb, plain_kb))
    # reading never writes the image: what grows is the reader's own
    # temporaries (its proxies and the strs it made), not the data
    assert frozen_kb < image_kb * 0.10, (image_kb, frozen_kb, plain_kb)
    # the plain objects' pages are written by every read: most of them copied
    assert plain_kb > 8 * max(frozen_kb, 1024), (image_kb, frozen_kb, plain_kb)


def test_multiprocessing_fork_pool_reads_a_module_level_image():
    out = run("""
        import multiprocessing as mp
        DATA = fs.freeze({"w%d" % i: i * i for i in range(50000)})

        def square(i):
            return DATA["w%d" % i]

        if __name__ == "__main__":
            with mp.get_context("fork").Pool(2) as pool:
                got = pool.map(square, range(0, 50000, 7))
            assert got == [i * i for i in range(0, 50000, 7)]
            print("ok")
    """)
    assert out.strip() == "ok"


def test_readme_fork_example_runs_verbatim():
    examples = readme_examples("### `fork`")
    if not examples:
        pytest.skip("README.md is not beside the tests")
    (code,) = examples
    r = run_python(code, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[7, 999999, -1]"
