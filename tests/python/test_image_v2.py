"""Image format v2 as seen from Python (arena/fs_image.h): same-keyed dicts
share one shape, equal str/bytes/floats are stored once, floats in the common
range are immediates -- and none of it changes what reading and thaw give
back: values, types, key order, identity where the source had it, NaN keys,
the sign of zero."""
import math
import pickle
import random

import pytest

import frozenshare as fs


def records(n, seed=7):
    rng = random.Random(seed)
    toks = ["tok%d" % i for i in range(500)] + ["\u0120w%d" % i for i in range(500)]
    return [{"id": i, "token": rng.choice(toks), "rank": rng.randrange(50000),
             "score": rng.random(), "lang": rng.choice(["en", "de", "fr"]),
             "flag": rng.random() < 0.5, "tags": [i % 3]} for i in range(n)]


def test_same_keyed_records_are_compact_and_read_back_exactly():
    src = records(20000)
    f = fs.freeze(src)
    size = fs.info(f)["image_bytes"]
    # v1 stored every key, entry and a 20-slot index per record (> 300 B);
    # a shaped record is its 7 values plus the list item and its tag list.
    assert size / len(src) < 140, size / len(src)
    assert size < 2.5 * len(pickle.dumps(src, 5))
    assert fs.thaw(f) == src
    for r, s in zip(f, src):
        assert list(r) == list(s) and list(r.items()) == list(s.items())
        assert r["token"] == s["token"] and r.get("missing") is None
    assert f[123] == src[123] and f[5]["tags"] == [5 % 3]


def test_dicts_with_other_key_orders_or_sets_stay_distinct():
    a, b = {"x": 1, "y": 2}, {"y": 2, "x": 1}
    f = fs.freeze([a, b, dict(a), {"x": 1}, {"x": 1, "y": 2, "z": 3}])
    t = fs.thaw(f)
    assert [list(d) for d in t] == [["x", "y"], ["y", "x"], ["x", "y"], ["x"], ["x", "y", "z"]]
    assert list(f[1].keys()) == ["y", "x"] and f[1]["x"] == 1 and "z" not in f[1]
    assert f[0] == f[1] == f[2]


def test_mixed_and_non_str_keys_round_trip():
    src = [{1: "a", 2.5: "b", None: "c", b"k": "d", (1, 2): "e"} for _ in range(3)]
    src += [{1: "a", 2.5: "b", None: "c", b"k": "d", True: "t"}] * 2
    f = fs.freeze(src)
    assert fs.thaw(f) == src
    assert f[0][(1, 2)] == "e" and f[3][True] == "t" and f[4][1.0] == "t"


def test_equal_strings_stored_once_and_thaw_shares_them():
    words = ["".join(random.Random(i).choice("abc") for _ in range(40)) for i in range(50)]
    src = ["".join(list(w)) for w in words for _ in range(100)]   # 100 equal copies each
    assert src[0] == src[1] and src[0] is not src[1]              # distinct objects
    f = fs.freeze(src)
    one = fs.freeze(words)
    assert fs.info(f)["image_bytes"] < fs.info(one)["image_bytes"] + 8 * len(src) + 4096
    t = fs.thaw(f)
    assert t == src and t[0] is t[1]                           # one object per value


def test_equal_bytes_stored_once_bytearrays_never():
    src = [bytes(b"x" * 100) for _ in range(50)]
    f = fs.freeze(src)
    assert fs.info(f)["image_bytes"] < 2000
    ba = [bytearray(b"y" * 100) for _ in range(3)]
    t = fs.thaw(fs.freeze(ba))
    assert t == ba and t[0] is not t[1]                        # mutable: never merged
    t[0][0] = 0
    assert t[1][0] == ord("y")


def test_floats_exact_including_zero_signs_nan_and_extremes():
    vals = [0.0, -0.0, 1.0, -2.5, 1e-300, 1e300, 5e-324, -5e-324, 2.0 ** -511,
            2.0 ** -512, 2.0 ** 511, 2.0 ** 512, math.inf, -math.inf, 0.1, 1 / 3,
            float.fromhex("0x1.fffffffffffffp+1023")]
    f = fs.freeze(vals * 3)
    for got, want in zip(fs.thaw(f), vals * 3):
        assert type(got) is float and got.hex() == want.hex()
    assert all(a.hex() == b.hex() for a, b in zip(f, vals * 3))
    nan = fs.thaw(fs.freeze([math.nan]))[0]
    assert math.isnan(nan)


