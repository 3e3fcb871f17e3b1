"""Shared helpers for the frozenshare pytest suites (not a test module).

What is here:
  * buffer_address(): the raw pointer behind a read-only buffer (ctypes)
  * region accounting: live_regions(), wait_live()
  * value comparison: same_plain() (exact types, NaN-aware, sign of -0.0),
    assert_mirror() (a proxy against the plain value it was frozen from),
    fresh_copy() (a structural copy whose floats/complexes are new objects:
    it behaves like a proxy under ==, `in`, index(), which all meet
    identity shortcuts -- NaN is equal to itself only by identity),
    hashable_form() (a plain value whose hash the contract says the proxy
    must have)
  * hypothesis strategies for generated nested data
  * run_python(): a child process with the same frozenshare on its path
  * subinterpreters: Interp, Channel, run_in_threads(), poke_interpreters(),
    one abstraction over 3.12 (_xxsubinterpreters/_xxinterpchannels), 3.13
    (_interpreters/_interpqueues) and 3.14+ (concurrent.interpreters);
    track_interpreter() for interpreters a test makes with
    concurrent.interpreters directly
"""
import ctypes
import gc
import math
import os
import resource
import struct
import subprocess
import sys
import textwrap
import threading
import time
import weakref

import frozenshare as fs
import pytest
from hypothesis import strategies as st

PY313 = sys.version_info >= (3, 13)
PY314 = sys.version_info >= (3, 14)

# ---------------------------------------------------------------- buffers ---


class Py_buffer(ctypes.Structure):
    """CPython's Py_buffer, for PyObject_GetBuffer through ctypes
    (ctypes.c_char.from_buffer refuses read-only buffers)."""
    _fields_ = [("buf", ctypes.c_void_p), ("obj", ctypes.c_void_p),
                ("len", ctypes.c_ssize_t), ("itemsize", ctypes.c_ssize_t),
                ("readonly", ctypes.c_int), ("ndim", ctypes.c_int),
                ("format", ctypes.c_char_p), ("shape", ctypes.c_void_p),
                ("strides", ctypes.c_void_p), ("suboffsets", ctypes.c_void_p),
                ("internal", ctypes.c_void_p)]


_GetBuffer = ctypes.pythonapi.PyObject_GetBuffer
_GetBuffer.argtypes = [ctypes.py_object, ctypes.POINTER(Py_buffer), ctypes.c_int]
_GetBuffer.restype = ctypes.c_int
_ReleaseBuffer = ctypes.pythonapi.PyBuffer_Release
_ReleaseBuffer.argtypes = [ctypes.POINTER(Py_buffer)]
_ReleaseBuffer.restype = None


def buffer_address(obj):
    """(buf pointer, length) of obj's read-only PyBUF_SIMPLE buffer."""
    b = Py_buffer()
    assert _GetBuffer(obj, ctypes.byref(b), 0) == 0
    try:
        return b.buf, b.len
    finally:
        _ReleaseBuffer(ctypes.byref(b))


# ---------------------------------------------------------------- regions ---


_ALIVE = weakref.WeakSet()   # Interp objects not yet destroyed
_ALIVE_CI = weakref.WeakSet()   # concurrent.interpreters.Interpreter objects (3.14+)


def live_regions():
    return fs.stats()["live_regions"]


def image_bytes_total():
    return fs.stats()["image_bytes"]


def poke_interpreters():
    """Run a little bytecode in every live subinterpreter made by Interp
    or passed to track_interpreter().

    An XID free callback runs late, as a pending call of the *sending*
    interpreter (PLATFORM.md): pending calls only run while that interpreter
    executes bytecode (or when it is destroyed). An idle sender never frees."""
    for it in list(_ALIVE):
        if it.alive:
            it.run("for _ in range(100): pass")
    if _ALIVE_CI:
        from concurrent.interpreters import InterpreterError
        for it in list(_ALIVE_CI):
            try:
                it.exec("for _ in range(100): pass")
            except InterpreterError:   # closed, or busy in another thread
                pass


def track_interpreter(interp):
    """Make poke_interpreters() also poke a concurrent.interpreters
    Interpreter (3.14+). Returns interp."""
    _ALIVE_CI.add(interp)
    return interp


