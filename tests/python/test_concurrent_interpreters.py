"""Proxies through Python 3.14's public subinterpreter API
(concurrent.interpreters, InterpreterPoolExecutor), pickling by value, and
3.15's builtin frozendict (PEP 814).

How the 3.14 runtime moves objects (checked here, relied on by README.md):
every channel below (Queue.put, the positional arguments and the return
value of Interpreter.call, hence InterpreterPoolExecutor.submit) converts an
object with cross-interpreter data (XID) first and falls back to pickle only
for objects that are not shareable. A proxy is shareable (its type is
registered in every interpreter), and so is a tuple of shareable items: both
travel by reference -- the receiver gets a proxy of the SAME region, and no
new region appears. A proxy inside a list or dict, or passed as a keyword
argument (the kwargs dict is not shareable), is pickled with its container:
it arrives by value, as a proxy of a NEW region with an equal value. The same
happens between processes (ProcessPoolExecutor, multiprocessing).

By-reference evidence: _ci_workers.where() (kind, region id, offset in the
image, image size) is the same on both sides, fs.stats()['live_regions'] does
not grow, and the receiver's type is the proxy type. A pickled copy is
refrozen: its region id differs and live_regions grows while it lives.

XID frees run late, as a pending call of the *sending* interpreter (see
_fshelpers.poke_interpreters): a region returned by an idle interpreter
stays counted until that interpreter runs bytecode again or is closed.
"""
import builtins
import gc
import pickle
import re
import sys

import pytest

if sys.version_info < (3, 14):
    pytest.skip("concurrent.interpreters is Python 3.14+", allow_module_level=True)
ci = pytest.importorskip("concurrent.interpreters")

import multiprocessing  # noqa: E402
from concurrent.futures import InterpreterPoolExecutor, ProcessPoolExecutor  # noqa: E402
from concurrent.interpreters import _queues  # noqa: E402

import _ci_workers as W  # noqa: E402
import frozenshare as fs  # noqa: E402
from _fshelpers import readme_examples as _readme_examples  # noqa: E402
from _fshelpers import (assert_same_plain, hashables_nonan, live_regions,  # noqa: E402
                        run_python, track_interpreter, wait_live)
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

where = W.where

FROZENDICT = getattr(builtins, "frozendict", None)
needs_frozendict = pytest.mark.skipif(FROZENDICT is None,
                                      reason="no builtin frozendict (PEP 814, Python 3.15+)")

SOURCES = {
    "FrozenMap": {"rows": [{"id": i, "name": f"n{i}\u20ac"} for i in range(50)],
                  "meta": {"v": 3, "t": (1, "x")}},
    "FrozenList": [1, "two", [3.5, None], {"k": b"v"}],
    "FrozenTuple": (1, ("nested", 2**70), frozenset({4})),
    "FrozenSet": {1, "a", (2, 3)},
    "FrozenBytes": b"\x00\xffpayload" * 100,
    "FrozenValue": "a large frozen str \U0001f600 " * 50,
}


def use_sys_path(paths):
    """Executor initializer: a new interpreter starts with the process's
    initial sys.path, without what pytest and conftest added at run time.
    Stateless (no globals), so 3.14 ships it as code, not by import."""
    import sys
    sys.path[:] = paths


@pytest.fixture
def subinterps():
    """subinterps(n) -> n new concurrent.interpreters interpreters that can
    import _ci_workers, tracked for poke_interpreters, closed at teardown."""
    made = []

    def make(n=1):
        new = []
        for _ in range(n):
            it = track_interpreter(ci.create())
            made.append(it)
            it.call(use_sys_path, list(sys.path))
            new.append(it)
        return new

    yield make
    for it in made:
        try:
            it.close()
        except ci.InterpreterNotFoundError:   # the test closed it already
            pass


def pool(n=1):
    return InterpreterPoolExecutor(n, initializer=use_sys_path, initargs=(list(sys.path),))


def same_value(a, b):
    return a.value == b.value if type(a).__name__ == "FrozenValue" else a == b


# ------------------------------------------------------ queues: by reference ---

