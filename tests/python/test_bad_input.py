"""Bad input and limits (DESIGN.md, "Bad input and limits"): hostile probe
keys, huge ints, NaN keys, odd strings, unhashable probes, memory exhaustion
and allocation failure -- clean Python errors, nothing leaked, no other
region corrupted."""
import math

import pytest

import frozenshare as fs
from _fshelpers import assert_same_plain, each_allocation_failing, outcome, run_python

import frozenshare._frozenshare as _ext


class HashRaises:
    def __hash__(self):
        raise ValueError("hash refused")


class EqRaises:
    """Collides with a stored key (same hash), then refuses to compare."""

    def __init__(self, h):
        self.h = h

    def __hash__(self):
        return self.h

    def __eq__(self, other):
        raise ZeroDivisionError("eq refused")


class EqualTo:
    """Not a str/int, yet equal to one with the same hash: dict finds it."""

    def __init__(self, target):
        self.target = target

    def __hash__(self):
        return hash(self.target)

    def __eq__(self, other):
        return other == self.target


SRC = {"abc": 1, 12345: 2, (1, "t"): 3, 2.5: 4, "caf\xe9": 5, frozenset({1}): 6}


def test_probe_whose_hash_raises_propagates():
    m = fs.freeze(SRC)
    s = fs.freeze(frozenset(SRC))
    for op in (lambda c: HashRaises() in c, lambda c: c[HashRaises()],
               lambda c: c.get(HashRaises())):
        with pytest.raises(ValueError):
            op(SRC)
        with pytest.raises(ValueError):
            op(m)
    with pytest.raises(ValueError):
        HashRaises() in frozenset(SRC)
    with pytest.raises(ValueError):
        HashRaises() in s
    with pytest.raises(ValueError):
        m.view(HashRaises())
    assert m["abc"] == 1                 # and the map still works


@pytest.mark.parametrize("stored", ["abc", 12345, (1, "t"), 2.5, "caf\xe9", frozenset({1})])
def test_probe_whose_eq_raises_on_collision_propagates(stored):
    m = fs.freeze(SRC)
    probe = EqRaises(hash(stored))
    for op in (lambda c: probe in c, lambda c: c[probe], lambda c: c.get(probe)):
        assert outcome(op, m) == outcome(op, SRC) == ("exc", ZeroDivisionError)
    s = fs.freeze(frozenset(SRC))
    assert outcome(lambda: probe in s) == outcome(lambda: probe in frozenset(SRC))
    t = fs.freeze(tuple(SRC))
    assert outcome(lambda: probe in t) == outcome(lambda: probe in tuple(SRC))
    assert outcome(lambda: t.index(probe)) == outcome(lambda: tuple(SRC).index(probe))


@pytest.mark.parametrize("stored", ["abc", 12345, (1, "t"), 2.5, "caf\xe9", frozenset({1})])
def test_foreign_probe_equal_to_a_stored_key_is_found(stored):
    m = fs.freeze(SRC)
    probe = EqualTo(stored)
    assert probe in SRC
    assert probe in m
    assert m[probe] == SRC[stored]
    assert probe in fs.freeze(frozenset(SRC))


class NeverEqStr(str):
    __hash__ = str.__hash__

    def __eq__(self, other):
        return False


class AlwaysEqStr(str):
    __hash__ = str.__hash__

    def __eq__(self, other):
        return True


class NeverEqInt(int):
    __hash__ = int.__hash__

    def __eq__(self, other):
        return False


class FloatSub(float):
    pass


@pytest.mark.parametrize("probe", [NeverEqStr("abc"), AlwaysEqStr("abc"), AlwaysEqStr("zzz"),
                                   NeverEqInt(12345), FloatSub(2.5), (NeverEqStr("t"),),
                                   (1, NeverEqStr("t")), (1, AlwaysEqStr("x"))],
                         ids=repr)
def test_probe_subclasses_follow_dict_semantics(probe):
    """A subclass probe's own __eq__ decides (no str/int fast path may
    bypass it): same answers as dict, frozenset and tuple."""
    m = fs.freeze(SRC)
    s = fs.freeze(frozenset(SRC))
    t = fs.freeze(tuple(SRC))
    assert (probe in m) == (probe in SRC)
    assert outcome(lambda: m[probe]) == outcome(lambda: SRC[probe])
    assert (probe in s) == (probe in frozenset(SRC))
    assert (probe in t) == (probe in tuple(SRC))
    assert t.count(probe) == tuple(SRC).count(probe)
    assert outcome(t.index, probe) == outcome(tuple(SRC).index, probe)