def wait_live(expected, timeout=10.0):
    """Poll (gc.collect, poke the subinterpreters, a short sleep) until
    live_regions == expected."""
    deadline = time.monotonic() + timeout
    while True:
        gc.collect()
        poke_interpreters()
        n = live_regions()
        if n == expected:
            return n
        if time.monotonic() > deadline:
            raise AssertionError(
                f"live_regions is {n}, expected {expected} (after {timeout}s of polling)")
        time.sleep(0.01)


def wait_stable(reads=3, timeout=5.0):
    """live_regions once it reads the same `reads` times in a row (late XID
    frees of an earlier test settle first)."""
    deadline = time.monotonic() + timeout
    last, same = None, 0
    while True:
        gc.collect()
        n = live_regions()
        same = same + 1 if n == last else 1
        last = n
        if same >= reads or time.monotonic() > deadline:
            return n
        time.sleep(0.002)


def wait_refcount(proxy, expected, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        gc.collect()
        poke_interpreters()
        n = fs.info(proxy)["refcount"]
        if n == expected:
            return n
        if time.monotonic() > deadline:
            raise AssertionError(f"refcount is {n}, expected {expected}")
        time.sleep(0.01)


# ------------------------------------------------------------- comparison ---

FROZEN_OF = {
    dict: "FrozenMap",
    list: "FrozenList",
    tuple: "FrozenTuple",
    set: "FrozenSet",
    frozenset: "FrozenSet",
}


def tname(x):
    return type(x).__name__


def same_float(a, b):
    if math.isnan(a):
        return math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def same_scalar(a, b):
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return same_float(a, b)
    if type(a) is complex:
        return same_float(a.real, b.real) and same_float(a.imag, b.imag)
    return a == b


def _set_match(xs, ys, pred):
    """Multiset matching of two lists under pred (quadratic; small inputs)."""
    if len(xs) != len(ys):
        return False
    rest = list(ys)
    for x in xs:
        for j, y in enumerate(rest):
            if pred(x, y):
                del rest[j]
                break
        else:
            return False
    return True


def same_plain(a, b):
    """Exact structural equality: same types at every level (list vs tuple,
    set vs frozenset, bytes vs bytearray, bool vs int), NaN == NaN, and
    -0.0 != 0.0. Recursive (test data is shallow)."""
    if type(a) is not type(b):
        return False
    t = type(a)
    if t in (list, tuple):
        return len(a) == len(b) and all(same_plain(x, y) for x, y in zip(a, b))
    if t is dict:
        if len(a) != len(b):
            return False
        return all(same_plain(ka, kb) and same_plain(va, vb)
                   for (ka, va), (kb, vb) in zip(a.items(), b.items()))
    if t in (set, frozenset):
        return _set_match(list(a), list(b), same_plain)
    return same_scalar(a, b)


def assert_same_plain(a, b):
    assert same_plain(a, b), f"not the same plain value:\n  {a!r}\n  {b!r}"


def mirrors(p, x):
    """True if p is what reading the frozen x must give: a proxy of the
    right kind for each container (recursively), the same scalar (exact type,
    NaN-aware, -0.0 kept) otherwise. bytearray reads back as bytes."""
    t = type(x)
    if t in FROZEN_OF:
        if tname(p) != FROZEN_OF[t] or len(p) != len(x):
            return False
        if t is dict:
            return all(mirrors(pk, xk) and mirrors(pv, xv)
                       for (pk, pv), (xk, xv) in zip(p.items(), x.items()))
        if t in (list, tuple):
            return all(mirrors(pe, xe) for pe, xe in zip(p, x))
        return _set_match(list(p), list(x), mirrors)
    if t is bytearray:
        return type(p) is bytes and p == x
    return same_scalar(p, x)


def assert_mirror(p, x):
    assert mirrors(p, x), f"proxy does not mirror the source:\n  {p!r}\n  {x!r}"


def _fresh_float(f):
    return struct.unpack("<d", struct.pack("<d", f))[0]


def fresh_copy(x):
    """A plain structural copy whose floats and complexes are new objects.

    Reading a frozen value materializes new scalar objects, so the
    containers' identity shortcut (`nan in [nan]` is True for the same NaN
    object) never applies to a proxy. fresh_copy(x) gives the plain value
    that behaves the same way, hence is the oracle for ==, in, index, count."""
    t = type(x)
    if t is float:
        return _fresh_float(x)
    if t is complex:
        return complex(_fresh_float(x.real), _fresh_float(x.imag))
    if t is list:
        return [fresh_copy(e) for e in x]
    if t is tuple:
        return tuple(fresh_copy(e) for e in x)
    if t is dict:
        return {fresh_copy(k): fresh_copy(v) for k, v in x.items()}
    if t is set:
        return {fresh_copy(e) for e in x}
    if t is frozenset:
        return frozenset(fresh_copy(e) for e in x)
    return x


def contains_nan(x):
    t = type(x)
    if t is float:
        return math.isnan(x)
    if t is complex:
        return math.isnan(x.real) or math.isnan(x.imag)
    if t is dict:
        return any(contains_nan(k) or contains_nan(v) for k, v in x.items())
    if t in (list, tuple, set, frozenset):
        return any(contains_nan(e) for e in x)
    return False


class Unhashable(Exception):
    pass


def hashable_form(x):
    """The plain value whose hash the contract requires of freeze(x):
    FrozenTuple hashes as the tuple, FrozenSet as the frozenset, FrozenMap as
    frozenset(items()). Raises Unhashable if x holds a list (the hash of a
    FrozenList is not part of the contract)."""
    t = type(x)
    if t is list or t is bytearray:
        raise Unhashable
    if t is tuple:
        return tuple(hashable_form(e) for e in x)
    if t in (set, frozenset):
        return frozenset(hashable_form(e) for e in x)
    if t is dict:
        return frozenset((hashable_form(k), hashable_form(v)) for k, v in x.items())
    return x


def outcome(fn, *args):
    """('ok', value) or ('exc', exception type) -- for differential tests."""
    try:
        return ("ok", fn(*args))
    except Exception as e:  # noqa: BLE001 - the type is what is compared
        return ("exc", type(e))


# ------------------------------------------------------------- strategies ---

EDGE_INTS = [0, 1, -1, 255, 256, -5, 2**15, 2**31 - 1, -2**31, 2**32, 2**53 + 1,
             2**60, 2**61 - 1, -2**61, 2**62 - 1, -2**62, 2**62, 2**63 - 1, 2**63,
             -2**63, -2**63 - 1, 2**64 - 1, 2**64, -2**64, 10**30, -10**30, 10**100,
             2**1000 + 1]

EDGE_FLOATS = [0.0, -0.0, float("nan"), float("inf"), float("-inf"), 5e-324,
               1.7976931348623157e308, 1.0, -1.5, 0.1]

# 1-byte (latin-1), 2-byte (BMP), 4-byte (astral) canonical kinds, lone
# surrogates, and the empty string.
KIND_STRINGS = ["", "a", "ascii text", "caf\xe9", "\xff\xfe", "\u0100", "\u20ac uro",
                "\uffff", "\U0001f600", "\U0010ffff", "mixed \xe9\u20ac\U0001f600",
                "\ud800", "\udfff", "a\udc80b", "\ud83d\ude00"]

SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]

