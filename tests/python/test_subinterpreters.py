"""Proxies across own-GIL subinterpreters (DESIGN.md, "Refcounting" /
hand-off via XID; PLATFORM.md for the 3.12, 3.13 and 3.14+ APIs, which
_fshelpers hides behind Interp and Channel).

Every test checks that fs.stats()['live_regions'] comes back to where it
started whatever the drop order: XID data frees run late (a pending call in
the sending interpreter), so counts are polled (wait_live)."""
import gc
import time

import pytest

import frozenshare as fs
from _fshelpers import (PY313, checksum, live_regions, run_in_threads, wait_live,
                        wait_refcount)


def make_data(n=3000):
    return {
        "rows": [{"id": i, "name": f"name-{i}-\xe9\u20ac", "score": i * 0.5,
                  "tags": ("a", "b", i % 7), "blob": bytes([i % 256]) * 16,
                  "big": 2**70 + i, "set": frozenset({i, -i})}
                 for i in range(n)],
        "meta": {"version": 3, "neg0": -0.0, "none": None, "emoji": "\U0001f600"},
        "index": {f"k{i}": i for i in range(n)},
    }


READ_ALL = """
x = chan_get({cid})
assert fs.is_frozen(x), type(x)
sums = [checksum(x) for _ in range({passes})]
assert len(set(sums)) == 1
reply("%d|%d|%s" % (sums[0], fs.info(x)["region_id"], type(x).__name__))
"""


def test_channel_carries_xid_only(channels):
    """What every test here relies on: a Channel never falls back to pickle
    (3.14's queues would by default, and proxies pickle by value), so a
    proxy that arrives came by reference. A list is picklable but not
    shareable: refused."""
    (c,) = channels(1)
    # NotShareableError: a ValueError up to 3.13, a TypeError from 3.14
    with pytest.raises((ValueError, TypeError), match="cross-interpreter data"):
        c.put([1, 2])
    p = fs.freeze([1, 2])
    c.put(p)
    got = c.get()
    assert fs.is_frozen(got) and fs.info(got)["region_id"] == fs.info(p)["region_id"]
    assert c.try_get() == (False, None)


def test_send_to_two_interpreters_reading_concurrently(interps, channels):
    start = live_regions()
    src = make_data()
    expected = checksum(src)
    p = fs.freeze(src)
    assert checksum(p) == expected
    rid = fs.info(p)["region_id"]
    a, b = interps(2)
    ca, cb = channels(2)
    ca.put(p)
    cb.put(p)
    run_in = [(a, READ_ALL.format(cid=ca.id, passes=3)), (b, READ_ALL.format(cid=cb.id, passes=3))]
    run_in_threads(run_in)
    for it in (a, b):
        assert it.recv() == f"{expected}|{rid}|FrozenMap"
    # both receivers still hold their proxies: the region is alive
    del p
    gc.collect()
    assert live_regions() == start + 1
    for it in (a, b):
        it.run("del x; gc.collect()")
    wait_live(start)


def test_received_object_is_same_region_not_a_copy(interps, channels):
    p = fs.freeze({"payload": b"z" * 2_000_000, "n": 5})
    info = fs.info(p)
    (a,) = interps(1)
    (c,) = channels(1)
    bytes_before = fs.stats()["image_bytes"]
    c.put(p)
    a.run(f"""
        x = chan_get({c.id})
        info = fs.info(x)
        reply("%d|%d|%d" % (info["region_id"], info["image_bytes"], x["n"]))
        reply(fs.stats()["image_bytes"])
        v = x.view("payload")
        reply(bytes(v[:4]))
    """)
    assert a.recv() == f"{info['region_id']}|{info['image_bytes']}|5"
    assert a.recv() == bytes_before          # no new image anywhere in the process
    assert a.recv() == b"zzzz"
    a.run("del x, v, info; gc.collect()")