def test_probe_with_matching_hash_but_not_equal():
    m = fs.freeze(SRC)

    class NotEqual:
        def __hash__(self):
            return hash("abc")

        def __eq__(self, other):
            return False

    assert NotEqual() not in m
    assert m.get(NotEqual(), "d") == "d"


def test_unhashable_probe_raises_typeerror():
    m = fs.freeze(SRC)
    s = fs.freeze(frozenset({1, 2}))
    for probe in ([1], {"a": 1}, {1}, bytearray(b"x"), fs.freeze([1]), fs.freeze({"a": [1]})):
        with pytest.raises(TypeError):
            m[probe]
        with pytest.raises(TypeError):
            probe in m
        with pytest.raises(TypeError):
            m.get(probe)
        if type(probe) is not set:           # frozenset retries a set as a frozenset
            with pytest.raises(TypeError):
                probe in s
    with pytest.raises(TypeError):
        ([1],) in m
    l = fs.freeze([[1], 2])
    assert [1] in l                          # sequences need no hash


def test_huge_ints():
    big = 10**10000
    m = fs.freeze({big: "key", "v": big, "neg": -big, "t": (big,)})
    assert m[big] == "key"
    assert m["v"] == big and m["neg"] == -big
    assert hash(m["t"]) == hash((big,))
    assert (big + 1) not in m
    assert_same_plain(fs.thaw(m), {big: "key", "v": big, "neg": -big, "t": (big,)})
    # repr follows the int max-str-digits limit exactly like the plain dict
    assert outcome(repr, m)[0] == outcome(repr, {big: "key"})[0]
    assert fs.freeze(big).value == big
    huge = 1 << 1_000_000
    assert fs.thaw(fs.freeze([huge]))[0] == huge


def test_nan_keys():
    nan = float("nan")
    src = {nan: "a", float("nan"): "b", 1.0: "c", complex(nan, 0): "d"}
    m = fs.freeze(src)
    assert len(m) == 4
    assert nan not in m
    assert m[1.0] == "c" and m[1] == "c"
    keys = list(m)
    assert math.isnan(keys[0]) and math.isnan(keys[1])
    assert keys[0] not in m
    assert list(m.values()) == ["a", "b", "c", "d"]
    t = fs.thaw(m)
    assert len(t) == 4 and list(t.values()) == ["a", "b", "c", "d"]
    s = fs.freeze(frozenset({nan, 1.0}))
    assert len(s) == 2 and nan not in s and 1 in s


@pytest.mark.parametrize("s", ["\ud800", "\udfff\ud800", "a\udc80b", "\U0010ffff",
                               "\x00", "\x00" * 10, "caf\xe9", "\u20ac", "\U0001f600"])
def test_odd_strings_as_keys_values_and_paths(s):
    m = fs.freeze({s: s, "l": [s]})
    assert m[s] == s and m["l"][0] == s
    assert s in m and s + "x" not in m
    assert isinstance(repr(m), str)
    assert_same_plain(fs.thaw(m), {s: s, "l": [s]})
    with pytest.raises(TypeError) as ei:
        fs.freeze({s: object()})
    msg = str(ei.value)
    assert "object" in msg
    assert isinstance(msg, str)
    assert "root[" + repr(s) + "]" in msg, msg


def test_str_probe_of_other_kind_not_confused():
    # same length, different kind: never equal
    m = fs.freeze({"\xe9": 1, "\u0100": 2, "\U00010000": 3, "e": 4})
    assert m["\xe9"] == 1 and m["\u0100"] == 2 and m["\U00010000"] == 3 and m["e"] == 4
    assert "\xe8" not in m and "\u0101" not in m and "\U00010001" not in m


# ------------------------------------------------------- memory exhaustion ---

RLIMIT_SCRIPT = r'''
import gc, resource, sys
import frozenshare as fs

def vm_size():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024

keep = fs.freeze({"sentinel": list(range(1000)), "s": "still here"})
small = fs.freeze([1, 2, 3])            # the arena is initialized
del small
st = fs.stats()
# far more than the arena can have reserved already, so a new reservation
# (or growth) is needed; calloc'd: the pages are never touched here
need = max(4 << 30, 2 * st.get("arena_reserved_bytes", 0) + (1 << 30))
try:
    src = bytes(need)
except MemoryError:
    print("SKIP cannot allocate the source", flush=True)
    sys.exit(0)
before = fs.stats()
limit = vm_size() + (256 << 20)
resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
try:
    fs.freeze(src)
except MemoryError:
    print("MemoryError", flush=True)
else:
    print("NO-ERROR", flush=True)
after = fs.stats()
print("LIVE", before["live_regions"], after["live_regions"], flush=True)
print("BYTES", before["image_bytes"], after["image_bytes"], flush=True)
# still under the limit: small freezes work and old regions are intact
small = fs.freeze({"after": [1, 2, 3], "s": "x" * 1000})
assert fs.thaw(small) == {"after": [1, 2, 3], "s": "x" * 1000}
assert fs.thaw(keep) == {"sentinel": list(range(1000)), "s": "still here"}
print("SURVIVED", flush=True)
'''


