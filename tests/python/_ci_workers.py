"""Functions run in other interpreters (and processes) by
test_concurrent_interpreters.py (not a test module).

Interpreter.call, InterpreterPoolExecutor.submit and ProcessPoolExecutor
ship a function by its module and name (pickle), so the receiver imports
this module: it must stay importable on its own and import nothing from
the test suites. Everything returned is either a proxy or made of
shareable scalars and tuples, so the way the *result* travels is the only
thing under test.
"""
import frozenshare as fs


def where(p):
    """What identifies a frozen object's bytes: its kind, its region and
    its place in the image. Equal on two sides only if both read the same
    region (a pickled copy is refrozen into a new region)."""
    i = fs.info(p)
    return (type(p).__name__, i["region_id"], i["offset"], i["image_bytes"])


def live():
    return fs.stats()["live_regions"]


def describe(p):
    """where(p), then what this interpreter sees: live regions in the
    process and the region's refcount while p is held here."""
    return where(p) + (live(), fs.info(p)["refcount"])


def describe_kw(*, p):
    return describe(p)


def describe_all(items):
    # Not `tuple(describe(x) for x in items)`: 3.14 sends a function whose
    # own code names no global but builtins as code, run against the
    # receiver's __main__ ("stateless"), without importing this module; the
    # generator's code, which the check does not look into, then finds no
    # `describe` (NameError). Naming the global here makes it import us.
    out = []
    for x in items:
        out.append(describe(x))
    return tuple(out)


def identity(p):
    return p


def pair(p):
    return (p, p)


def in_list(p):
    return [p]


def make(n):
    """A region born in this interpreter, returned with its where()."""
    p = fs.freeze({"made_in": "worker", "rows": [{"id": i} for i in range(n)]})
    return (p, where(p))


def relay(inbox, outbox):
    """Take one proxy from inbox, put it on outbox, return describe() of it."""
    x = inbox.get(timeout=60)
    outbox.put(x)
    return describe(x)


def sum_ids(users):
    return sum(u["id"] for u in users)


def roundtrip(p):
    """For a process pool: what arrived, and the proxy sent back."""
    return (type(p).__name__, fs.is_frozen(p), fs.thaw(p), p)
