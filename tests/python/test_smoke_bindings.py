"""Smoke tests of the bindings (bindings/ engineer's own checks).

One pass over each area of the v1 contract: round trips, lookups with dict
semantics, proxy protocols, errors and paths, deep nesting, injected
allocation failures, pickling, and the O(1) hand-off to own-GIL
subinterpreters (XID) on the running Python version. The full suites live
beside this file.
"""
import collections.abc as abc
import copy
import gc
import math
import pickle
import sys
import textwrap
import threading
import unittest

import frozenshare as fs
from frozenshare import _frozenshare as _fs


SAMPLE = {
    "users": [{"name": "ada", "id": i, "tags": ("x", "y")} for i in range(50)],
    "n": 2**100, "neg": -(2**70), "f": 1.5, "z": 1 + 2j, "s": {1, 2, 3},
    "fz": frozenset({"a"}), "b": b"bytes\x00", "ba": bytearray(b"xy"),
    None: True, (1, 2): "tuple key", "uni": "h\u00e9llo \U0001F600 \ud800",
    "empty": [[], (), {}, set(), frozenset(), "", b""],
}


def live_regions():
    gc.collect()
    return fs.stats()["live_regions"]


class RoundTrip(unittest.TestCase):
    def test_thaw_restores_types_and_values(self):
        t = fs.thaw(fs.freeze(SAMPLE))
        self.assertEqual(t, SAMPLE)
        self.assertIs(type(t["ba"]), bytearray)
        self.assertIs(type(t["fz"]), frozenset)
        self.assertIs(type(t["s"]), set)
        self.assertIs(type(t["users"][0]["tags"]), tuple)

    def test_sharing_and_cycles_restored(self):
        a = [1]
        d = {"x": a, "y": a}
        d["self"] = d
        loop = []
        loop.append((loop,))
        t = fs.thaw(fs.freeze([d, loop]))
        self.assertIs(t[0]["x"], t[0]["y"])
        self.assertIs(t[0]["self"], t[0])
        self.assertIs(t[1][0][0], t[1])

    def test_freeze_results(self):
        self.assertIsInstance(fs.freeze({}), fs.FrozenMap)
        self.assertIsInstance(fs.freeze([]), fs.FrozenList)
        self.assertIsInstance(fs.freeze(()), fs.FrozenTuple)
        self.assertIsInstance(fs.freeze(frozenset()), fs.FrozenSet)
        self.assertIsInstance(fs.freeze(b""), fs.FrozenBytes)
        v = fs.freeze("a large str")
        self.assertIsInstance(v, fs.FrozenValue)
        self.assertEqual(v.value, "a large str")
        self.assertIs(fs.freeze(v), v)
        self.assertTrue(fs.is_frozen(v))
        self.assertFalse(fs.is_frozen("a large str"))

    def test_embedded_proxy_becomes_import(self):
        inner = fs.freeze({"big": list(range(100))})
        outer = fs.freeze({"inner": inner, "again": inner})
        self.assertEqual(fs.info(outer)["imports"], 1)
        self.assertEqual(fs.info(outer["inner"])["region_id"], fs.info(inner)["region_id"])
        t = fs.thaw(outer)
        self.assertIs(t["inner"], t["again"])


class Lookups(unittest.TestCase):
    def setUp(self):
        self.m = fs.freeze({1: "one", "k": "v", (1, 2): "t", frozenset({3}): "f"})

    def tearDown(self):
        del self.m                      # the suites check for leaked regions

    def test_numeric_equivalence(self):
        self.assertEqual(self.m[1.0], "one")
        self.assertEqual(self.m[True], "one")
        self.assertEqual(self.m[(1.0, 2)], "t")
        self.assertEqual(self.m[frozenset({3})], "f")
        self.assertEqual(self.m[fs.freeze((1, 2))], "t")

    def test_missing_and_unhashable(self):
        with self.assertRaises(KeyError):
            self.m["nope"]
        self.assertIsNone(self.m.get("nope"))
        self.assertEqual(self.m.get("nope", 5), 5)
        with self.assertRaises(TypeError):
            self.m[[1]]

    def test_nan_only_by_identity(self):
        m = fs.freeze({float("nan"): 1})
        self.assertNotIn(float("nan"), m)
        self.assertTrue(math.isnan(next(iter(m))))

    def test_eq_exception_propagates(self):
        class Bad:
            def __hash__(self):
                return hash(1)

            def __eq__(self, other):
                raise ValueError("boom")
        with self.assertRaises(ValueError):
            self.m[Bad()]