ints = st.one_of(st.integers(), st.sampled_from(EDGE_INTS),
                 st.integers(min_value=-2**200, max_value=2**200))
floats = st.one_of(st.floats(), st.sampled_from(EDGE_FLOATS))
floats_nonan = st.floats(allow_nan=False)
texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(KIND_STRINGS),
    st.lists(st.one_of(st.characters(), st.sampled_from(SURROGATES)), max_size=8).map("".join),
)
complexes = st.complex_numbers(allow_nan=True, allow_infinity=True)

scalars = st.one_of(st.none(), st.booleans(), ints, floats, complexes, texts,
                    st.binary(max_size=24))
scalars_nonan = st.one_of(st.none(), st.booleans(), ints, floats_nonan, texts,
                          st.binary(max_size=24))

# Kept flat (not recursive) on purpose: recursive strategies nested inside
# recursive strategies make hypothesis' generation itself take most of the
# time budget.
def _hashables_from(leaf):
    return st.one_of(
        leaf,
        st.lists(leaf, max_size=3).map(tuple),
        st.frozensets(leaf, max_size=3),
        st.tuples(leaf, st.lists(leaf, max_size=2).map(tuple)),
        st.tuples(st.frozensets(leaf, max_size=2), leaf),
    )


hashables = _hashables_from(scalars)
hashables_nonan = _hashables_from(scalars_nonan)


def _containers(children):
    return st.one_of(
        st.lists(children, max_size=5),
        st.lists(children, max_size=5).map(tuple),
        st.dictionaries(hashables, children, max_size=5),
        st.frozensets(hashables, max_size=5),
        st.sets(hashables, max_size=5),
    )