@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_queue_round_trip_is_by_reference(subinterps, kind):
    src = SOURCES[kind]
    p = fs.freeze(src)
    assert type(p).__name__ == kind and ci.is_shareable(p)
    before = live_regions()
    inbox, outbox = ci.create_queue(), ci.create_queue()
    (it,) = subinterps(1)
    inbox.put(p)
    seen = it.call(W.relay, inbox, outbox)
    # In the subinterpreter: the same region, no new one, and it was counted
    # there (main's handle + the receiver's) while it held the proxy.
    assert seen[:4] == where(p)
    assert seen[4] == before
    assert seen[5] >= 2
    back = outbox.get(timeout=60)
    assert type(back) is type(p)
    assert where(back) == where(p)
    assert live_regions() == before
    assert same_value(back, p)
    assert_same_plain(fs.thaw(back), src)


def test_queue_proxy_kept_in_subinterpreter_outlives_sender(subinterps):
    start = live_regions()
    q = ci.create_queue()
    (it,) = subinterps(1)
    it.prepare_main(q=q)
    p = fs.freeze({"k": [1, 2, 3]})
    rid = fs.info(p)["region_id"]
    q.put(p)
    it.exec("import frozenshare as fs\nkept = q.get(timeout=60)['k']\n"
            "assert fs.info(kept)['region_id'] == %d" % rid)
    del p
    gc.collect()
    assert live_regions() == start + 1          # `kept` in the subinterpreter
    it.exec("assert list(kept) == [1, 2, 3]\ndel kept")
    wait_live(start)


def test_queue_items_of_a_closed_interpreter_are_released(subinterps):
    start = live_regions()
    q = ci.create_queue()               # default unbounditems: UNBOUND
    (it,) = subinterps(1)
    it.prepare_main(q=q)
    it.exec("import frozenshare as fs\n"
            "q.put(fs.freeze({'made': [1, 2]}))\nq.put(fs.freeze([b'x' * 1000]))")
    assert live_regions() == start + 2
    first = q.get(timeout=60)
    assert type(first).__name__ == "FrozenMap" and first == {"made": [1, 2]}
    it.close()                          # the second item loses its interpreter
    assert q.get(timeout=60) is _queues.UNBOUND
    assert live_regions() == start + 1  # ... and its region with it
    del first
    wait_live(start)


# ------------------------------------------------- Interpreter.call -----------

def test_call_arguments_travel_by_reference(subinterps):
    p = fs.freeze(SOURCES["FrozenMap"])
    rows = p["rows"]
    before = live_regions()
    (it,) = subinterps(1)
    d = it.call(W.describe, p)
    assert d[:4] == where(p) and d[4] == before
    # a tuple of shareables is shareable: its proxies go by reference too
    assert [x[:4] for x in it.call(W.describe_all, (p, rows))] == [where(p), where(rows)]
    assert it.call(W.sum_ids, rows) == sum(range(50))
    assert live_regions() == before


def test_call_results_travel_by_reference(subinterps):
    start = live_regions()
    p = fs.freeze(SOURCES["FrozenList"])
    (it,) = subinterps(1)
    r = it.call(W.identity, p)
    assert type(r) is type(p) and where(r) == where(p) and r == p
    a, b = it.call(W.pair, p)
    assert where(a) == where(b) == where(p)
    assert live_regions() == start + 1
    # a region born in the subinterpreter comes back by reference as well
    made, made_where = it.call(W.make, 100)
    assert type(made).__name__ == "FrozenMap" and where(made) == made_where
    assert made["rows"][99] == {"id": 99}
    assert live_regions() == start + 2
    del p, r, a, b, made
    wait_live(start)                    # poke_interpreters runs the late frees


def test_call_pickles_kwargs_and_containers_by_value(subinterps):
    """Documented behaviour (README.md): what is not shareable is pickled,
    and a pickled proxy is a copy by value in a new region."""
    p = fs.freeze({"k": (1, 2), "s": "v"})
    rid = fs.info(p)["region_id"]
    before = live_regions()
    (it,) = subinterps(1)
    kw = it.call(W.describe_kw, p=p)
    assert kw[0] == "FrozenMap" and kw[1] != rid and kw[4] == before + 1
    (in_list,) = it.call(W.describe_all, [p])
    assert in_list[0] == "FrozenMap" and in_list[1] != rid
    (back,) = it.call(W.in_list, p)
    assert type(back) is type(p) and back == p
    assert fs.info(back)["region_id"] != rid
    assert live_regions() == before + 1
    del back
    wait_live(before)


def test_call_in_two_interpreters_reads_one_region(subinterps):
    p = fs.freeze([{"id": i} for i in range(10_000)])
    before = live_regions()
    a, b = subinterps(2)
    ta = a.call_in_thread(W.sum_ids, p)
    tb = b.call_in_thread(W.sum_ids, p)
    ta.join(60)
    tb.join(60)
    assert not ta.is_alive() and not tb.is_alive()
    assert [a.call(W.describe, p)[:4], b.call(W.describe, p)[:4]] == [where(p)] * 2
    assert live_regions() == before


