"""Zero-copy views: m.view(key) / t.view(i) (DESIGN.md, "Python API"): a
read-only memoryview of a bytes value inside a container, pointing into the
sealed image, that keeps the region alive while it exists."""
import ctypes
import gc
import struct
import tracemalloc

import pytest

import frozenshare as fs
from _fshelpers import buffer_address, live_regions


SRC = {"k": b"abc\x00\xff", "n": 1, "s": "str", "l": [b"in list"], "e": b"",
       "ba": bytearray(b"from bytearray"), "t": (b"t0", 2), "f": 1.5, "none": None}


def test_map_view_reads_the_value():
    m = fs.freeze(SRC)
    v = m.view("k")
    assert isinstance(v, memoryview)
    assert v.readonly
    assert v.tobytes() == b"abc\x00\xff" and bytes(v) == b"abc\x00\xff"
    assert len(v) == 5 and v[0] == ord("a") and v[-1] == 0xFF
    assert v[1:3].tobytes() == b"bc" and v[1:3].readonly
    assert v.format == "B" and v.itemsize == 1 and v.ndim == 1
    assert m.view("e").tobytes() == b""
    assert m.view("ba").tobytes() == b"from bytearray"


def test_tuple_view_and_list_view():
    t = fs.freeze((b"zero", 1, b"two"))
    assert t.view(0).tobytes() == b"zero"
    assert t.view(2).tobytes() == b"two"
    assert t.view(2).readonly
    m = fs.freeze(SRC)
    assert m["t"].view(0).tobytes() == b"t0"
    assert m["l"].view(0).tobytes() == b"in list"
    assert fs.freeze([b"a", b"bb"]).view(1).tobytes() == b"bb"


def test_view_is_zero_copy():
    blob = bytes(range(256)) * (8 * 4096)          # 8 MiB
    m = fs.freeze({"blob": blob})
    t = fs.freeze((blob,))
    gc.collect()
    tracemalloc.start()
    try:
        views = [m.view("blob") for _ in range(20)] + [t.view(0) for _ in range(20)]
        current, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert current < 1_000_000, f"{current} bytes traced for 40 views of 8 MiB"
    a0, n0 = buffer_address(views[0])
    a1, n1 = buffer_address(views[1])
    assert n0 == n1 == len(blob)
    assert a0 == a1                                   # the same bytes in the image
    assert bytes(views[0]) == blob and bytes(views[-1]) == blob
    # and the bytes really are not a Python bytes object's storage
    materialized = m["blob"]
    assert buffer_address(materialized)[0] != a0
    del views


def test_writing_through_a_view_raises_typeerror():
    m = fs.freeze(SRC)
    v = m.view("k")
    with pytest.raises(TypeError):
        v[0] = 1
    with pytest.raises(TypeError):
        v[0:2] = b"zz"
    with pytest.raises(TypeError):
        struct.pack_into("B", v, 0, 7)
    with pytest.raises(TypeError):
        ctypes.c_char.from_buffer(v)
    with pytest.raises(TypeError):
        v.cast("B")[0] = 1
    with pytest.raises(TypeError):
        memoryview(v)[0] = 1
    import io
    with pytest.raises(TypeError):
        io.BytesIO(b"xyz").readinto(v)
    assert v.tobytes() == b"abc\x00\xff"
    t = fs.freeze((b"tuple bytes",))
    with pytest.raises(TypeError):
        t.view(0)[0] = 0


def test_view_keeps_region_alive():
    start = live_regions()
    m = fs.freeze({"k": b"x" * 100_000, "other": [1, 2, 3]})
    rid = fs.info(m)["region_id"]
    v = m.view("k")
    sub = v[10:20]
    assert live_regions() == start + 1
    del m
    gc.collect()
    assert live_regions() == start + 1              # the view holds the region
    assert v.tobytes() == b"x" * 100_000
    assert sub.tobytes() == b"x" * 10
    del v
    gc.collect()
    assert live_regions() == start + 1              # the slice still does
    assert sub.tobytes() == b"x" * 10
    del sub
    gc.collect()
    assert live_regions() == start
    assert rid >= 1


def test_released_view_lets_region_go():
    start = live_regions()
    t = fs.freeze((b"payload" * 1000,))
    v = t.view(0)
    del t
    gc.collect()
    assert live_regions() == start + 1
    v.release()
    gc.collect()
    assert live_regions() == start
    with pytest.raises(ValueError):
        v.tobytes()


def test_view_from_a_context_manager_and_nested_proxy():
    start = live_regions()
    m = fs.freeze({"inner": {"deep": (b"deep bytes",)}})
    inner = m["inner"]["deep"]
    del m
    with inner.view(0) as v:
        assert v.tobytes() == b"deep bytes"
    del inner
    gc.collect()
    assert live_regions() == start


@pytest.mark.parametrize("key", ["n", "s", "l", "f", "none", "t"])
def test_view_of_non_bytes_raises_typeerror(key):
    m = fs.freeze(SRC)
    with pytest.raises(TypeError):
        m.view(key)


def test_view_missing_key_or_index():
    m = fs.freeze(SRC)
    with pytest.raises(KeyError):
        m.view("missing")
    t = fs.freeze((b"a", "b"))
    with pytest.raises(IndexError):
        t.view(5)
    with pytest.raises(TypeError):
        t.view(1)                                       # a str, not bytes
    with pytest.raises(TypeError):
        t.view("0")
    with pytest.raises(TypeError):
        m.view([])                                      # unhashable key


def test_many_views_balanced():
    start = live_regions()
    m = fs.freeze({"k": b"abc"})
    for _ in range(10000):
        v = m.view("k")
        assert v[0] == 97
    del v, m
    gc.collect()
    assert live_regions() == start


def test_view_of_imported_non_bytes_is_typeerror():
    """Issue 10 D1: the value is an import whose target is not bytes. The
    resolved offset belongs to the imported image; reading it through the
    outer handle decoded foreign bytes (SystemError, or worse)."""
    inner = fs.freeze(["x" * 200000, [1, 2, 3], b"payload"])
    outer = fs.freeze({"k": inner[1], "b": fs.freeze(b"zz"), "t": (inner[1],)})
    with pytest.raises(TypeError, match="FrozenList"):
        outer.view("k")
    with pytest.raises(TypeError, match="FrozenTuple"):
        outer.view("t")
    assert bytes(outer.view("b")) == b"zz"                  # an imported bytes still works