data = st.recursive(scalars, _containers, max_leaves=16)
dicts = st.dictionaries(hashables, data, max_size=6)
lists = st.lists(data, max_size=6)
tuples = st.lists(data, max_size=6).map(tuple)
frozen_sets = st.one_of(st.frozensets(hashables_nonan, max_size=8),
                        st.sets(hashables_nonan, max_size=8))

# ------------------------------------------------------------- subprocess ---

PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fs.__file__)))


def child_env(extra=None, drop=()):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [PKG_PARENT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop("FROZENSHARE_NO_SIGNAL_HANDLER", None)
    env.pop("PYTHONFAULTHANDLER", None)
    for k in drop:
        env.pop(k, None)
    if extra:
        env.update(extra)
    return env


def _no_core():
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def start_python(code, *, args=(), env=None):
    """Like run_python, but returns the running Popen (text mode, pipes)."""
    return subprocess.Popen(
        [sys.executable, *args, "-c", textwrap.dedent(code)],
        env=child_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_no_core)


# Under scripts/sanitize.sh pyasan every object comes from ASan's allocator
# (PYTHONMALLOC=malloc, quarantined frees): memory sizes measured there say
# nothing about frozenshare, so the tests that measure them skip.
UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")
skip_under_asan = pytest.mark.skipif(UNDER_ASAN, reason="memory sizes mean nothing under ASan")

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "README.md")


