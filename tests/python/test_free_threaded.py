"""Free-threaded CPython (PEP 703): threads of one interpreter use the module
at the same time, with the GIL off (issue 16).

Layout: the GIL stays off; many threads on shared proxies (reads, shared
iterators, repr, the caches); many threads making and dropping regions
(freeze, publish/lookup/unpublish, the handle table); freeze of containers
another thread changes; subinterpreters. Every test but the first skips on
builds with a GIL (there the GIL serializes what these race).

Invariants checked: exact results and counts (every element of a shared
iterator goes to exactly one thread), zero live regions and the handle count
back where it was at the end, no crash and no error but the documented
RuntimeError. Each race runs long enough (a barrier starts the threads at
once) for the interleavings to happen on two cores; none asserts a time.
"""
import gc
import sys
import sysconfig
import threading

import pytest

import frozenshare as fs
from _fshelpers import Interp, live_regions, run_python, wait_live, wait_stable

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
ft_only = pytest.mark.skipif(not FREE_THREADED, reason="needs a free-threaded build (3.13t+)")

THREADS = 4


def in_threads(fn, n=THREADS):
    """Run fn(i) in n threads started at once; return their results in order,
    re-raising the first exception one raised."""
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def run(i):
        try:
            barrier.wait()
            results[i] = fn(i)
        except BaseException as e:   # noqa: BLE001 -- re-raised below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


@pytest.fixture
def settled():
    """live_regions and handles before the test; at its end both must be back."""
    gc.collect()
    before = (wait_stable(), fs.stats()["handles"])
    yield before
    wait_live(before[0])
    assert fs.stats()["handles"] == before[1]


# ---- the GIL stays off ----------------------------------------------------------

def test_module_declares_whether_it_needs_the_gil():
    # Any build: importing and using the module warns about no GIL. On a
    # free-threaded one the GIL must stay off (CPython would turn it on, with
    # a RuntimeWarning that -W error makes fatal, for a module that did not
    # declare Py_MOD_GIL_NOT_USED).
    r = run_python("""
        import sys, sysconfig
        import frozenshare as fs
        p = fs.freeze({"a": [1, 2, {"b": b"x"}]})
        assert fs.thaw(p) == {"a": [1, 2, {"b": b"x"}]}
        ft = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
        print(ft, sys._is_gil_enabled() if ft else "n/a")
    """, args=("-W", "error"), env=None)
    assert r.returncode == 0, r.stderr
    ft, gil = r.stdout.split()
    if ft == "True":
        assert gil == "False"
    assert "GIL" not in r.stderr


@ft_only
def test_gil_stays_off_in_this_process():
    assert not sys._is_gil_enabled()


# ---- many threads on the same proxies -------------------------------------------

VOCAB = {f"tok{i:05d}": i for i in range(20_000)}


@ft_only
def test_threads_read_the_same_proxies(settled):
    m = fs.freeze({"vocab": VOCAB, "rows": [{"id": i, "name": f"n{i}"} for i in range(2000)],
                   "blob": bytes(range(256)) * 64, "nums": tuple(range(5000))})
    keys = list(VOCAB)

    def work(t):
        vocab, rows, nums = m["vocab"], m["rows"], m["nums"]
        total = 0
        for rep in range(3):
            for i in range(t, len(keys), 3):
                total += vocab[keys[i]]
            assert sum(nums) == sum(range(5000))
            assert [r["id"] for r in rows] == list(range(2000))
            assert sum(len(r) for r in rows) == 4000
            assert dict(rows[t].items()) == {"id": t, "name": f"n{t}"}
            assert hash(m["nums"]) == hash(tuple(range(5000)))
            assert bytes(m["blob"]) == bytes(range(256)) * 64
            assert len(vocab) == len(VOCAB) and "tok00007" in vocab
        return total

    totals = in_threads(work)
    for t, total in enumerate(totals):
        assert total == 3 * sum(VOCAB[keys[i]] for i in range(t, len(keys), 3))
    del m