# --------------------------------------------- InterpreterPoolExecutor --------

def test_pool_arguments_and_results_by_reference():
    start = live_regions()
    p = fs.freeze(SOURCES["FrozenMap"])
    t = fs.freeze(SOURCES["FrozenTuple"])
    with pool(2) as ex:
        d = ex.submit(W.describe, p).result(60)
        assert d[:4] == where(p) and d[4] == start + 2
        assert [x[:4] for x in ex.map(W.describe, [p, t, p["rows"]], timeout=60)] == \
            [where(p), where(t), where(p["rows"])]
        assert ex.submit(W.sum_ids, p["rows"]).result(60) == sum(range(50))
        r = ex.submit(W.identity, p).result(60)
        assert type(r) is type(p) and where(r) == where(p)
        made, made_where = ex.submit(W.make, 10).result(60)
        assert where(made) == made_where and live_regions() == start + 3
        # the documented exception: keyword arguments are pickled (by value)
        kw = ex.submit(W.describe_kw, p=p).result(60)
        assert kw[0] == "FrozenMap" and kw[1] != fs.info(p)["region_id"]
        assert live_regions() == start + 3
    del p, t, r, made
    wait_live(start)                    # shutdown closed the workers: frees ran


# ---------------------------------------------------------- README.md -------

README_SECTION = "### Python 3.14+"


def readme_examples():
    """The ```python blocks of README.md's 3.14+ section."""
    return _readme_examples(README_SECTION)


def expected_output(code):
    """What an example says it prints, in order: `print(...)  # 42; why`
    gives "42", a comment line `# [...]` gives "[...]"."""
    out = []
    for line in code.splitlines():
        m = re.match(r"\s*print\(.*\)\s*#\s*([^;:]+?)(?:[;:].*)?$", line)
        if m:
            out.append(m.group(1).strip())
            continue
        m = re.match(r"\s*#\s*(\[.*\])\s*$", line)
        if m:
            out.append(m.group(1))
    return out


def test_readme_examples_run_verbatim():
    examples = readme_examples()
    if not examples:
        pytest.skip("README.md or its 3.14+ section is not beside the tests")
    assert len(examples) == 2
    for code in examples:
        want = expected_output(code)
        assert want, code
        r = run_python(code, timeout=300)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split("\n")[:-1] == want, (r.stdout, want)


# ------------------------------------------------------- pickle: by value ----

@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_pickle_round_trip_is_by_value(kind):
    src = SOURCES[kind]
    p = fs.freeze(src)
    before = live_regions()
    for proto in (2, pickle.HIGHEST_PROTOCOL):
        q = pickle.loads(pickle.dumps(p, proto))
        assert type(q) is type(p)
        assert same_value(q, p)
        assert fs.info(q)["region_id"] != fs.info(p)["region_id"]
        assert live_regions() == before + 1
        assert_same_plain(fs.thaw(q), src)
        del q
        wait_live(before)


def test_process_pool_round_trip_is_by_value():
    start = live_regions()
    p = fs.freeze(SOURCES["FrozenMap"])
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as ex:
        kind, frozen, thawed, back = ex.submit(W.roundtrip, p).result(120)
    assert (kind, frozen) == ("FrozenMap", True)
    assert_same_plain(thawed, SOURCES["FrozenMap"])
    assert type(back) is type(p) and back == p
    assert fs.info(back)["region_id"] != fs.info(p)["region_id"]
    del p, back
    wait_live(start)


# ------------------------------------------------- frozendict (3.15+) --------

@needs_frozendict
def test_frozendict_freezes_to_frozenmap_equal_and_hash_equal():
    fd = FROZENDICT(a=1, b=(2, "x"), c=FROZENDICT(d=frozenset({3})))
    f = fs.freeze(fd)
    assert type(f).__name__ == "FrozenMap"
    assert type(f["c"]).__name__ == "FrozenMap"
    assert f == fd and fd == f and not (f != fd) and not (fd != f)
    assert hash(f) == hash(fd)
    assert hash(f["c"]) == hash(fd["c"])
    assert {fd: "v"}[f] == "v" and {f: "v"}[fd] == "v"
    for other in (FROZENDICT(a=1, b=(2, "x")),
                  FROZENDICT(a=1, b=(2, "y"), c=FROZENDICT(d=frozenset({3}))),
                  FROZENDICT(a=1, b=(2, "x"), c=FROZENDICT(d=frozenset({3})), e=0)):
        assert f != other and other != f and not (f == other) and not (other == f)
    # the same value frozen from a dict is the same mapping
    g = fs.freeze({"a": 1, "b": (2, "x"), "c": {"d": frozenset({3})}})
    assert g == fd and fd == g and hash(g) == hash(fd)
    assert hash(fs.freeze(FROZENDICT())) == hash(FROZENDICT())