def readme_examples(heading):
    """The ```python blocks of README.md's section `heading` (up to the next
    ## or ### heading); [] when the README or the section is not beside the
    tests (an installed copy)."""
    import re
    try:
        with open(README, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    start = text.find(heading)
    if start < 0:
        return []
    ends = [e for e in (text.find("\n## ", start + 1), text.find("\n### ", start + 1)) if e >= 0]
    section = text[start:min(ends)] if ends else text[start:]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def run_script(folder, code, timeout=300):
    """Run code as the script folder/main.py (spawned workers, Dask's among
    them, re-import __main__ from its file). Returns CompletedProcess."""
    script = os.path.join(folder, "main.py")
    with open(script, "w", encoding="utf-8") as f:
        f.write(textwrap.dedent(code))
    return subprocess.run([sys.executable, script], env=child_env(None), capture_output=True,
                          text=True, timeout=timeout, preexec_fn=_no_core)


def run_python(code, *, args=(), env=None, timeout=180):
    """Run code in a fresh `python -c` (no core dumps). Returns CompletedProcess."""
    return subprocess.run(
        [sys.executable, *args, "-c", textwrap.dedent(code)],
        env=child_env(env), capture_output=True, text=True, timeout=timeout,
        preexec_fn=_no_core)


def each_allocation_failing(fn, limit=100_000):
    """Call fn() with frozenshare's n-th internal allocation failing, for n =
    0, 1, 2, ... until it succeeds: every failure must be a MemoryError that
    leaves live regions and image bytes as they were. Returns (fn's result,
    the number of failures)."""
    from frozenshare import _frozenshare as ext
    base = fs.stats()
    failures = 0
    try:
        for n in range(limit):
            ext._fail_alloc_after(n)
            try:
                result = fn()
            except MemoryError:
                ext._fail_alloc_after(-1)
                failures += 1
                now = fs.stats()
                assert now["live_regions"] == base["live_regions"], n
                assert now["image_bytes"] == base["image_bytes"], n
                continue
            ext._fail_alloc_after(-1)
            return result, failures
    finally:
        ext._fail_alloc_after(-1)
    pytest.fail("never succeeded under failing allocations")


# ------------------------------------------------------- subinterpreters ---
#
# One abstraction, Interp and Channel (below), over three generations of
# CPython's subinterpreter modules (PLATFORM.md). What differs per version is
# one _ops_3xx() function and one branch of CHANNEL_CODE (which also runs in
# every subinterpreter); the rest is version-free. On every version:
#   * interpreters are isolated: own GIL, own obmalloc, the multi-phase-init
#     check on extension modules;
#   * channels carry items as cross-interpreter data only (XID, never pickle)
#     and drop the items of an interpreter destroyed before they were read;
#   * ids of both are plain ints, which is how code run in a subinterpreter
#     names them; the handle is what keeps the object alive in main.

class SubinterpError(AssertionError):
    pass


def _ops_312():
    # 3.12: _xxsubinterpreters (run_string raises RunFailedError) and
    # _xxinterpchannels, whose ChannelID object keeps the channel alive.
    import _xxinterpchannels as C
    import _xxsubinterpreters as I

    def interp_create():
        iid = I.create(isolated=True)
        return iid, iid

    def interp_run(iid, code, shared):
        try:
            I.run_string(iid, code, shared=shared)
        except I.RunFailedError as e:
            raise SubinterpError(f"in subinterpreter {iid}: {e}") from None

    def queue_create():
        cid = C.create()
        return int(cid), cid

    return interp_create, interp_run, I.destroy, queue_create, C.destroy


def _ops_313():
    # 3.13: _interpreters (exec returns an excinfo rather than raising) and
    # _interpqueues.create(maxsize, fmt, unboundop): fmt 0 = XID only,
    # unboundop 1 = remove.
    import _interpqueues as Q
    import _interpreters as I

    def interp_create():
        iid = I.create("isolated")
        return iid, iid

    def interp_run(iid, code, shared):
        # 3.13.5 refuses shared=None (3.13.0 took it): no values is {}
        exc = I.exec(iid, code, shared=shared if shared is not None else {})
        if exc is not None:
            raise SubinterpError(f"in subinterpreter {iid}:\n{exc.errdisplay}")

    def queue_create():
        qid = Q.create(0, 0, 1)
        return qid, qid

    return interp_create, interp_run, I.destroy, queue_create, Q.destroy


def _ops_314():
    # 3.14+ (3.14.10 and 3.15.2 behave alike here): interpreters through the
    # public concurrent.interpreters: create() is isolated by default,
    # prepare_main() binds values into __main__ by XID, exec() raises
    # ExecutionFailed; the handle is the Interpreter object (it holds a
    # reference to the interpreter; close() destroys it).
    # Queues are created and destroyed with the private _interpqueues, for
    # two things the public API cannot say (put and get use the public Queue,
    # in CHANNEL_CODE):
    #   * XID only. Public create_queue() makes queues that fall back to
    #     pickle, and proxies pickle (by value): a proxy whose XID
    #     registration broke would arrive as a copy instead of failing.
    #   * destroy with items queued. A public Queue goes away only when every
    #     Queue object of its id, in every interpreter, has been released.
    # create(maxsize, unboundop, fallback): unboundop 1 = remove (the number
    # is 3.13's, its position is not: 3.13's create(0, 0, 1) would ask 3.14
    # for unboundop 0, which it refuses), fallback 0 = XID only. The new
    # queue has no binding yet (whatever create's docstring says), and the
    # first release of one destroys it: the handle is a public Queue, bound
    # for as long as the Channel lives.
    import _interpqueues as Q
    import concurrent.interpreters as ci

    def interp_create():
        it = ci.create()
        return it.id, it

    def interp_run(it, code, shared):
        if shared:
            it.prepare_main(shared)
        try:
            it.exec(code)
        except ci.ExecutionFailed as e:
            raise SubinterpError(
                f"in subinterpreter {it.id}:\n{e.excinfo.errdisplay}") from None

    def queue_create():
        qid = Q.create(0, 1, 0)
        return qid, ci.Queue(qid)

    return interp_create, interp_run, lambda it: it.close(), queue_create, Q.destroy


_OPS = _ops_314() if PY314 else _ops_313() if PY313 else _ops_312()
_interp_create, _interp_run, _interp_destroy, _queue_create, _queue_destroy = _OPS

# Executed in the main interpreter (below) and at the start of every
# subinterpreter, so both sides speak the same chan_put/chan_get. Channel ids
# are plain ints everywhere.
CHANNEL_CODE = r'''
import sys as _sys, time as _time
if _sys.version_info >= (3, 14):
    # 3.14+: the public Queue, looked up by id for each call; put and get
    # use the defaults the queue was created with (_ops_314)
    from concurrent.interpreters import Queue as _Queue, QueueEmpty as _QueueEmpty
    def chan_put(cid, obj):
        _Queue(cid).put_nowait(obj)
    def chan_try_get(cid):
        try:
            return True, _Queue(cid).get_nowait()
        except _QueueEmpty:
            return False, None
elif _sys.version_info >= (3, 13):
    import _interpqueues as _Q
    def chan_put(cid, obj):
        _Q.put(cid, obj, 0, 1)          # fmt 0: shared (XID); unboundop 1: remove
    def chan_try_get(cid):
        try:
            return True, _Q.get(cid)[0]
        except _Q.QueueError as e:
            if type(e).__name__ == "QueueEmpty":
                return False, None
            raise
else:
    import _xxinterpchannels as _C
    def chan_put(cid, obj):
        _C.send(cid, obj)
    def chan_try_get(cid):
        try:
            return True, _C.recv(cid)
        except _C.ChannelEmptyError:
            return False, None
def chan_get(cid, timeout=60.0):
    deadline = _time.monotonic() + timeout
    while True:
        ok, obj = chan_try_get(cid)
        if ok:
            return obj
        if _time.monotonic() > deadline:
            raise TimeoutError("nothing arrived on channel %r" % (cid,))
        _time.sleep(0.001)
'''

exec(CHANNEL_CODE)  # defines chan_put, chan_try_get, chan_get here too

# Order-independent for sets, order-dependent for sequences and mappings;
# proxies and the plain types they mirror give the same checksum.
CHECKSUM_CODE = r'''
def checksum(obj):
    import zlib
    kinds = {"dict": b"M", "FrozenMap": b"M", "list": b"L", "FrozenList": b"L",
             "tuple": b"T", "FrozenTuple": b"T", "set": b"S", "frozenset": b"S",
             "FrozenSet": b"S"}
    def walk(o):
        k = kinds.get(type(o).__name__)
        if k is None:
            return zlib.crc32(type(o).__name__.encode() + b":" +
                              repr(o).encode("utf-8", "surrogatepass"))
        if k == b"M":
            parts = []
            for key, value in o.items():
                parts.append(walk(key)); parts.append(walk(value))
        elif k == b"S":
            parts = sorted(walk(e) for e in o)
        else:
            parts = [walk(e) for e in o]
        return zlib.crc32(k + b"%d:" % len(o) + b",".join(b"%d" % p for p in parts))
    return walk(obj)
'''

exec(CHECKSUM_CODE)  # defines checksum here too


class Channel:
    """A one-way mailbox between interpreters (3.12 channel, 3.13+ queue):
    XID only, items of a destroyed sender removed (see _ops_3xx)."""

    def __init__(self):
        self.id, self._handle = _queue_create()
        self.alive = True

    def put(self, obj):
        chan_put(self.id, obj)

    def get(self, timeout=60.0):
        return chan_get(self.id, timeout)

    def try_get(self):
        return chan_try_get(self.id)

    def destroy(self):
        """Destroy the channel; the items still in it are freed."""
        if self.alive:
            self.alive = False
            _queue_destroy(self.id)
            self._handle = None


class Interp:
    """An own-GIL ('isolated') subinterpreter with frozenshare imported as fs,
    chan_put/chan_get/checksum defined, and reply(obj) sending to self.replies."""

    def __init__(self):
        self.id, self._handle = _interp_create()
        self.alive = True
        _ALIVE.add(self)
        self.replies = Channel()
        self.run(
            "import sys\n"
            f"sys.path[:] = {list(sys.path)!r}\n"
            "import gc, time\n"
            "import frozenshare as fs\n"
            + CHANNEL_CODE + CHECKSUM_CODE +
            f"def reply(obj):\n    chan_put({self.replies.id!r}, obj)\n")

    def run(self, code, shared=None):
        """Run code in the interpreter's __main__, after binding `shared`
        (a dict of shareable values) there; raises SubinterpError."""
        _interp_run(self._handle, textwrap.dedent(code), shared)

    def recv(self, timeout=60.0):
        return self.replies.get(timeout)

    def destroy(self):
        if self.alive:
            self.alive = False
            _ALIVE.discard(self)
            _interp_destroy(self._handle)
            self._handle = None
        self.replies.destroy()


def run_in_threads(jobs, timeout=120.0):
    """jobs: [(interp, code), ...]; run each interp.run(code) in its own
    thread, concurrently; re-raise the first failure."""
    errors = [None] * len(jobs)
    start = threading.Barrier(len(jobs))

    def target(i, interp, code):
        try:
            start.wait(timeout)
            interp.run(code)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            errors[i] = e

    threads = [threading.Thread(target=target, args=(i, it, c)) for i, (it, c) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a subinterpreter thread did not finish in time"
    for e in errors:
        if e is not None:
            raise e
