"""The named registry: publish / lookup / unpublish / published (DESIGN.md,
"Named registry": process-wide, the entry holds +1 until unpublish or
replacement)."""
import gc

import pytest

import frozenshare as fs
from _fshelpers import checksum, live_regions, run_in_threads, wait_live


def test_publish_lookup_unpublish(names):
    start = live_regions()
    name = names("cfg")
    p = fs.freeze({"db": {"host": "h", "port": 5432}, "flags": [1, 2]})
    rc = fs.info(p)["refcount"]
    assert fs.publish(name, p) is None
    assert fs.info(p)["refcount"] == rc + 1          # the entry holds one count
    assert name in fs.published()
    got = fs.lookup(name)
    assert fs.is_frozen(got)
    assert got == p and got["db"]["port"] == 5432
    assert fs.info(got)["region_id"] == fs.info(p)["region_id"]
    assert fs.unpublish(name) is None
    assert name not in fs.published()
    assert fs.info(p)["refcount"] == rc
    with pytest.raises(KeyError):
        fs.lookup(name)
    del p, got
    gc.collect()
    assert live_regions() == start


def test_lookup_and_unpublish_missing_raise_keyerror(names):
    name = names("never")
    with pytest.raises(KeyError):
        fs.lookup(name)
    with pytest.raises(KeyError):
        fs.unpublish(name)
    with pytest.raises(KeyError):
        fs.lookup("")


def test_published_lists_names(names):
    ns = [names(f"n{i}") for i in range(5)]
    p = fs.freeze([1])
    for n in ns:
        fs.publish(n, p)
    listed = fs.published()
    assert all(isinstance(n, str) for n in listed)
    for n in ns:
        assert n in listed
    fs.unpublish(ns[2])
    listed = fs.published()
    assert ns[2] not in listed and ns[1] in listed and ns[3] in listed


def test_publish_keeps_region_after_all_proxies_dropped(names):
    start = live_regions()
    name = names("held")
    fs.publish(name, fs.freeze({"v": list(range(100))}))
    gc.collect()
    assert live_regions() == start + 1
    assert fs.lookup(name)["v"][99] == 99
    fs.unpublish(name)
    wait_live(start)


def test_replace_releases_old_value(names):
    start = live_regions()
    name = names("replace")
    p1 = fs.freeze({"version": 1})
    fs.publish(name, p1)
    del p1
    gc.collect()
    assert live_regions() == start + 1
    p2 = fs.freeze({"version": 2})
    fs.publish(name, p2)
    gc.collect()
    assert live_regions() == start + 1              # version 1 reclaimed at replacement
    assert fs.lookup(name)["version"] == 2
    fs.publish(name, p2)                            # same value again: still one count
    fs.unpublish(name)
    assert live_regions() == start + 1              # p2 still held here
    del p2
    gc.collect()
    assert live_regions() == start


def test_publish_nested_proxy(names):
    name = names("nested")
    root = fs.freeze({"a": {"b": [1, 2, 3]}, "pad": "x" * 1000})
    fs.publish(name, root["a"]["b"])
    del root
    gc.collect()
    got = fs.lookup(name)
    assert got == [1, 2, 3] and type(got).__name__ == "FrozenList"


def test_publish_names_any_str(names):
    p = fs.freeze([1])
    for base in ("caf\xe9", "\U0001f600", "with space", "a/b:c"):
        n = names(base)
        fs.publish(n, p)
        assert fs.lookup(n) == [1]
        assert n in fs.published()


def test_publish_name_with_nul_and_lone_surrogate(names):
    p = fs.freeze([1])
    n = names("nul\x00inside")
    fs.publish(n, p)
    assert fs.lookup(n) == [1] and n in fs.published()
    assert n.split("\x00")[0] not in fs.published()      # no truncation at NUL
    sur = names("lone\ud800")
    before = sorted(fs.published())
    try:
        fs.publish(sur, p)
    except ValueError:                                    # e.g. UnicodeEncodeError: clean
        assert sorted(fs.published()) == before
    else:
        assert fs.lookup(sur) == [1] and sur in fs.published()


def test_publish_bytes_and_value(names):
    for v in (fs.freeze(b"raw"), fs.freeze("value" * 10), fs.freeze(7)):
        n = names("scalar")
        fs.publish(n, v)
        got = fs.lookup(n)
        assert type(got) is type(v) and got == v
        assert fs.info(got)["region_id"] == fs.info(v)["region_id"]