@needs_frozendict
def test_frozendict_with_unhashable_value_is_unhashable_frozen_too():
    fd = FROZENDICT(a=[1, 2])
    with pytest.raises(TypeError):
        hash(fd)
    f = fs.freeze(fd)
    assert f == fd and fd == f
    with pytest.raises(TypeError):
        hash(f)


@needs_frozendict
def test_thaw_restores_frozendict_and_dict():
    shared = FROZENDICT(s=1)
    src = {"plain": {"x": 1}, "fd": FROZENDICT(y=2, z={"inner": 3}),
           "list": [FROZENDICT(w=4), {"v": 5}], "tuple": (FROZENDICT(),),
           "a": shared, "b": shared}
    t = fs.thaw(fs.freeze(src))
    assert type(t) is dict and t == src
    assert type(t["plain"]) is dict
    assert type(t["fd"]) is FROZENDICT and type(t["fd"]["z"]) is dict
    assert [type(x) for x in t["list"]] == [FROZENDICT, dict]
    assert type(t["tuple"][0]) is FROZENDICT
    assert t["a"] is t["b"]             # sharing restored
    root = fs.thaw(fs.freeze(FROZENDICT(k=[1])))
    assert type(root) is FROZENDICT and root == {"k": [1]}
    # pickle carries the thawed value, so the source type survives it too
    assert type(fs.thaw(pickle.loads(pickle.dumps(fs.freeze(shared))))) is FROZENDICT


@needs_frozendict
@given(st.dictionaries(hashables_nonan, hashables_nonan, max_size=8))
def test_frozendict_equality_and_hash_match_generated(d):
    fd = FROZENDICT(d)
    f = fs.freeze(fd)
    assert f == fd and fd == f
    assert hash(f) == hash(fd)
    t = fs.thaw(f)
    assert type(t) is FROZENDICT and t == fd


# ------------------------------- the sender closed before the data's free ---
#
# CPython frees an XID data in the interpreter that made it, as a pending
# call (_Py_CallInInterpreter), and never once that interpreter is gone
# (_xidata_release returns early when its id does not resolve). xid.c moves
# the data's count to the receiver at new_object: a lost free costs 24 bytes,
# never a region (see its header comment).

def test_call_result_then_close_at_once_leaks_nothing(subinterps):
    """The result of Interpreter.call is released from the caller: a pending
    call of the idle subinterpreter, which is closed before it runs any more
    bytecode."""
    start = live_regions()
    (it,) = subinterps(1)
    made, made_where = it.call(W.make, 100)
    assert where(made) == made_where
    it.close()
    assert made["rows"][99] == {"id": 99}
    del made
    wait_live(start)


def test_queue_item_received_while_its_sender_closes(subinterps):
    """Deterministic: the sender's at-exit callbacks (run after its last
    _Py_FinishPendingCalls) signal, then sleep in C; the item is received in
    that window, so its release is queued for an interpreter that runs no
    more pending calls. Before xid.c moved the count at new_object the region
    leaked. The sender keeps no Queue object: Queue.__del__ is Python code,
    which would run the pending call during the sender's finalization."""
    import threading
    start = live_regions()
    (it,) = subinterps(1)
    data, ready = ci.create_queue(), ci.create_queue()
    it.exec(f"""if True:
        import atexit, time
        import frozenshare as fs
        from concurrent.interpreters import Queue
        Queue({data.id}).put(fs.freeze({{"late": list(range(50))}}))
        def signal():
            Queue({ready.id}).put("at exit")
        atexit.register(time.sleep, 0.5)             # runs second, in C
        atexit.register(signal)                      # runs first
    """)
    t = threading.Thread(target=it.close)
    t.start()
    assert ready.get(timeout=60) == "at exit"
    got = data.get(timeout=60)
    assert type(got).__name__ == "FrozenMap" and got["late"][49] == 49
    del got
    t.join(60)
    assert not t.is_alive()
    wait_live(start)