def test_shared_argument_run_string(interps):
    start = live_regions()
    p = fs.freeze({"k": [1, 2, 3], "s": "shared"})
    rid = fs.info(p)["region_id"]
    (a,) = interps(1)
    a.run("""
        assert fs.is_frozen(obj) and type(obj).__name__ == "FrozenMap"
        assert obj["k"] == [1, 2, 3] and obj["s"] == "shared"
        reply(fs.info(obj)["region_id"])
        kept = obj["k"]
        del obj
    """, shared={"obj": p})
    assert a.recv() == rid
    del p
    gc.collect()
    assert live_regions() == start + 1         # `kept` in the subinterpreter
    a.run("assert list(kept) == [1, 2, 3]; del kept; gc.collect()")
    wait_live(start)


@pytest.mark.parametrize("kind", ["list", "tuple", "set", "bytes", "value", "nested"])
def test_every_proxy_type_crosses(interps, channels, kind):
    start = live_regions()
    srcs = {"list": [1, [2]], "tuple": (1, ("x",)), "set": frozenset({1, 2}),
            "bytes": b"raw bytes", "value": "a frozen str value", "nested": None}
    if kind == "nested":
        root = fs.freeze({"inner": [1, {"deep": (2, 3)}]})
        p = root["inner"][1]
        expected_src = {"deep": (2, 3)}
    else:
        p = fs.freeze(srcs[kind])
        expected_src = srcs[kind]
    (a,) = interps(1)
    (c,) = channels(1)
    c.put(p)
    a.run(f"""
        x = chan_get({c.id})
        reply(type(x).__name__)
        reply(repr(fs.thaw(x)))
        reply(fs.info(x)["region_id"])
        del x; gc.collect()
    """)
    assert a.recv() == type(p).__name__
    assert a.recv() == repr(expected_src)
    assert a.recv() == fs.info(p)["region_id"]
    del p
    if kind == "nested":
        del root
    wait_live(start)


def test_drop_sender_first(interps, channels):
    start = live_regions()
    (a,) = interps(1)
    (c,) = channels(1)
    p = fs.freeze(make_data(200))
    expected = checksum(p)
    c.put(p)
    del p
    gc.collect()
    assert live_regions() == start + 1          # held by the queued item
    a.run(f"""
        x = chan_get({c.id})
        reply(checksum(x))
        del x; gc.collect()
    """)
    assert a.recv() == expected
    wait_live(start)


def test_drop_receiver_first(interps, channels):
    start = live_regions()
    (a,) = interps(1)
    (c,) = channels(1)
    p = fs.freeze(make_data(200))
    c.put(p)
    a.run(f"x = chan_get({c.id}); y = x['rows'][5]; it = iter(x['rows'])")
    a.run("del x, y, it; gc.collect()")
    wait_live(start + 1)                        # main's p still holds it
    assert p["rows"][5]["id"] == 5
    del p
    wait_live(start)


def test_interpreter_destroyed_while_holding_proxies(interps, channels):
    start = live_regions()
    (a,) = interps(1)
    (c,) = channels(1)
    p = fs.freeze({"rows": [{"b": b"bytes" * 10}] * 3, "n": 1})
    c.put(p)
    a.run(f"""
        x = chan_get({c.id})
        keep = [x, x["rows"], x["rows"][0], iter(x["rows"]), x.keys(), x.items()]
        v = x["rows"][0].view("b")
        cycle = [keep]
        cycle.append(cycle)
    """)
    del p
    gc.collect()
    assert live_regions() == start + 1
    a.destroy()
    wait_live(start)