def test_memory_exhaustion_raises_memoryerror_and_survives():
    r = run_python(RLIMIT_SCRIPT, timeout=120)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr[-3000:])
    if r.stdout.startswith("SKIP"):
        pytest.skip(r.stdout.strip())
    lines = r.stdout.splitlines()
    assert "MemoryError" in lines, r.stdout
    assert "SURVIVED" in lines
    live = [l for l in lines if l.startswith("LIVE")][0].split()
    assert live[1] == live[2], live
    nbytes = [l for l in lines if l.startswith("BYTES")][0].split()
    assert nbytes[1] == nbytes[2], nbytes


# ---------------------------------------------------- allocation failures ---

def _rich_source():
    shared = {"shared": [1, 2, 3]}
    cyc = []
    cyc.append(cyc)
    return {
        "str1": "ascii", "str2": "caf\xe9" * 50, "str4": "\U0001f600" * 50,
        "ints": [0, -1, 2**63, 10**50], "floats": (1.5, -0.0, float("inf")),
        "bytes": b"b" * 5000, "ba": bytearray(b"ba"), "set": {1, 2, (3, 4)},
        "fs": frozenset({"x"}), "nested": {"a": [{"b": (shared, shared)}]},
        "cycle": cyc, "long": list(range(3000)), "map": {str(i): i for i in range(500)},
    }


def test_allocation_failure_every_step_of_freeze():
    """_fail_alloc_after(n) for n = 0, 1, 2, ... until freeze succeeds:
    each failure is a MemoryError with nothing leaked or half-built."""
    sentinel = fs.freeze({"sentinel": [1, 2, 3], "b": b"x" * 10000})
    imported = fs.freeze({"imported": list(range(100))})
    src = _rich_source()
    src["import"] = imported
    base = fs.stats()
    p, failures = each_allocation_failing(lambda: fs.freeze(src))
    assert failures >= 3                   # the trap really was hit
    expected = _rich_source()
    got = fs.thaw(p)
    assert got["nested"]["a"][0]["b"][0] is got["nested"]["a"][0]["b"][1]
    assert got["cycle"][0] is got["cycle"]
    assert got["import"] == {"imported": list(range(100))}
    for k in expected:
        if k not in ("cycle",):
            assert_same_plain(got[k], expected[k])
    assert fs.thaw(sentinel) == {"sentinel": [1, 2, 3], "b": b"x" * 10000}
    assert fs.stats()["live_regions"] == base["live_regions"] + 1


def test_allocation_failure_in_publish_and_view():
    sentinel = fs.freeze({"k": b"v" * 100})
    name = "test:bad_input:alloc"
    try:
        for n in range(50):
            _ext._fail_alloc_after(n)
            try:
                fs.publish(name, sentinel)
            except MemoryError:
                _ext._fail_alloc_after(-1)
                assert name not in fs.published()
                continue
            _ext._fail_alloc_after(-1)
            break
        assert fs.lookup(name) == sentinel
    finally:
        _ext._fail_alloc_after(-1)
        try:
            fs.unpublish(name)
        except KeyError:
            pass
    assert bytes(sentinel.view("k")) == b"v" * 100


def test_allocation_failure_in_thaw_and_reads():
    p = fs.freeze(_rich_source())
    try:
        for n in range(0, 200, 7):
            _ext._fail_alloc_after(n)
            try:
                fs.thaw(p)
                p["map"]["499"]
                list(p["long"])
            except MemoryError:
                pass
            finally:
                _ext._fail_alloc_after(-1)
    finally:
        _ext._fail_alloc_after(-1)
    assert fs.thaw(p)["map"]["499"] == 499


def test_fail_alloc_after_minus_one_restores():
    _ext._fail_alloc_after(0)
    _ext._fail_alloc_after(-1)
    assert fs.thaw(fs.freeze([1, "two"])) == [1, "two"]
