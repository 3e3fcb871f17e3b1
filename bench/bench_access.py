"""bench_access -- read access through frozenshare proxies vs plain and immutable containers.

What it measures, in one interpreter, ns per operation:
  mapping  FrozenMap vs dict, frozendict.frozendict, immutables.Map over a
           non-ASCII str -> int vocabulary: m[k] hit, m.get(k) miss, m[k]
           miss (KeyError), k in m (hit, miss), len(m), iteration over keys,
           over items()
  sequence FrozenTuple vs tuple (of str and of int): t[i], iteration, len,
           x in t (short tuple), t[i:i+10]
  set      FrozenSet vs frozenset (of str): x in s (hit, miss), iteration, len
Probe keys are equal strings that are *different objects* from the stored
keys (as keys parsed from input are), in a fixed shuffled order.

Each operation runs as a Python-level loop (`for k in keys: m[k]`), the way
user code does it. `gross` is the loop's time per operation; `net` subtracts
the same loop with an empty body, i.e. the operation alone. Ratios are to the
plain builtin (dict / tuple / frozenset) of the same run; best of 5 samples.
Why: proxies must be cheap enough that reading shared data in place beats
holding a private copy.
"""
import argparse
import array
import random

import fsbench as F

LOOPS = {
    # name: (setup-free loop body over `xs`, overhead loop name)
    "loop_pass": "for x in xs: pass",
    "getitem": "for x in xs: c[x]",
    "get": "for x in xs: c.get(x)",
    "getitem_miss": "for x in xs:\n  try: c[x]\n  except KeyError: pass",
    "try_pass": "for x in xs:\n  try: pass\n  except KeyError: pass",
    "contains": "for x in xs: x in c",
    "len": "for x in xs: len(c)",
    "iter": "for x in c: pass",
    "iter_items": "for k, v in c.items(): pass",
    "slice": "for x in xs: c[x:x + 10]",
}


def compile_loop(body):
    ns = {}
    exec("def f(c, xs):\n" + "\n".join("  " + line for line in body.split("\n")), ns)
    return ns["f"]


FN = {k: compile_loop(v) for k, v in LOOPS.items()}


def measure(c, op, xs, ops, min_time):
    f = FN[op]
    return F.time_per_op(lambda: f(c, xs), ops, min_time=min_time)