def test_items_still_queued_when_sender_destroyed(interps, channels):
    """A subinterpreter freezes, queues its proxies and is destroyed before
    anyone reads them: the queued items go away (3.13+ queues are made with
    unboundop=remove; 3.12 channels drop a destroyed interpreter's items) and
    so do the regions."""
    start = live_regions()
    (a,) = interps(1)
    (c,) = channels(1)
    a.run(f"""
        for i in range(5):
            chan_put({c.id}, fs.freeze({{"i": i, "data": list(range(100))}}))
        mine = fs.freeze([1, 2, 3])
    """)
    wait_live(start + 6)
    a.destroy()
    wait_live(start)
    try:
        ok, obj = c.try_get()
    except Exception as e:                       # 3.12 closes a channel whose only
        assert type(e).__name__ == "ChannelClosedError"   # user was destroyed
        ok, obj = False, None
    assert not ok or not fs.is_frozen(obj)       # nothing readable was left behind


def test_items_still_queued_when_receiver_destroyed(interps, channels):
    start = live_regions()
    (a,) = interps(1)
    (c,) = channels(1)
    for i in range(5):
        c.put(fs.freeze({"i": i}))
    gc.collect()
    assert live_regions() == start + 5           # the queue holds them
    a.run(f"x = chan_get({c.id}); assert x['i'] == 0")
    a.destroy()                                  # never read the other 4
    wait_live(start + 4)
    got = c.get()
    assert fs.is_frozen(got) and got["i"] == 1   # still readable by main
    del got
    c.destroy()                                  # frees the last 3
    wait_live(start)


def test_queue_destroyed_with_items(channels):
    start = live_regions()
    (c,) = channels(1)
    p = fs.freeze(["queued"])
    for _ in range(10):
        c.put(p)
    del p
    gc.collect()
    assert live_regions() == start + 1
    c.destroy()
    wait_live(start)


def test_freeze_in_subinterpreter_send_to_main(interps, channels):
    start = live_regions()
    (a,) = interps(1)
    (c,) = channels(1)
    a.run(f"""
        src = {{"made": "in a subinterpreter", "nums": list(range(1000)), "t": (1.5, b"b")}}
        made = fs.freeze(src)
        chan_put({c.id}, made)
        reply("%d|%d" % (fs.info(made)["region_id"], checksum(src)))
    """)
    rid, cs = a.recv().split("|")
    got = c.get()
    assert fs.is_frozen(got)
    assert fs.info(got)["region_id"] == int(rid)
    assert checksum(got) == int(cs)
    assert fs.thaw(got) == {"made": "in a subinterpreter", "nums": list(range(1000)),
                            "t": (1.5, b"b")}
    # the creator goes away; main's proxy keeps the region
    a.run("del made; gc.collect()")
    a.destroy()
    gc.collect()
    assert live_regions() == start + 1
    assert got["nums"][999] == 999
    del got
    wait_live(start)


def test_proxy_from_subinterpreter_embedded_in_main_freeze(interps, channels):
    """A region made by a subinterpreter becomes an import of a region made in
    main; it outlives its creator and both go when main drops the outer one."""
    start = live_regions()
    (a,) = interps(1)
    (c,) = channels(1)
    a.run(f"m = fs.freeze({{'from_sub': list(range(10))}}); chan_put({c.id}, m)")
    got = c.get()
    outer = fs.freeze({"emb": got, "x": 1})
    info = fs.info(outer)
    assert info["imports"] == 1
    assert list(info["import_ids"]) == [fs.info(got)["region_id"]]
    a.run("del m; gc.collect()")
    a.destroy()
    del got
    gc.collect()
    assert live_regions() == start + 2
    assert outer["emb"]["from_sub"][9] == 9
    del outer
    wait_live(start)


def test_allocation_failure_while_receiving(interps, channels):
    """_fail_alloc_after(n) while a subinterpreter receives a proxy: either
    it arrives intact or the receive raises MemoryError; counts balance."""
    import frozenshare._frozenshare as ext
    start = live_regions()
    (a,) = interps(1)
    (c,) = channels(1)
    p = fs.freeze({"k": [1, 2]})
    seen = set()
    for n in range(6):
        c.put(p)
        ext._fail_alloc_after(n)
        try:
            a.run(f"""
                try:
                    x = chan_get({c.id}, timeout=10)
                    r = "ok %r" % (x["k"][1],)
                    del x
                except MemoryError:
                    r = "MemoryError"
            """)
        finally:
            ext._fail_alloc_after(-1)
        a.run("reply(r)")
        r = a.recv()
        assert r in ("ok 2", "MemoryError"), r
        seen.add(r)
    assert "ok 2" in seen
    a.run("gc.collect()")
    del p
    wait_live(start)