def test_two_nan_keys_stay_two_and_one_nan_object_stays_one():
    n1, n2 = float("nan"), float("nan")
    d = {n1: 1, n2: 2}
    t = fs.thaw(fs.freeze(d))
    assert len(t) == 2 and sorted(t.values()) == [1, 2]
    lst = fs.thaw(fs.freeze([n1, n1, n2]))
    assert lst[0] is lst[1] and lst[0] is not lst[2]


@pytest.mark.parametrize("n", [0, 1, 8, 9, 127, 128, 200, 32767, 32768, 40000])
def test_maps_of_every_index_width_find_every_key(n):
    src = {"k%d" % i: i for i in range(n)}
    f = fs.freeze(src)
    assert len(f) == n
    assert all(f["k%d" % i] == i for i in range(n))
    assert "k%d" % n not in f and f.get(-1) is None
    s = fs.freeze(set(src))
    assert all(("k%d" % i) in s for i in range(0, n, max(1, n // 50)))


def test_materialized_keys_carry_their_true_hash():
    keys = ["k%d" % i for i in range(300)] + ["\u0120\u00e9%d" % i for i in range(300)] + ["\U0001f600x"]
    src = {k: i for i, k in enumerate(keys)}
    f = fs.freeze([src, {"a": 1, "b": 2}, {"a": 3, "b": 4}, frozenset(keys)])
    got = list(f[0]) + [k for k, _ in f[0].items()] + list(fs.thaw(f)[0]) + list(f[2])
    got += list(fs.thaw(f)[3]) + list(f[3])
    for k in got:
        assert hash(k) == hash("".join(list(k)))       # a fresh, equal str
    t = fs.thaw(f)
    assert t[0] == src and t[3] == frozenset(keys)


def test_key_cache_is_counted_bounded_and_dropped_with_its_region():
    import gc
    before = fs.stats()
    f = fs.freeze([{"a": i, "b": -i, "c": str(i)} for i in range(1000)]
                  + [{"k%d" % j: j for j in range(3)} | {"n": i} for i in range(300)])
    got = [list(r.items()) for r in f]
    assert got[5] == [("a", 5), ("b", -5), ("c", "5")]
    assert got[1000 + 7] == [("k0", 0), ("k1", 1), ("k2", 2), ("n", 7)]
    st = fs.stats()
    assert st["key_cache_shapes"] - before["key_cache_shapes"] == 2
    assert st["key_cache_keys"] - before["key_cache_keys"] == 3 + 4
    assert st["key_cache_hits"] - before["key_cache_hits"] >= 1299 * 3
    k1 = list(f[1])[0]
    assert k1 is list(f[2])[0]                       # one key object per shape
    assert hash(k1) == hash("a")
    del f, got, k1
    gc.collect()
    st = fs.stats()
    assert st["key_cache_shapes"] == before["key_cache_shapes"]
    assert st["key_cache_keys"] == before["key_cache_keys"]
    assert 0 <= st["proxy_free_list"] <= 64


def test_key_cache_bounded_per_region_and_keys_stay_right():
    shapes = [{"s%d_%d" % (s, j): j for j in range(2)} for s in range(400)]
    f = fs.freeze([dict(d) for d in shapes for _ in range(2)])
    before = fs.stats()["key_cache_shapes"]
    for r, d in zip(f, [d for d in shapes for _ in range(2)]):
        assert list(r.keys()) == list(d) and list(r.items()) == list(d.items())
    assert fs.stats()["key_cache_shapes"] - before <= 256
    big = fs.freeze([{"x%d" % j: j for j in range(100)} for _ in range(3)])
    assert list(big[2]) == ["x%d" % j for j in range(100)]   # too many keys: not cached


@pytest.mark.parametrize("extra", [
    {},                                              # all narrow
    {"f": 0.25},                                     # one float in 8 values: boxed
    {"f": 0.25, "g": -1e-300, "h": 1e300},           # floats of every kind
    {"big": 2 ** 28, "neg": -(2 ** 28) - 1},         # ints just outside narrow
    {"huge": 2 ** 200, "nan": math.nan, "none": None},
])
def test_records_of_leaf_values_read_back_exactly(extra):
    src = [{"id": i, "name": "n%d" % (i % 50), "ok": i % 2 == 0, "b": b"xy",
            "neg": -i, "c": 1 + 2j, **extra} for i in range(300)]
    f = fs.freeze(src)
    t = fs.thaw(f)
    for got, want in zip(t, src):
        assert list(got) == list(want)
        for k in want:
            a, b = got[k], want[k]
            assert type(a) is type(b)
            assert a == b or (isinstance(b, float) and math.isnan(b) and math.isnan(a))
    for r, want in zip(f, src):
        assert r["id"] == want["id"] and r["neg"] == want["neg"]
        assert [type(v) for v in r.values()] == [type(v) for v in want.values()]


def test_narrow_records_are_smaller_than_wide_ones():
    narrow = fs.freeze([{"a": i, "b": "x%d" % (i % 10), "c": True, "d": 0.5 + i} for i in range(10000)])
    wide = fs.freeze([{"a": i, "b": "x%d" % (i % 10), "c": True, "d": 0.5 + i, "e": 0.25 + i}
                      for i in range(10000)])              # 2 floats in 5: stays wide
    # narrow: 8 + 4*4 + a boxed float (16) = 40 B; wide: 8 + 5*8 = 48 B (+ 8 per list item)
    assert fs.info(narrow)["image_bytes"] < 10000 * 52
    assert fs.info(wide)["image_bytes"] >= 10000 * 56


@pytest.mark.parametrize("odd", [None, 2 ** 28, -(2 ** 28) - 1, 0.5, 2 ** 70])
def test_vocabulary_entries_are_narrow_when_every_value_fits(odd):
    # 20000 str -> int entries, values at the narrow edges [-2^28, 2^28): 16
    # bytes an entry (hash, u32 key, u32 value); one value that does not fit
    # (an int immediate past the edge, a float immediate) keeps all 24; a big
    # int is an object, and a reference to it fits
    keys = ["w%d" % i for i in range(20000)]
    src = {k: (i - 2 ** 28 if i % 2 else 2 ** 28 - 1 - i) for i, k in enumerate(keys)}
    if odd is not None:
        src[keys[-1]] = odd
    f = fs.freeze(src)
    _ext._check_image(f)
    strs = 20000 * 16                                # "w1234": 8-byte header + 8
    entry = 16 if odd is None or odd == 2 ** 70 else 24
    index = 32768 * 2                                # 2-byte slots, 2/3 full at most
    assert fs.info(f)["image_bytes"] == pytest.approx(strs + 20000 * entry + index, rel=0.02)
    assert fs.thaw(f) == src
    for k in random.Random(3).sample(keys, 500) + [keys[-1]]:
        assert f[k] == src[k] and type(f[k]) is type(src[k])
    assert "absent" not in f and f.get("w-1") is None
    assert list(f.keys())[:3] == keys[:3] and list(f.values())[-1] == src[keys[-1]]


def test_items_iterator_reuses_only_pairs_nobody_holds():
    f = fs.freeze({"k%d" % i: [i] if i % 2 else i for i in range(50)})
    it = iter(f.items())
    held = [next(it), next(it)]                        # kept: never overwritten
    assert held == [("k0", 0), ("k1", [1])] and held[0] is not held[1]
    rest = [(k, v) for k, v in it]                     # unpacked: the pair is reused
    assert rest == [("k%d" % i, [i] if i % 2 else i) for i in range(2, 50)]
    assert held == [("k0", 0), ("k1", [1])]
    assert list(reversed(f.items()))[0] == ("k49", [49])


# ------------------------------------------- builder and validator agree ---

import frozenshare._frozenshare as _ext                      # noqa: E402
from hypothesis import given, settings, strategies as st     # noqa: E402

_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
                  st.floats(allow_nan=True), st.text(max_size=6),
                  st.sampled_from(["a", "b", "tok", "\u0120x", "\U0001f600"]),
                  st.binary(max_size=5))
_key = st.one_of(st.sampled_from(["id", "name", "score", "k", "\u00e9"]), st.integers(-3, 3),
                 st.text(max_size=3), st.tuples(st.integers(0, 2)))
_tree = st.recursive(
    _leaf,
    lambda kids: st.one_of(
        st.lists(kids, max_size=5),
        st.tuples(kids, kids),
        st.dictionaries(_key, kids, max_size=6),
        st.lists(st.fixed_dictionaries({"id": kids, "name": kids, "score": kids}), max_size=6),
        st.frozensets(_leaf.filter(lambda x: x == x), max_size=4)),
    max_leaves=40)


def _same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return a.hex() == b.hex() or (a != a and b != b)
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a) if len(a) == len(b) else False
    return a == b


@settings(max_examples=300, deadline=None)
@given(_tree)
def test_every_image_the_builder_makes_passes_the_validator(obj):
    f = fs.freeze([obj, obj, [obj]])
    if fs.is_frozen(f):
        _ext._check_image(f)                       # SHARED flags, shapes, narrow, dedup
    t = fs.thaw(f)
    assert _same(t[0], obj) or obj != obj
    if isinstance(obj, (list, tuple, dict, frozenset)):
        assert t[0] is t[1]                        # a shared container stays shared


def test_validator_accepts_the_data_sets_of_this_file():
    for obj in (records(3000), {"k%d" % i: i for i in range(40000)},
                [{"a": i, "b": 0.5 + i, "c": "x"} for i in range(2000)],
                [{"x": 2 ** 28 + i, "y": None} for i in range(100)]):
        _ext._check_image(fs.freeze(obj))
    with pytest.raises(TypeError):
        _ext._check_image({"not": "frozen"})


def test_allocation_failure_anywhere_in_v2_paths_leaves_nothing_behind():
    """Every allocation of a freeze of records (dedup and shape tables, the
    keyed-dict scratch, narrow boxes) and of reading them (key cache, proxy
    free list, thaw's shape keys) may fail: MemoryError or a valid image,
    never a crash, a leak or a wrong value."""
    import gc
    src = [{"id": i, "name": "n%d" % (i % 7), "f": 0.5 + i, "b": b"xy", "t": [i]}
           for i in range(200)] + [{"k%d" % j: j for j in range(100)}]
    base = fs.stats()
    built = 0
    try:
        for n in range(0, 300, 2):
            _ext._fail_alloc_after(n)
            try:
                f = fs.freeze(src)
            except MemoryError:
                continue
            finally:
                _ext._fail_alloc_after(-1)
            built += 1
            _ext._check_image(f)
            _ext._fail_alloc_after(n // 3)
            try:
                fs.thaw(f)
                [list(r.items()) for r in f[:50]]
            except MemoryError:
                pass
            finally:
                _ext._fail_alloc_after(-1)
            assert fs.thaw(f) == src
            del f
    finally:
        _ext._fail_alloc_after(-1)
    gc.collect()
    assert built > 100
    st = fs.stats()
    assert st["live_regions"] == base["live_regions"]
    assert st["key_cache_shapes"] == base["key_cache_shapes"]


def test_str_cache_serves_repeated_reads_and_goes_with_its_region():
    import gc
    import sysconfig
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        pytest.skip("no str cache on free-threaded builds")
    gc.collect()
    start = fs.stats()
    langs = ["en", "pt", "de", "\u0120x", "\U0001f600"]
    src = [{"id": i, "lang": langs[i % 5], "long": "y" * 40 + str(i % 3)} for i in range(2000)]
    f = fs.freeze(src)
    for _ in range(3):                   # slots collide by address: values stay right
        assert [r["lang"] for r in f] == [d["lang"] for d in src]
        assert [r["long"] for r in f] == [d["long"] for d in src]
    assert hash(f[3]["lang"]) == hash("\u0120x")
    # One stored str read again and again (the table exists by now: > 256
    # short reads): a miss, a second miss that takes the slot, then hits.
    one = fs.freeze([{"k": "v%d" % 7} for _ in range(1000)])
    before = fs.stats()
    vals = [r["k"] for r in one]
    st = fs.stats()
    assert vals == ["v7"] * 1000
    # 999 when a dead handle at this address left this very candidate (harmless)
    assert st["str_cache_hits"] - before["str_cache_hits"] in (998, 999)
    assert st["str_cache_entries"] - before["str_cache_entries"] in (0, 1)  # 0: took f's slot
    assert vals[2] is vals[999]
    longs = [r["long"] for r in f[:50]]  # past FS_STRCACHE_MAXLEN: never cached
    assert longs[3] == "y" * 40 + "0" and longs[3] is not f[3]["long"]
    assert fs.stats()["str_cache_hits"] == st["str_cache_hits"]
    del vals
    entries = fs.stats()["str_cache_entries"]
    del one                              # its slot goes with its handle
    gc.collect()
    assert fs.stats()["str_cache_entries"] == entries - 1
    del f, longs
    gc.collect()
    end = fs.stats()                     # f's slots went too (any other handle's
    assert end["str_cache_entries"] <= start["str_cache_entries"]   # it took, as well)
    assert end["handles"] == start["handles"] and end["live_regions"] == start["live_regions"]