def main():
    p = F.common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    p.add_argument("--entries", type=int, default=None, help="vocabulary entries (default 1e5 quick, 1e6 full)")
    args = p.parse_args()
    n = args.entries or (100_000 if args.quick else 1_000_000)
    mt = 0.15 if args.quick else 0.5
    nprobe = min(n, 20_000 if args.quick else 100_000)
    res = F.Results("access", args)
    fs = F.load_fs()
    rng = random.Random(7)

    vocab = F.gen_vocab(n)
    keys = list(vocab)
    hits = [F.probe_copy(k) for k in rng.sample(keys, nprobe)]
    misses = [F.probe_copy(k) + "\u00df" for k in rng.sample(keys, nprobe)]
    misses = [m for m in misses if m not in vocab]
    hot = hits[:1000] * 20                                  # cache-resident working set
    idx = [rng.randrange(n - 10) for _ in range(nprobe)]
    small = tuple(keys[:100])
    small_probe = [F.probe_copy(keys[50])] * 2000          # found half way through
    rng_len = list(range(nprobe))

    def contenders(kind, plain):
        out = [(kind[0], plain)]
        if kind[0] == "dict":
            try:
                import frozendict
                out.append(("frozendict", frozendict.frozendict(plain)))
            except ImportError:
                res.note("frozendict not installed")
            try:
                import immutables
                out.append(("immutables.Map", immutables.Map(plain)))
            except ImportError:
                res.note("immutables not installed")
        if kind[0] == "tuple" and all(type(x) is int for x in plain[:100]):
            # array('q') makes a new int object per element read, as any
            # container that stores values rather than objects must: the
            # floor for FrozenTuple[int] (a tuple only hands out references)
            out.append(("array('q')", array.array("q", plain)))
        if fs is not None:
            try:
                out.append((kind[1], fs.freeze(plain)))
            except Exception as e:                  # noqa: BLE001
                res.note("freeze of %s failed: %s: %s" % (kind[0], type(e).__name__, e))
        return out

    cases = []   # (group, op, probes, ops, overhead op)
    groups = [
        ("map", ("dict", "FrozenMap"), vocab, [
            ("getitem hit", "getitem", hits, "loop_pass"),
            ("getitem hit (hot 1k)", "getitem", hot, "loop_pass"),
            ("get miss", "get", misses, "loop_pass"),
            ("getitem miss (KeyError)", "getitem_miss", misses[:2000], "try_pass"),
            ("in hit", "contains", hits, "loop_pass"),
            ("in miss", "contains", misses, "loop_pass"),
            ("len", "len", rng_len, "loop_pass"),
            ("iter keys", "iter", None, None),
            ("iter items", "iter_items", None, None),
        ]),
        ("tuple[str]", ("tuple", "FrozenTuple"), tuple(keys), [
            ("t[i]", "getitem", idx, "loop_pass"),
            ("iter", "iter", None, None),
            ("len", "len", rng_len, "loop_pass"),
            ("t[i:i+10]", "slice", idx, "loop_pass"),
        ]),
        ("tuple[int]", ("tuple", "FrozenTuple"), tuple(vocab.values()), [
            ("t[i]", "getitem", idx, "loop_pass"),
            ("iter", "iter", None, None),
        ]),
        ("tuple[str] x100", ("tuple", "FrozenTuple"), small, [
            ("x in t (hit at 50)", "contains", small_probe, "loop_pass"),
        ]),
        ("set[str]", ("frozenset", "FrozenSet"), frozenset(keys), [
            ("in hit", "contains", hits, "loop_pass"),
            ("in miss", "contains", misses, "loop_pass"),
            ("iter", "iter", None, None),
            ("len", "len", rng_len, "loop_pass"),
        ]),
    ]
    ovh = {}                              # empty-loop time per (loop, probes)
    for gname, kind, plain, ops in groups:
        conts = contenders(kind, plain)
        for label, op, xs, over in ops:
            base = None
            for cname, c in conts:
                nops = len(c) if xs is None else len(xs)
                try:
                    gross = measure(c, op, xs, nops, mt)
                except Exception as e:                      # noqa: BLE001
                    res.note("%s %s %s: %s: %s" % (gname, label, cname, type(e).__name__, e))
                    continue
                if over and (over, id(xs)) not in ovh:
                    ovh[(over, id(xs))] = measure(c, over, xs, nops, mt)
                overhead = ovh[(over, id(xs))] if over else 0.0
                net = max(gross - overhead, 0.0)
                if base is None:
                    base = (gross, net)
                cases.append(res.row(group=gname, op=label, impl=cname, n=len(plain), ns_gross=gross,
                                     ns_net=net, ratio_gross=F.ratio(gross, base[0]),
                                     ratio_net=F.ratio(net, base[1])))
        del conts
    F.table(["group", "op", "impl", "n", "ns/op", "net ns/op", "x_gross", "x_net"],
            [[r["group"], r["op"], r["impl"], r["n"], r["ns_gross"], r["ns_net"], r["ratio_gross"],
              r["ratio_net"]] for r in cases])

    def find(g, op, impl):
        return next((r for r in cases if r["group"] == g and r["op"] == op and r["impl"] == impl), None)
    hit = find("map", "getitem hit", "FrozenMap")
    if hit:
        res.target("FrozenMap str-key hit lookup <= 1.5x dict", hit["ratio_net"], "<=1.5",
                   hit["ratio_net"] <= 1.5,
                   "net %.1f vs %.1f ns; loop incl. %.2fx" % (
                       hit["ns_net"], find("map", "getitem hit", "dict")["ns_net"], hit["ratio_gross"]))
    else:
        res.target("FrozenMap str-key hit lookup <= 1.5x dict", None, "<=1.5", None, "frozenshare not built")
    its = [find(g, "iter", "FrozenTuple") for g in ("tuple[str]", "tuple[int]")]
    its = [r for r in its if r]
    if its:
        worst = max(its, key=lambda r: r["ratio_gross"])
        arr = find("tuple[int]", "iter", "array('q')")
        floor = ""
        if arr and find("tuple[int]", "iter", "FrozenTuple"):
            floor = "; array('q') iteration (a new int per element) %.2fx tuple, FrozenTuple[int] / array('q') = %.2f" % (
                arr["ratio_gross"], find("tuple[int]", "iter", "FrozenTuple")["ns_gross"] / arr["ns_gross"])
        res.target("FrozenTuple iteration <= 2x tuple", worst["ratio_gross"], "<=2",
                   worst["ratio_gross"] <= 2,
                   "; ".join("%s %.2fx (%.1f vs %.1f ns/elem)" % (
                       r["group"], r["ratio_gross"], r["ns_gross"], r["ns_gross"] / r["ratio_gross"])
                       for r in its) + floor)
    else:
        res.target("FrozenTuple iteration <= 2x tuple", None, "<=2", None, "frozenshare not built")
    res.write()


if __name__ == "__main__":
    main()