def test_handle_is_biased_per_interpreter(interps, channels):
    """Many proxies of one region in one interpreter hold ONE count
    (DESIGN "Biased per interpreter")."""
    p = fs.freeze({"k": [1, 2, 3]})
    base = fs.info(p)["refcount"]
    (a,) = interps(1)
    (c,) = channels(1)
    for _ in range(20):
        c.put(p)
    a.run(f"got = [chan_get({c.id}) for _ in range(20)]; subs = [g['k'] for g in got]")
    wait_refcount(p, base + 1)
    a.run("del got, subs; gc.collect()")
    wait_refcount(p, base)
    # the same in main: more proxies, no more counts
    extra = [p["k"] for _ in range(100)] + [fs.freeze(p) for _ in range(5)]
    assert fs.info(p)["refcount"] == base
    del extra


def test_round_trip_back_to_main_is_same_region(interps, channels):
    start = live_regions()
    (a,) = interps(1)
    cin, cout = channels(2)
    p = fs.freeze({"ping": [1, 2]})
    cin.put(p)
    a.run(f"x = chan_get({cin.id}); chan_put({cout.id}, x['ping']); del x; gc.collect()")
    back = cout.get()
    assert fs.is_frozen(back) and back == [1, 2]
    assert fs.info(back)["region_id"] == fs.info(p)["region_id"]
    del p, back
    wait_live(start)


def test_concurrent_handoff_stress(interps, channels):
    """Two interpreters exchange proxies of several regions in a loop while
    main also creates and drops proxies; counts balance at the end."""
    start = live_regions()
    a, b = interps(2)
    ab, ba, ca, cb = channels(4)
    regions = [fs.freeze({"i": i, "l": list(range(i * 10))}) for i in range(4)]
    for i in range(4):
        ca.put(regions[i])
        cb.put(regions[i])
    code = """
        mine = [chan_get({inbox}) for _ in range(4)]
        total = 0
        for step in range(300):
            r = mine[step % 4]
            chan_put({out}, r["l"] if step % 2 else r)
            other = chan_get({other_in})
            total += len(other)
        del mine, r, other
        gc.collect()
        reply(total)
    """
    run_in_threads([
        (a, code.format(inbox=ca.id, out=ab.id, other_in=ba.id)),
        (b, code.format(inbox=cb.id, out=ba.id, other_in=ab.id)),
    ])
    ta, tb = a.recv(), b.recv()
    assert ta == tb and ta > 0
    del regions
    wait_live(start)


@pytest.mark.skipif(not PY313, reason="set___main___attrs is 3.13+")
def test_set_main_attrs_313(interps):
    import _interpreters
    start = live_regions()
    (a,) = interps(1)
    p = fs.freeze(("attr", 1))
    _interpreters.set___main___attrs(a.id, {"attr": p})
    a.run("assert attr == ('attr', 1) and fs.is_frozen(attr); reply(fs.info(attr)['region_id'])")
    assert a.recv() == fs.info(p)["region_id"]
    del p
    a.run("del attr; gc.collect()")
    wait_live(start)


# ---- the sender is destroyed before its data is released (bindings/xid.c) ----
#
# CPython frees an XID data in the interpreter that made it, and never if that
# interpreter is gone: _PyCrossInterpreterData_Release (3.12) and
# _xidata_release (3.13, 3.14+) return early when the owner's id no longer
# resolves, and 3.13+ queue the free as a pending call of the owner, lost if
# it is deleted first. xid.c moves the data's count to the receiver at
# new_object, so a lost free costs 24 bytes, never a region.

