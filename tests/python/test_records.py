"""Records and typed buffers (issue 14; DESIGN.md "Records and typed buffers",
"Trust"): user objects immutable by contract, the stdlib's values, and
array/memoryview/NumPy buffers -- frozen, read, thawed, handed to other
interpreters and processes, and refused where they must be."""
import array
import dataclasses
import datetime as dt
import decimal
import fractions
import gc
import os
import random
import pickle
import sys
import uuid

import frozenshare as fs
import pytest
from hypothesis import given, settings, strategies as st

import _records as R
from _fshelpers import PKG_PARENT, Channel, Interp, buffer_address, run_python

HERE = os.path.dirname(os.path.abspath(__file__))
WITH_RECORDS = {"PYTHONPATH": os.pathsep.join([PKG_PARENT, HERE])}   # child processes


def exact_equal(a, b):
    """a == b with the same types all the way down (records, values, containers)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(exact_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(exact_equal(a[k], b[k]) for k in a)
    if dataclasses.is_dataclass(a):
        return all(exact_equal(getattr(a, f.name), getattr(b, f.name))
                   for f in dataclasses.fields(a))
    if isinstance(a, decimal.Decimal):
        return str(a) == str(b)
    return a == b


# ------------------------------------------------------------------ records ---

STDLIB_VALUES = [
    dt.date(2024, 2, 29), dt.date.min, dt.date.max,
    dt.time(23, 59, 59, 999999), dt.time(1, 2, 3, fold=1),
    dt.time(4, 5, tzinfo=dt.timezone(dt.timedelta(hours=-3), "BRT")),
    dt.datetime(2021, 11, 7, 1, 30, fold=1),
    dt.datetime(2020, 1, 2, 3, 4, 5, 6, dt.timezone.utc),
    dt.datetime(2020, 1, 2, 3, 4, 5, 6, dt.timezone(dt.timedelta(hours=5, minutes=30))),
    dt.timedelta(days=-3, seconds=7, microseconds=11), dt.timedelta.max,
    dt.timezone.utc, dt.timezone(dt.timedelta(minutes=-90), "odd"),
    decimal.Decimal("3.14159265358979323846264338327950288"), decimal.Decimal("-0.000"),
    decimal.Decimal("1E+999999"), decimal.Decimal("NaN"), decimal.Decimal("-sNaN42"),
    decimal.Decimal("-Infinity"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"), uuid.UUID(int=0),
    fractions.Fraction(-22, 7), fractions.Fraction(10**40, 3),
]


def test_stdlib_values_read_and_thaw_as_equal_instances_with_equal_hashes():
    fz = fs.freeze(STDLIB_VALUES)
    for src, got, thawed in zip(STDLIB_VALUES, fz, fs.thaw(fz)):
        for x in (got, thawed):
            assert type(x) is type(src)
            assert str(x) == str(src)
            if not (isinstance(src, decimal.Decimal) and src.is_nan()):
                assert x == src and hash(x) == hash(src)
        if isinstance(src, (dt.time, dt.datetime)):
            assert got.fold == src.fold and got.tzinfo == src.tzinfo
        if isinstance(src, decimal.Decimal):
            assert got.as_tuple() == src.as_tuple()


def test_frozen_dataclasses_rebuild_without_running_user_code():
    items = [R.Point(1, 2, "a"), R.Slotted([1, 2], {"k": (3,)}), R.KwOnly(name="abc", tags=(1,))]
    R.INIT_CALLS.clear()
    fz = fs.freeze(items)
    got = list(fz)
    thawed = fs.thaw(fz)
    assert R.INIT_CALLS == []                    # no __init__, no __post_init__
    assert [type(x) for x in got] == [R.Point, R.Slotted, R.KwOnly]
    assert got[0] == items[0] and hash(got[0]) == hash(items[0])
    assert got[2].derived == 3 and got[2] == items[2]
    # container fields read as proxies, thaw as the plain originals
    assert isinstance(got[1].a, fs.FrozenList) and got[1].a == [1, 2]
    assert isinstance(got[1].b, fs.FrozenMap)
    assert exact_equal(thawed, items)
    with pytest.raises(dataclasses.FrozenInstanceError):
        got[0].x = 5


def test_named_tuples_keep_tuple_semantics_and_field_names():
    items = [R.Pair(1, "x"), R.Row(7), R.Pair([1], R.Row(2, "n"))]
    fz = fs.freeze(items)
    p, row, nested = fz
    assert type(p) is R.Pair and p.left == 1 and p[1] == "x" and p == (1, "x")
    assert hash(p) == hash(items[0])
    assert type(row) is R.Row and row.name == "?" and row._asdict() == {"id": 7, "name": "?"}
    assert type(nested.right) is R.Row and isinstance(nested.left, fs.FrozenList)
    assert exact_equal(fs.thaw(fz), items)


@pytest.mark.parametrize("member", [
    R.Color.RED, R.Color.GREEN, R.Color.BLUE, R.Level.HIGH, R.Mode.WRITE, R.Perm.W,
    R.Perm.R | R.Perm.X, R.Perm(0), ~R.Perm.W, R.Bits.A | R.Bits.B, R.Bits(0)])
def test_enum_members_come_back_by_identity(member):
    fz = fs.freeze([member, {"m": member}])
    assert fz[0] is member and fz[1]["m"] is member
    assert fs.thaw(fz)[0] is member
    assert fs.freeze(member).value is member


def test_records_are_dict_keys_and_set_members_with_their_own_hash():
    keys = [R.Point(1, 2), R.Color.RED, R.Pair(1, 2), dt.date(2020, 1, 1),
            decimal.Decimal("1.5"), R.Level.LOW]
    fz = fs.freeze({k: i for i, k in enumerate(keys)})
    for i, k in enumerate(keys):
        assert fz[k] == i and k in fz
    assert R.Point(1, 3) not in fz
    s = fs.freeze({R.Point(0, 0), R.Mode.READ})
    assert R.Point(0, 0) in s and R.Mode.READ in s and R.Mode.WRITE not in s
    # portable (keyed) images: such probes cannot be hashed with the seed, so
    # they scan -- and still find their entry
    ld = fs.loads(fs.dumps({k: i for i, k in enumerate(keys)}),
                  classes=[R.Point, R.Color, R.Pair, R.Level])
    for i, k in enumerate(keys):
        assert ld[k] == i


def test_shared_records_and_cycles_through_records():
    shared = R.Point(5, 6)
    root = R.Node("root")
    root.children.append(root)                  # a cycle through the record
    root.children.append(shared)
    fz = fs.freeze([shared, shared, root])
    th = fs.thaw(fz)
    assert th[0] is th[1]                        # sharing kept
    assert th[2].children[0] is th[2]            # the cycle restored
    assert th[2].children[1] is th[0]
    got = fz[2]
    assert got.children[0].name == "root" and got.children[1] == shared


def test_refusals_name_the_type_and_the_path():
    cases = [
        ({"a": [R.Mutable(1)]}, "not frozen", "root['a'][0]"),
        ([1, R.Plain(3)], "records", "root[1]"),
        ([R.local_class()(1)], "found again", "root[0]"),
        ((R.PairSub(1, 2),), "Pair", "root[0]"),
        ([memoryview(b"abcdef")[::2]], "C-contiguous", "root[0]"),
        ([R.Point(1, object())], "object", "root[0]"),
    ]
    for obj, what, path in cases:
        with pytest.raises(TypeError) as e:
            fs.freeze(obj)
        msg = str(e.value)
        assert what in msg and path in msg, msg


def test_register_a_class_immutable_by_contract():
    fs.register(R.Frozen, fields=("key", "value"))
    src, probe = [R.Frozen("k", [1, 2]), {R.Frozen("h", 1): "hashed"}], R.Frozen("h", 1)
    R.INIT_CALLS.clear()
    fz = fs.freeze(src)
    got = fz[0]
    assert type(got) is R.Frozen and got.key == "k" and got.value == [1, 2]
    assert fz[1][probe] == "hashed"
    assert R.INIT_CALLS == []
    th = fs.thaw(fz)
    assert th[0] == R.Frozen("k", [1, 2]) and type(th[0].value) is list
    with pytest.raises(AttributeError):
        got.key = "other"
    for bad in (int, R.Color, R.Pair):
        with pytest.raises(TypeError):
            fs.register(bad, fields=("x",))
    with pytest.raises(TypeError):
        fs.register(R.Frozen, fields=("not an identifier",))


def test_a_registered_instance_whose_fields_differ_is_refused():
    code = """
        import frozenshare as fs, _records as R
        fs.register(R.Plain, fields=("x",))
        assert fs.thaw(fs.freeze([R.Plain(1)])) == [R.Plain(1)]
        p = R.Plain(2); p.extra = 3
        try:
            fs.freeze([p])
        except TypeError as e:
            print("refused:", e)
        q = R.Plain(3); del q.x
        try:
            fs.freeze(q)
        except TypeError as e:
            print("refused:", e)
    """
    r = run_python(code, env=WITH_RECORDS)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "'extra' is not one of the fields" in lines[0] and "root[0]" in lines[0]
    assert "field 'x' is not set" in lines[1]


# ------------------------------------------------------------ typed buffers ---

TYPECODES = "bBhHiIlLqQfd" + ("w" if sys.version_info >= (3, 13) else "")


@pytest.mark.parametrize("tc", TYPECODES)
def test_arrays_of_every_typecode_keep_format_and_thaw_as_arrays(tc):
    src = array.array(tc, "abc" if tc in "uw" else [1, 2, 3, 4])
    fz = fs.freeze({"a": src})["a"]
    mv = memoryview(fz)
    assert mv.format == memoryview(src).format and mv.itemsize == src.itemsize
    assert mv.readonly and mv.tobytes() == src.tobytes() and fz == src
    th = fs.thaw(fz)
    assert type(th) is array.array and th.typecode == tc and th == src
    assert fz.source == "array.array" and len(fz) == 4 - (tc in "uw")


def test_memoryviews_keep_format_and_shape_and_read_in_place():
    data = bytes(range(24))
    for mv in (memoryview(data), memoryview(data).cast("i", [2, 3]),
               memoryview(data).cast("d", [3]), memoryview(b"\x01").cast("?", [])):
        fz = fs.freeze([mv])[0]
        got = memoryview(fz)
        assert (got.format, got.shape, got.ndim) == (mv.format, mv.shape, mv.ndim)
        assert got.tobytes() == mv.tobytes() and got == mv
        th = fs.thaw(fz)
        assert type(th) is memoryview and (th.format, th.shape) == (mv.format, mv.shape)
        assert th == mv
    fz = fs.freeze(memoryview(data))
    assert buffer_address(fz)[0] == buffer_address(memoryview(fz))[0]    # no copy
    with pytest.raises(TypeError):
        hash(fz)


def test_numpy_arrays_are_zero_copy_read_only_and_thaw_as_ndarrays():
    np = pytest.importorskip("numpy")
    arrays = [np.arange(12, dtype=np.int64).reshape(3, 4), np.array([True, False]),
              np.zeros(3, dtype=">i4"), np.array([1 + 2j, -1j]), np.ones(5, np.float16),
              np.array(3.5), np.arange(6, dtype=np.uint8).reshape(1, 2, 3)]
    fz = fs.freeze(arrays)
    for src, f in zip(arrays, fz):
        a = np.asarray(f)
        assert a.dtype == src.dtype and a.shape == src.shape and (a == src).all()
        assert not a.flags.writeable
        assert a.ctypes.data == buffer_address(f)[0]           # the image's bytes
        th = fs.thaw(f)
        assert type(th) is np.ndarray and th.flags.writeable and th.dtype == src.dtype
        assert (th == src).all()
    for bad, what in ((np.array([object()]), "'O'"), (np.arange(10)[::2], "C-contiguous"),
                      (np.zeros(2, dtype=[("x", "i4")]), "format")):
        with pytest.raises(TypeError, match=what):
            fs.freeze({"k": bad})


def test_typed_buffers_read_in_a_subinterpreter_without_numpy():
    src = array.array("d", [1.5, 2.5])
    fz = fs.freeze({"v": src, "p": R.Point(1, 2)})
    it = Interp()
    c = Channel()
    try:
        it.run("""
            import array
            def check(m):
                v = m["v"]
                mv = memoryview(v)
                p = m["p"]
                return (mv.format, mv.tolist(), type(fs.thaw(v)).__name__,
                        type(p).__module__, p.x + p.y, "numpy" in sys.modules)
        """)
        c.put(fz)
        it.run(f"m = chan_get({c.id})\nreply(repr(check(m)))")
        assert it.recv() == repr(("d", [1.5, 2.5], "array", "_records", 3, False))
    finally:
        c.destroy()
        it.destroy()
    del fz
    gc.collect()


# ------------------------------------------------------------- trust: files ---

def test_loaded_records_need_an_allowlist_and_import_nothing(tmp_path):
    path = tmp_path / "recs.fsimg"
    fs.dump([R.Point(1, 2), R.Color.RED, dt.date(2020, 1, 1), R.Pair(1, 2)], str(path))
    code = f"""
        import sys, datetime, frozenshare as fs
        img = fs.load({str(path)!r})
        assert img[2] == datetime.date(2020, 1, 1)      # stdlib values: no allowlist
        try:
            img[0]
        except TypeError as e:
            print("refused:", e)
        print("imported:", "_records" in sys.modules)
        import _records as R
        img = fs.load({str(path)!r}, classes=[R.Point, R.Color])
        print(type(img[0]).__name__, img[1] is R.Color.RED)
        try:
            img[3]
        except TypeError as e:
            print("refused:", "_records.Pair" in str(e))
        try:
            fs.thaw(img)
        except TypeError as e:
            print("thaw refused:", "_records.Pair" in str(e))
    """
    r = run_python(code, env=WITH_RECORDS)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0].startswith("refused:") and "_records.Point" in out[0] and "classes=" in out[0]
    assert out[1] == "imported: False"
    assert out[2] == "Point True"
    assert out[3] == "refused: True" and out[4] == "thaw refused: True"
    r = run_python(f"import sys; from frozenshare.__main__ import main; sys.exit(main(['info', {str(path)!r}]))")
    assert r.returncode == 0, r.stderr
    assert "record classes: _records.Color, _records.Pair, _records.Point, datetime.date" in r.stdout


def test_records_travel_through_pickle_and_loads_in_process():
    data = [R.Point(3, 4), R.Row(1, "r"), R.Level.LOW, decimal.Decimal("2.50")]
    fz = fs.freeze(data)
    for proto in (2, 5):                   # pickle's trust: the classes are imported by name
        back = pickle.loads(pickle.dumps(fz, protocol=proto))
        assert exact_equal(fs.thaw(back), data) and back[2] is R.Level.LOW
    with pytest.raises(TypeError, match="did not allow"):
        fs.loads(fs.dumps(fz))[0]          # loads imports nothing on an image's say-so
    ok = fs.loads(fs.dumps(fz), classes=(R.Point, R.Row, R.Level))
    assert exact_equal(fs.thaw(ok), data)
    with pytest.raises(TypeError):
        fs.loads(fs.dumps(fz), classes=[1])


def test_pickled_records_import_their_module_in_another_process():
    blob = pickle.dumps(fs.freeze({"p": R.Point(1, 2), "c": R.Color.RED}), protocol=5)
    code = f"""
        import pickle, sys
        m = pickle.loads({blob!r})
        before = "_records" in sys.modules
        p, c = m["p"], m["c"]                       # the reads import _records
        print(before, "_records" in sys.modules, type(p).__name__, c.name)
    """
    r = run_python(code, env=WITH_RECORDS)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "True", "Point", "RED"]


def test_a_corrupted_record_image_raises_and_never_crashes():
    img = bytearray(fs.dumps([R.Point(1, 2), R.Color.GREEN, array.array("i", [1, 2, 3]),
                              dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc), R.Pair(1, 2)]))
    classes = [R.Point, R.Color, R.Pair]
    rnd = random.Random(14)
    outcomes = set()
    for _ in range(400):
        bad = bytearray(img)
        for _ in range(rnd.randint(1, 3)):
            bad[rnd.randrange(128, len(bad))] ^= 1 << rnd.randrange(8)
        try:
            x = fs.loads(bytes(bad), classes=classes)
            fs.thaw(x)
            outcomes.add("ok")
        except (fs.ImageError, TypeError, ValueError, KeyError, ImportError) as e:
            outcomes.add(type(e).__name__)
    assert "ImageError" in outcomes


# -------------------------------------------------------- hypothesis: mixes ---

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                    st.floats(allow_nan=False))
record_of = [
    lambda x: st.builds(R.Point, st.integers(), st.integers(), st.text(max_size=5)),
    lambda x: st.builds(R.Pair, x, x),
    lambda x: st.builds(R.Row, st.integers(), st.text(max_size=5)),
    lambda x: st.builds(R.Slotted, x, x),
    lambda x: st.sampled_from(list(R.Color) + list(R.Perm) + [R.Perm.R | R.Perm.W, R.Mode.READ]),
    lambda x: st.sampled_from(STDLIB_VALUES[:12]),
    lambda x: st.builds(lambda v: array.array("q", v), st.lists(st.integers(-2**63, 2**63 - 1),
                                                                max_size=4)),
]


def _nested(children):
    hashable = st.one_of(st.integers(), st.text(max_size=4),
                         st.builds(R.Point, st.integers(), st.integers()),
                         st.sampled_from(list(R.Color)))
    return st.one_of(st.lists(children, max_size=4), st.tuples(children, children),
                     st.dictionaries(hashable, children, max_size=4),
                     *[f(children) for f in record_of])


data_with_records = st.recursive(scalars, _nested, max_leaves=20)


def _hashes_equal(got, src):
    try:
        h = hash(src)
    except TypeError:
        return True
    return h == hash(got)


@settings(max_examples=150, deadline=None)
@given(data_with_records)
def test_generated_records_freeze_read_and_thaw_equal_to_their_source(x):
    fz = fs.freeze([x])
    th = fs.thaw(fz)[0]
    assert exact_equal(th, x)
    got = fz[0]
    if not isinstance(x, array.array):
        assert got == x
    assert _hashes_equal(got, x)


# ------------------------------------------------------------------ README ---

def _expected(code):
    """What an example says it prints: `print(...)  # 42`, and the lines of
    an output comment (`# cannot freeze ...`)."""
    import re
    out = []
    for line in code.splitlines():
        m = re.match(r"\s*print\(.*\)\s*#\s*(.+?)\s*$", line) or re.match(r"# (cannot .*)$", line)
        if m:
            out.append(m.group(1))
    return out


@pytest.mark.skipif(sys.version_info[:2] != (3, 13), reason="the example uses 3.13's _interpqueues")
def test_readme_user_objects_example_runs_verbatim(tmp_path):
    from _fshelpers import readme_examples, run_script
    blocks = readme_examples("### The same question, with objects of your own")
    if not blocks:
        pytest.skip("README.md is not beside the tests")
    shop, main, refused = blocks
    (tmp_path / "shop.py").write_text(shop)
    r = run_script(str(tmp_path), main)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == _expected(main) == ["100000"]
    r = run_python(refused)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == _expected(refused) and len(_expected(refused)) == 2


def test_a_record_class_the_receiver_cannot_import_is_a_clear_import_error():
    import types
    mod = types.ModuleType("fs_ephemeral_mod")          # exists in this interpreter only
    exec("import dataclasses\n@dataclasses.dataclass(frozen=True)\nclass K:\n    x: int\n",
         mod.__dict__)
    mod.K.__module__ = "fs_ephemeral_mod"
    sys.modules["fs_ephemeral_mod"] = mod
    try:
        fz = fs.freeze([mod.K(1), array.array("b", [1])])
        assert fz[0] == mod.K(1)
        it, c = Interp(), Channel()
        try:
            c.put(fz)
            c.put(fz[1])                                 # a FrozenArray by itself
            it.run(f"""
                m = chan_get({c.id})
                a = chan_get({c.id})
                try:
                    m[0]
                except ImportError as e:
                    reply(str(e))
                reply(repr((type(a).__name__, memoryview(a).tolist(), m[1].tolist())))
            """)
            assert "fs_ephemeral_mod.K" in it.recv()
            assert it.recv() == repr(("FrozenArray", [1], [1]))
        finally:
            c.destroy()
            it.destroy()
    finally:
        del sys.modules["fs_ephemeral_mod"]