def test_publish_requires_a_frozen_object_and_str_name(names):
    with pytest.raises(TypeError):
        fs.publish(names("plain"), {"a": 1})
    with pytest.raises(TypeError):
        fs.publish(1, fs.freeze([1]))
    with pytest.raises(TypeError):
        fs.lookup(1)


def test_publish_in_main_lookup_in_subinterpreter(interps, names):
    start = live_regions()
    name = names("shared-cfg")
    src = {"users": [{"id": i, "name": f"u{i}"} for i in range(500)], "v": (1, 2.5)}
    p = fs.freeze(src)
    fs.publish(name, p)
    (a,) = interps(1)
    a.run(f"""
        x = fs.lookup({name!r})
        reply("%d|%d|%s" % (checksum(x), fs.info(x)["region_id"], x["users"][499]["name"]))
        del x; gc.collect()
    """)
    assert a.recv() == f"{checksum(src)}|{fs.info(p)['region_id']}|u499"
    fs.unpublish(name)
    del p
    wait_live(start)


def test_publish_in_subinterpreter_lookup_in_main(interps, names):
    start = live_regions()
    name = names("from-sub")
    (a,) = interps(1)
    a.run(f"""
        fs.publish({name!r}, fs.freeze({{"made": "in sub", "l": [1, 2, 3]}}))
        gc.collect()
    """)
    a.destroy()                                     # the registry keeps it alive
    gc.collect()
    assert live_regions() == start + 1
    got = fs.lookup(name)
    assert got == {"made": "in sub", "l": [1, 2, 3]}
    fs.unpublish(name)
    assert got["l"][2] == 3                         # main's handle keeps it
    del got
    wait_live(start)


def test_unpublish_while_readers_hold_the_object(interps, names):
    start = live_regions()
    name = names("readers")
    src = {"rows": list(range(10000)), "s": "x" * 100}
    fs.publish(name, fs.freeze(src))
    gc.collect()
    a, b = interps(2)
    for it in (a, b):
        it.run(f"x = fs.lookup({name!r})")
    fs.unpublish(name)
    gc.collect()
    assert name not in fs.published()
    assert live_regions() == start + 1              # readers keep it
    # they keep reading, concurrently
    code = "reply(sum(sum(x['rows']) for _ in range(5)))"
    run_in_threads([(a, code), (b, code)])
    assert a.recv() == b.recv() == 5 * sum(range(10000))
    a.run("del x; gc.collect()")
    gc.collect()
    assert live_regions() == start + 1              # b is the last reader
    b.run("assert len(x['rows']) == 10000")
    b.run("del x; gc.collect()")
    wait_live(start)


def test_lookup_missing_in_subinterpreter(interps, names):
    name = names("missing")
    (a,) = interps(1)
    a.run(f"""
        try:
            fs.lookup({name!r})
        except KeyError:
            reply("KeyError")
        else:
            reply("found")
    """)
    assert a.recv() == "KeyError"


def test_concurrent_publish_lookup_unpublish(interps, names):
    start = live_regions()
    shared = names("contended")
    fs.publish(shared, fs.freeze({"who": "main"}))
    a, b = interps(2)
    code = """
        hits = misses = 0
        for i in range(300):
            fs.publish({mine!r}, fs.freeze({{"i": i}}))
            fs.publish({shared!r}, fs.freeze({{"who": {who!r}, "i": i}}))
            try:
                v = fs.lookup({theirs!r})
                assert v["i"] >= 0
                hits += 1
            except KeyError:
                misses += 1
            w = fs.lookup({shared!r})
            assert w["who"] in ("main", "a", "b")
            if i % 3 == 0:
                try:
                    fs.unpublish({mine!r})
                except KeyError:
                    pass
        v = w = None
        gc.collect()
        reply(hits + misses)
    """
    na, nb = names("a"), names("b")
    run_in_threads([
        (a, code.format(mine=na, theirs=nb, shared=shared, who="a")),
        (b, code.format(mine=nb, theirs=na, shared=shared, who="b")),
    ])
    assert a.recv() == b.recv() == 300
    assert fs.lookup(shared)["who"] in ("a", "b")
    for n in (shared, na, nb):
        try:
            fs.unpublish(n)
        except KeyError:
            pass
    wait_live(start)