def _destroy_in_thread(interp):
    import threading
    errors = []

    def target():
        try:
            interp.destroy()
        except BaseException as e:  # noqa: BLE001 - re-raised by join()
            errors.append(e)

    t = threading.Thread(target=target)
    t.start()

    def join():
        t.join(60)
        assert not t.is_alive(), "destroy did not finish"
        if errors:
            raise errors[0]
    return join


def test_item_received_while_its_sender_is_being_destroyed(interps, channels):
    """Deterministic: the sender's at-exit callbacks (after its last
    _Py_FinishPendingCalls) signal, then sleep in C; main receives the item
    then, so the release targets an interpreter that will run no more
    pending calls (3.13+) -- the region leaked before xid.c moved the count
    at new_object."""
    start = live_regions()
    (a,) = interps(1)
    data, ready = channels(2)
    a.run(f"""
        import atexit
        chan_put({data.id}, fs.freeze({{"late": list(range(50))}}))
        atexit.register(time.sleep, 0.5)                   # runs second, in C
        atexit.register(chan_put, {ready.id}, "at exit")   # runs first
    """)
    wait_live(start + 1)
    join = _destroy_in_thread(a)
    assert ready.get() == "at exit"
    got = data.get()
    assert fs.is_frozen(got) and got["late"][49] == 49
    del got
    join()
    wait_live(start)


def test_receive_racing_sender_destroy_leaks_nothing(interps, channels):
    """Statistical: a main-interpreter thread receives while the sender is
    destroyed. Before xid.c moved the count at new_object, 3.12 and 3.13
    leaked a region in most rounds (items popped before the sender's at-exit
    clearing but released after it was gone)."""
    import threading
    start = live_regions()
    for rnd in range(4):
        (a,) = interps(1)
        (c,) = channels(1)
        a.run(f"for i in range(300): chan_put({c.id}, fs.freeze([i]))")
        stop = threading.Event()

        def reader():
            while True:
                try:
                    ok, obj = c.try_get()
                except Exception:    # noqa: BLE001 - 3.12 closes the channel
                    return
                if not ok:
                    if stop.is_set():
                        return
                    continue
                assert fs.is_frozen(obj)
                del obj
                time.sleep(0.0002)   # the destroy lands mid-stream

        t = threading.Thread(target=reader)
        t.start()
        time.sleep(0.002 * rnd)
        a.destroy()
        stop.set()
        t.join(60)
        c.destroy()
        wait_live(start)


def test_shared_namespace_from_a_subinterpreter_then_sender_destroyed(interps):
    """run_string(shared=) / exec(shared=) / set___main___attrs driven by a
    subinterpreter: the data is released by its sender before the call
    returns, so destroying the sender afterwards leaves only the receiver's
    count."""
    start = live_regions()
    a, b = interps(2)
    a.run(f"""
        import sys
        p = fs.freeze({{"from": "a", "n": list(range(20))}})
        if sys.version_info >= (3, 13):
            import _interpreters
            _interpreters.set___main___attrs({b.id}, {{"p1": p}})
            exc = _interpreters.exec({b.id}, "p2 = p1", shared={{"p3": p}})
            assert exc is None, exc
        else:
            import _xxsubinterpreters
            _xxsubinterpreters.run_string({b.id}, "p1 = p2 = p3", shared={{"p3": p}})
        reply(fs.info(p)["region_id"])
        del p
        gc.collect()
    """)
    rid = a.recv()
    a.destroy()
    b.run(f"""
        assert p1 == p3 and fs.is_frozen(p1) and fs.info(p1)["region_id"] == {rid}
        assert p1["n"][19] == 19
    """)
    wait_live(start + 1)
    b.run("del p1, p2, p3; gc.collect()")
    wait_live(start)