class Protocols(unittest.TestCase):
    def test_map(self):
        d = {"a": 1, "b": [2], "c": b"xyz"}
        m = fs.freeze(d)
        self.assertIsInstance(m, abc.Mapping)
        self.assertEqual(m, d)
        self.assertEqual(d, m)
        self.assertEqual(list(m), ["a", "b", "c"])
        self.assertEqual(list(reversed(m)), ["c", "b", "a"])
        self.assertEqual(m.keys() & {"a", "z"}, {"a"})
        self.assertIn(("a", 1), m.items())
        self.assertEqual(m.items(), d.items())
        self.assertIsInstance(m.keys(), abc.KeysView)
        merged = m | {"d": 4}
        self.assertIsInstance(merged, fs.FrozenMap)
        self.assertEqual(merged["d"], 4)
        self.assertEqual(hash(fs.freeze({"a": 1})), hash(frozenset({"a": 1}.items())))
        with self.assertRaises(TypeError):
            hash(m)
        with self.assertRaises(TypeError):
            m["a"] = 2
        with self.assertRaises(AttributeError):
            m.x = 1
        self.assertTrue(repr(m).startswith("FrozenMap({'a': 1"))

    def test_tuple(self):
        t = (1, "a", (2.0, None))
        f = fs.freeze(t)
        self.assertIsInstance(f, abc.Sequence)
        self.assertEqual(f, t)
        self.assertEqual(hash(f), hash(t))
        self.assertEqual(f[1:], t[1:])
        self.assertEqual(f[::-1], t[::-1])
        self.assertLess(f, (1, "b"))
        self.assertEqual(f.index("a"), 1)
        self.assertEqual(f + (3,), t + (3,))
        self.assertEqual({t: 1}[f], 1)

    def test_list(self):
        f = fs.freeze([3, 1, 2])
        self.assertEqual(f, [3, 1, 2])
        self.assertEqual(f[1:], [1, 2])
        self.assertIsInstance(f[1:], list)
        self.assertGreater(f, [3, 1])
        self.assertEqual(sorted(f), [1, 2, 3])
        with self.assertRaises(TypeError):
            hash(f)

    def test_set(self):
        f = fs.freeze({1, 2, 3})
        self.assertIsInstance(f, abc.Set)
        self.assertEqual(f, {1, 2, 3})
        self.assertEqual(f | {4}, frozenset({1, 2, 3, 4}))
        self.assertEqual(f - {1}, {2, 3})
        self.assertEqual(hash(f), hash(frozenset({1, 2, 3})))
        self.assertTrue(f <= {1, 2, 3, 4})
        self.assertTrue(f.isdisjoint([7]))

    def test_bytes_and_views(self):
        b = fs.freeze(b"hello")
        self.assertEqual(b, b"hello")
        self.assertEqual(hash(b), hash(b"hello"))
        self.assertEqual(bytes(b), b"hello")
        self.assertTrue(memoryview(b).readonly)
        self.assertEqual(b.decode(), "hello")
        self.assertEqual(b.upper(), b"HELLO")
        m = fs.freeze({"blob": b"0123456789", "s": "str"})
        mv = m.view("blob")
        self.assertTrue(mv.readonly)
        with self.assertRaises(TypeError):
            m.view("s")
        del m
        gc.collect()
        self.assertEqual(bytes(mv[2:4]), b"23")

    def test_pickle_and_copy(self):
        m = fs.freeze(SAMPLE)
        self.assertEqual(pickle.loads(pickle.dumps(m)), SAMPLE)
        self.assertIs(copy.copy(m), m)
        self.assertIs(copy.deepcopy(m), m)


class Errors(unittest.TestCase):
    def test_unsupported_type_names_path(self):
        class Foo:
            pass
        with self.assertRaisesRegex(TypeError, r"'Foo' object at root\['users'\]\[3\]\['address'\]"):
            fs.freeze({"users": [1, 2, 3, {"address": Foo()}]})

    def test_subclass_rejected(self):
        class D(dict):
            pass
        with self.assertRaisesRegex(TypeError, "'D'"):
            fs.freeze([D()])

    def test_mutation_during_freeze(self):
        d = {}

        class Evil:
            def __hash__(self):
                d[len(d) + 100] = 1
                return 1
        d[Evil()] = 1
        with self.assertRaises(RuntimeError):
            fs.freeze(d)

    def test_injected_allocation_failures_leave_nothing(self):
        obj = {"a": [1, {"b": "x" * 100, "c": (1, 2**80)}], "s": {1, 2}}
        before = live_regions()
        failures = 0
        for n in range(200):
            _fs._fail_alloc_after(n)
            try:
                r = fs.freeze(obj)
            except MemoryError:
                failures += 1
                continue
            finally:
                _fs._fail_alloc_after(-1)
            self.assertEqual(fs.thaw(r), obj)
            del r
            break
        self.assertGreater(failures, 0)
        self.assertEqual(live_regions(), before)