@ft_only
@pytest.mark.parametrize("what", ["list", "tuple", "keys", "values", "items", "set"])
def test_a_shared_iterator_gives_each_element_to_one_thread(settled, what):
    n = 150_000
    src = {"list": list(range(n)), "tuple": tuple(range(n)), "set": set(range(n))}.get(
        what, {i: -i for i in range(n)})
    p = fs.freeze(src)
    it = {"keys": lambda: iter(p.keys()), "values": lambda: iter(p.values()),
          "items": lambda: iter(p.items())}.get(what, lambda: iter(p))()

    def drain(t):
        got = []
        for x in it:          # the threads pull from one iterator
            got.append(x)
        return got

    parts = in_threads(drain)
    seen = [x for part in parts for x in part]
    expected = {"values": [-i for i in range(n)],
                "items": [(i, -i) for i in range(n)]}.get(what, list(range(n)))
    assert sorted(seen) == sorted(expected)       # each once: none lost, none twice
    assert next(it, "end") == "end"
    del it, p


@ft_only
def test_repr_of_one_cyclic_image_from_threads(settled):
    cyc = [1, "a"]
    cyc.append(cyc)
    p = fs.freeze({"c": cyc, "d": {"x": (1, 2)}})
    want = repr(p)
    assert "[...]" in want                 # the cycle is recognized ...
    # ... per thread: one thread's repr never makes another's see a cycle
    reprs = in_threads(lambda t: [repr(p) for _ in range(300)])
    assert all(r == want for rs in reprs for r in rs)
    del p


@ft_only
def test_key_cache_and_record_classes_from_threads(settled):
    from _records import Point           # a frozen dataclass of the test suite
    before = fs.stats()
    rows = fs.freeze([{"id": i, "tag": "t", "w": 1.5} for i in range(3000)]
                     + [Point(i, -i) for i in range(500)])

    def work(t):
        n = 0
        for r in rows:
            if isinstance(r, Point):
                n += r.x + r.y
            else:
                n += len(list(r.keys())) + len(list(r.items()))
        return n

    assert in_threads(work) == [3000 * 6] * THREADS
    st = fs.stats()
    # two shapes (the dicts', the Points' fields), each cached once
    assert st["key_cache_shapes"] - before["key_cache_shapes"] == 2
    assert st["key_cache_keys"] - before["key_cache_keys"] == 3 + 3
    assert st["key_cache_hits"] - before["key_cache_hits"] >= THREADS * 3000 * 3
    del rows
    gc.collect()
    assert fs.stats()["key_cache_shapes"] == before["key_cache_shapes"]


# ---- many threads making and dropping regions -----------------------------------

@ft_only
def test_threads_freeze_thaw_and_drop(settled):
    def work(t):
        for i in range(300):
            src = {"t": t, "i": i, "l": list(range(i % 17)), "s": {f"k{t}", i}}
            p = fs.freeze(src)
            assert fs.thaw(p) == src
            q = fs.freeze([p, p["l"], (t, i)])   # imports a region of this thread
            assert q[0]["i"] == i and list(q[1]) == list(range(i % 17))
            del p, q
        return True

    assert in_threads(work) == [True] * THREADS


@ft_only
def test_publish_lookup_unpublish_from_threads(settled):
    shared = fs.freeze({"v": list(range(100))})
    fs.publish("ft-shared", shared)
    start_published = fs.stats()["published"]

    def work(t):
        mine = f"ft-{t}"
        hits = 0
        for i in range(400):
            fs.publish(mine, fs.freeze([t, i]))
            assert list(fs.lookup(mine)) == [t, i]
            hits += sum(fs.lookup("ft-shared")["v"]) == 4950   # one handle, raced for
            fs.unpublish(mine)
            with pytest.raises(KeyError):
                fs.lookup(mine)
        return hits

    assert in_threads(work) == [400] * THREADS
    assert fs.stats()["published"] == start_published
    fs.unpublish("ft-shared")
    del shared


