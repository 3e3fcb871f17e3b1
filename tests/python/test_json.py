"""fs.from_json / fs.to_json (issue 15): json.loads' semantics, differentially
(hypothesis over generated JSON text and random bytes), str hashes of every
kind, repeated keys, lone surrogates, deep nesting, allocation failure at
every step, and to_json against json.dumps."""
import json
import math
import os
import sys

import frozenshare as fs
import frozenshare._frozenshare as _ext
import pytest
from hypothesis import given, settings, strategies as st

from _fshelpers import each_allocation_failing, run_python

HERE = os.path.dirname(os.path.abspath(__file__))


def loads_or_error(data):
    try:
        return "ok", json.loads(data)
    except (ValueError, RecursionError) as e:            # JSONDecodeError, UnicodeDecodeError
        return "error", type(e)


def from_json_or_error(data):
    try:
        v = fs.from_json(data)
    except ValueError as e:
        return "error", type(e)
    return "ok", fs.thaw(v) if fs.is_frozen(v) else v


def same(a, b):
    """Equal values of exactly equal types, floats by repr (-0.0, nan)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return repr(a) == repr(b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


def assert_like_json_loads(data):
    want, got = loads_or_error(data), from_json_or_error(data)
    if want[0] == "error":
        assert got[0] == "error", (data, got)
    else:
        assert got[0] == "ok", (data, got)
        assert same(got[1], want[1]), (data, got[1], want[1])


# ------------------------------------------------------------------ values ---

def test_values_and_types_match_json_loads():
    for text in ['{"a": 1, "b": [1, 2.5, "x", null, true, false]}', "[]", "{}", "5", '"s"',
                 "null", "true", "-0", "-0.0", "0.1", "1e400", "-1e400", "1e-400",
                 "123456789012345678901234567890", "-123456789012345678901234567890",
                 "9223372036854775807", "9223372036854775808", "-9223372036854775808",
                 "-9223372036854775809", "18446744073709551615", "18446744073709551616",
                 "[NaN, Infinity, -Infinity]", '"\\u0000\\"\\\\\\/\\b\\f\\n\\r\\t"',
                 '"\\ud800"', '"\\udc00x"', '"\\ud83d\\ude00"', '"\\ud800\\u0041"',
                 '["\\ud800\\ud800"]', " \t\n[1 , 2 ]\r\n", '{"é中😀": "ÿĀ𐀀"}',
                 "2.2250738585072014e-308", "4.9e-324", "1.7976931348623157e308", "0.30000000000000004"]:
        assert_like_json_loads(text)
        assert_like_json_loads(text.encode("utf-8", "surrogatepass"))


def test_json_loads_refusals_are_refused():
    for text in ["nan", "[inf]", "[-NaN]", "[NAN]", "Infinity1", "[1,]", '{"a":1,}', "", " ",
                 "01", "[1] x", '"\x01"', '{"a" 1}', "'a'", "[", "]", '{"a"}', "1.", ".5",
                 "+1", "--1", '"\\x"', '"\\u12"', "[1 2]", "{1: 2}", "tru", "nul", "/* c */ 1"]:
        with pytest.raises(json.JSONDecodeError):
            fs.from_json(text)
        with pytest.raises(ValueError):
            json.loads(text)


def test_repeated_keys_keep_the_first_position_and_the_last_value():
    text = '{"a": 1, "b": 2, "a": 3, "c": {"x": 1, "x": [2]}, "b": 4}'
    f = fs.from_json(text)
    assert list(f) == list(json.loads(text)) == ["a", "b", "c"]
    assert fs.thaw(f) == json.loads(text)
    big = "{" + ",".join(f'"k{i % 50}": {i}' for i in range(200)) + "}"
    assert fs.thaw(fs.from_json(big)) == json.loads(big)


@pytest.mark.parametrize("s", ["", "abc", "é ÿ", "中文 Ā", "😀 𐀀x", "\ud800", "a\udfff", "\x00"])
def test_str_hashes_equal_hash_of_the_str(s):
    f = fs.from_json(json.dumps({s: [s]}, ensure_ascii=False))
    k = next(iter(f))
    assert k == s and hash(k) == hash(s)
    assert f[s] == [s] and s in f                 # found by its own hash: O(1)
    assert fs.stats()["lookups_scanned"] >= 0


def test_records_share_a_shape():
    text = json.dumps([{"id": i, "name": f"n{i}", "tags": [i]} for i in range(1000)])
    f = fs.from_json(text)
    summary = _ext._image_summary(f)
    assert summary["kinds"].get("shaped dict", 0) == 999
    assert fs.thaw(f) == json.loads(text)


def test_bytes_input_as_json_loads_decodes_it():
    assert fs.from_json(b'\xef\xbb\xbf[1]') == [1] == json.loads(b'\xef\xbb\xbf[1]')
    for enc in ("utf-16", "utf-16-le", "utf-16-be", "utf-32"):
        data = '{"é": [1, "中"]}'.encode(enc)
        assert fs.thaw(fs.from_json(data)) == json.loads(data)
    assert fs.from_json(b'"\xed\xa0\x80"') == json.loads(b'"\xed\xa0\x80"') == "\ud800"
    for bad in (b'"\xff"', b'["\xc3"]', b'"\xe4\xb8"', b'"\xf8\x88\x80\x80\x80"', b'"\xc0\xaf"'):
        with pytest.raises(ValueError):
            json.loads(bad)
        with pytest.raises(ValueError):
            fs.from_json(bad)
    with pytest.raises(json.JSONDecodeError):
        fs.from_json("\ufeff[1]")                   # as json.loads(str) refuses it
    assert fs.thaw(fs.from_json(bytearray(b"[1, 2]"))) == [1, 2]
    assert fs.thaw(fs.from_json(memoryview(b'{"a": 1}'))) == {"a": 1}
    with pytest.raises(TypeError):
        fs.from_json(12)


def test_errors_are_json_decode_errors_with_a_position():
    with pytest.raises(json.JSONDecodeError) as e:
        fs.from_json('{"é": [1, 2,, 3]}')
    assert e.value.doc == '{"é": [1, 2,, 3]}' and 10 <= e.value.pos <= 13
    with pytest.raises(json.JSONDecodeError) as e:
        fs.from_json(b'[1, "\\x"]')
    assert e.value.doc == '[1, "\\x"]' and 4 <= e.value.pos <= 7


def test_int_digit_limit_follows_sys():
    assert fs.from_json("1" * 4300) == json.loads("1" * 4300)
    with pytest.raises(ValueError):
        fs.from_json("1" * 4301)
    with pytest.raises(ValueError):
        json.loads("1" * 4301)


def test_deep_nesting_is_iterative():
    depth = 200_000
    f = fs.from_json("[" * depth + "]" * depth)
    n = 0
    while len(f):
        f = f[0]
        n += 1
    assert n == depth - 1
    assert fs.to_json(fs.from_json("[" * depth + "]" * depth)) == b"[" * depth + b"]" * depth
    with pytest.raises(json.JSONDecodeError):
        fs.from_json("[" * depth + "]" * (depth - 1))


def test_allocation_failure_at_every_step_leaves_nothing():
    text = json.dumps({"recs": [{"id": i, "s": f"é{i}", "n": [i, 2**70, 1.5]} for i in range(30)],
                       "dup": {"a": 1, "a": 2}, "big": 12345678901234567890123})
    f, failures = each_allocation_failing(lambda: fs.from_json(text))
    assert failures >= 5
    assert fs.thaw(f) == json.loads(text)


def test_parsing_runs_without_the_gil():
    import threading
    text = json.dumps([{"k": i, "v": "x" * 50} for i in range(200_000)])
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(1)
    t = threading.Thread(target=ticker)
    t.start()
    try:
        for _ in range(3):
            fs.from_json(text)
    finally:
        stop.set()
        t.join()
    assert ticks                                   # the other thread ran meanwhile


# ----------------------------------------------------------------- to_json ---

def dumps(x):
    return json.dumps(x, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")


def test_to_json_writes_what_json_dumps_writes():
    x = {"k": "é中😀\ud800", "u": 2**100, "neg": -2**70, "f": [1.0, 1e16, 1e-7, -0.0, 0.1,
         float("nan"), float("inf"), -float("inf"), 5e-324], "n": None, 1: True, 1.5: "x",
         None: 0, False: 1, "\x00\n\"\x1f\x7f": "\\", "t": (1, [2, (3,)]), "e": {}, "l": []}
    assert fs.to_json(x) == dumps(x)
    assert fs.to_json(fs.freeze(x)) == dumps(x)
    assert fs.to_json(fs.freeze(x)["t"]) == dumps(x["t"])
    assert fs.to_json(fs.freeze(7)) == b"7" and fs.to_json(None) == b"null"
    assert json.loads(fs.to_json(fs.from_json(json.dumps(x)))) == json.loads(json.dumps(x))


def test_to_json_refuses_what_json_cannot_hold():
    for bad in ([b"bytes"], {1, 2}, {(1, 2): 3}, [1 + 2j], {"a": frozenset()}):
        with pytest.raises(TypeError):
            fs.to_json(bad)
        with pytest.raises(TypeError):
            json.dumps(bad)
    cyc = []
    cyc.append(cyc)
    with pytest.raises(ValueError, match="Circular"):
        fs.to_json(cyc)
    shared = [1]
    assert fs.to_json([shared, shared, {"a": shared}]) == b'[[1],[1],{"a":[1]}]'


# -------------------------------------------------------------- hypothesis ---

json_scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.integers(min_value=-2**64, max_value=2**64),
    st.sampled_from([2**63 - 1, 2**63, -2**63, -2**63 - 1, 2**64 - 1, 2**64, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1e16]),
    st.text(), st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=3),
    st.text(alphabet=st.characters(max_codepoint=0x7F)),
)
json_values = st.recursive(
    json_scalars,
    lambda kids: st.one_of(st.lists(kids, max_size=6),
                           st.dictionaries(st.text(max_size=6), kids, max_size=6)),
    max_leaves=40)


@settings(max_examples=300, deadline=None)
@given(json_values, st.booleans(), st.sampled_from([None, 0, 2]), st.booleans())
def test_generated_json_reads_as_json_loads_reads_it(value, ensure_ascii, indent, as_bytes):
    text = json.dumps(value, ensure_ascii=ensure_ascii, indent=indent)
    data = text.encode("utf-8", "surrogatepass") if as_bytes else text
    assert_like_json_loads(data)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_generated_values_write_as_json_dumps_writes_them(value):
    assert fs.to_json(value) == dumps(value)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=40))
def test_random_bytes_accepted_or_refused_as_json_loads_does(data):
    assert_like_json_loads(data)


JSON_CHARS = '[]{}:,"\\0123456789.eE+- \t\n\rtruefalsnNaIiyu\u00e9\ud800'


@settings(max_examples=600, deadline=None)
@given(st.text(alphabet=JSON_CHARS, max_size=30))
def test_random_json_like_text_accepted_or_refused_as_json_loads_does(text):
    assert_like_json_loads(text)


# --------------------------------------------------------------------- CLI ---

def test_command_line_from_json_writes_an_image(tmp_path):
    src = tmp_path / "in.json"
    out = tmp_path / "out.fsimg"
    value = {"items": [{"id": i, "name": f"n{i}"} for i in range(100)], "v": [1.5, None]}
    src.write_text(json.dumps(value))
    r = run_python(f"import sys; from frozenshare.__main__ import main; "
                   f"sys.exit(main(['from-json', {str(src)!r}, {str(out)!r}]))")
    assert r.returncode == 0, r.stderr
    assert fs.thaw(fs.load(str(out))) == value
    r = run_python(f"import sys; from frozenshare.__main__ import main; "
                   f"sys.exit(main(['from-json', {str(src)!r}]))")
    assert r.returncode == 0 and "shaped dict" in r.stdout, r.stderr
    (tmp_path / "bad.json").write_text("[1,")
    r = run_python(f"import sys; from frozenshare.__main__ import main; "
                   f"sys.exit(main(['from-json', {str(tmp_path / 'bad.json')!r}]))")
    assert r.returncode != 0 and "bad.json" in r.stderr


def test_readme_json_example_runs_verbatim():
    import re
    from _fshelpers import readme_examples
    blocks = readme_examples("### JSON straight into an image")
    if not blocks:
        pytest.skip("README.md is not beside the tests")
    (code,) = blocks
    want = [m.group(1) for m in (re.match(r"\s*print\(.*\)\s*#\s*(.+?)\s*$", line)
                                 for line in code.splitlines()) if m]
    r = run_python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == want and len(want) == 3