class Deep(unittest.TestCase):
    def test_million_levels(self):
        deep = cur = []
        for _ in range(10**6):
            nxt = []
            cur.append(nxt)
            cur = nxt
        f = fs.freeze(deep)
        back = fs.thaw(f)
        n = 0
        while back:
            back = back[0]
            n += 1
        self.assertEqual(n, 10**6)
        with self.assertRaises(RecursionError):
            repr(f)
        with self.assertRaises(RecursionError):
            f == fs.thaw(f)


class Registry(unittest.TestCase):
    def test_publish_lookup_unpublish(self):
        f = fs.freeze({"cfg": 1})
        fs.publish("smoke-cfg", f)
        self.assertIn("smoke-cfg", fs.published())
        self.assertEqual(fs.lookup("smoke-cfg"), {"cfg": 1})
        fs.unpublish("smoke-cfg")
        with self.assertRaises(KeyError):
            fs.lookup("smoke-cfg")
        with self.assertRaises(KeyError):
            fs.unpublish("smoke-cfg")


def run_in_subinterpreter(obj, code):
    """Run code in a fresh own-GIL interpreter (in a thread), with `obj`
    handed over as cross-interpreter data; return what the code sends back."""
    result = []
    if sys.version_info >= (3, 14):
        from concurrent import interpreters
        from concurrent.interpreters import _queues as queues
        q, rq = queues.create(), queues.create()
        interp = interpreters.create()
        q.put(obj)
        prelude = f"from concurrent.interpreters import _queues as queues\nq = queues.Queue({q.id}); rq = queues.Queue({rq.id})\nobj = q.get()\nsend = rq.put\n"
        t = threading.Thread(target=interp.exec, args=(prelude + code,))
        t.start()
        t.join()
        result.append(rq.get())
        interp.close()
    elif sys.version_info >= (3, 13):
        import _interpreters as I
        import _interpqueues as Q
        q, rq = Q.create(4, 0, 1), Q.create(4, 0, 1)
        iid = I.create("isolated")
        Q.put(q, obj, 0, 1)
        prelude = f"import _interpqueues as Q\nobj = Q.get({q})[0]\nsend = lambda x: Q.put({rq}, x, 0, 1)\n"
        errs = []
        t = threading.Thread(target=lambda: errs.append(I.exec(iid, prelude + code)))
        t.start()
        t.join()
        if errs[0] is not None:
            raise RuntimeError(errs[0])
        result.append(Q.get(rq)[0])
        I.destroy(iid)
    else:
        import _xxinterpchannels as C
        import _xxsubinterpreters as I
        cid, rcid = C.create(), C.create()
        iid = I.create(isolated=True)
        C.send(cid, obj)
        prelude = "import _xxinterpchannels as C\nobj = C.recv(cid)\nsend = lambda x: C.send(rcid, x)\n"
        t = threading.Thread(target=I.run_string, args=(iid, prelude + code),
                             kwargs={"shared": {"cid": cid, "rcid": rcid}})
        t.start()
        t.join()
        result.append(C.recv(rcid))
        I.destroy(iid)
    return result[0]


class Subinterpreters(unittest.TestCase):
    def test_handoff_both_ways(self):
        f = fs.freeze({"users": [{"id": i} for i in range(100)], "blob": b"x" * 10})
        back = run_in_subinterpreter(f, textwrap.dedent("""
            import frozenshare as fs
            assert type(obj).__name__ == "FrozenMap"
            assert sum(u["id"] for u in obj["users"]) == 4950
            assert bytes(obj.view("blob")) == b"x" * 10
            send(fs.freeze({"made_here": obj["users"][7]}))
        """))
        self.assertEqual(back, {"made_here": {"id": 7}})
        del back
        gc.collect()
        self.assertEqual(fs.info(f)["refcount"], 1)


if __name__ == "__main__":
    unittest.main()