@ft_only
def test_the_handle_of_one_region_raced_for(settled):
    # Threads look the same region up and drop it, so one thread's handle
    # dies while another finds it in the table: the finder must get a live
    # handle (a new one when the old is dying), never revive a dead one.
    fs.publish("ft-race", fs.freeze({"x": 1}))
    gc.collect()
    handles = fs.stats()["handles"]

    def work(t):
        ok = 0
        for _ in range(20_000):
            ok += fs.lookup("ft-race")["x"]    # the proxy (and often the handle) dies here
        return ok

    assert in_threads(work) == [20_000] * THREADS
    gc.collect()
    assert fs.stats()["handles"] == handles
    fs.unpublish("ft-race")


# ---- freeze of containers another thread changes --------------------------------

@ft_only
@pytest.mark.parametrize("kind", ["list", "dict", "set", "bytearray", "nested"])
def test_freeze_while_another_thread_mutates(settled, kind):
    # Each freeze either raises RuntimeError (a size change seen) or gives an
    # image of the container as it was at one moment: never a crash, never
    # an item that was not in it.
    if kind == "list":
        obj = list(range(200))
    elif kind == "dict":
        obj = {i: str(i) for i in range(200)}
    elif kind == "set":
        obj = set(range(200))
    elif kind == "bytearray":
        obj = bytearray(b"ab" * 200)
    else:
        obj = [{"i": i, "l": [i]} for i in range(100)]
    stop = threading.Event()

    def mutate():
        i = 0
        while not stop.is_set():
            i += 1
            if kind == "list":
                obj.append(1000 + i)
                obj[i % 100] = 2000 + i
                obj.pop()
            elif kind == "dict":
                obj[1000 + i % 50] = "new"
                obj.pop(1000 + (i + 25) % 50, None)
            elif kind == "set":
                obj.add(1000 + i % 50)
                obj.discard(1000 + (i + 25) % 50)
            elif kind == "bytearray":
                # 3.13t's bytearray takes no lock (3.14 added one): another
                # thread's resize can race any reader, frozenshare or not, so
                # it is written in place there (the export blocks a resize)
                obj[i % 400] = b"xy"[i % 2]
                obj[(i + 200) % 400] = ord("a") + (i % 2)
            else:
                obj[i % 100]["l"].append(i)
                obj[i % 100]["l"].pop()
                obj[(i + 7) % 100] = {"i": -1, "l": []}

    t = threading.Thread(target=mutate)
    t.start()
    frozen = errors = 0
    try:
        for _ in range(400):
            try:
                p = fs.freeze(obj)
            except RuntimeError as e:
                assert "changed" in str(e)
                errors += 1
                continue
            frozen += 1
            v = fs.thaw(p)
            if kind == "list":
                assert 199 <= len(v) <= 201 and all(isinstance(x, int) for x in v)
            elif kind == "dict":
                assert all(k < 200 and s == str(k) or k >= 1000 and s == "new"
                           for k, s in v.items())
            elif kind == "set":
                assert set(range(200)) <= v and all(x < 200 or x >= 1000 for x in v)
            elif kind == "bytearray":
                assert len(v) == 400 and set(v) <= set(b"abxy")
            else:
                assert len(v) == 100 and all(set(r) == {"i", "l"} for r in v)
            del p, v
    finally:
        stop.set()
        t.join()
    assert frozen + errors == 400 and frozen > 0


# ---- subinterpreters --------------------------------------------------------------

@ft_only
def test_subinterpreters_and_threads_on_one_image(settled):
    p = fs.freeze({"vocab": VOCAB})
    want = sum(VOCAB.values())
    sub = Interp()
    try:
        sub.run("""
            total = 0
            for _ in range(3):
                total += sum(obj["vocab"].values())
            reply(total)
            del obj
            gc.collect()
        """, shared={"obj": p})
        # the main interpreter's threads read it meanwhile
        assert in_threads(lambda t: sum(p["vocab"].values())) == [want] * THREADS
        assert sub.recv() == 3 * want
    finally:
        sub.destroy()
    del p
