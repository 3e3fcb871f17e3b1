"""bench_threads -- one FrozenMap read by 1, 2 and 4 threads of one interpreter.

What it measures, on a free-threaded build (3.13t; on a build with a GIL the
threads take turns, and the benchmark says so and measures anyway): T threads
of ONE interpreter, started together by a barrier, each doing the same fixed
work over one shared object:
  lookup   m[k] for every key of a str->int vocabulary of short tokens,
           through the thread's own bound m.__getitem__ (a shared object
           named in a loop has its count bumped per use on 3.13t, whatever
           it is), with the thread's own copies of the keys, as probes are
  iterate  for v in m.values()
over a FrozenMap and over the plain dict it was frozen from, shared by the
same threads. Reported per (op, T): aggregate operations per second for each,
their ratio frozen/dict (> 1: the frozen image serves more reads per second),
and each one's scaling relative to T = 1.
Why: in a free-threaded build, threads reading one dict contend on the
reference counts of the values they fetch (shared objects' counts are
atomic there; the cache line bounces between cores); a frozen image's
values are made per read from bytes no thread writes. Both rows come from
the same run, interleaved, best of `--repeat`.
"""
import argparse
import sys
import sysconfig
import threading
import time

import fsbench as F


def run_threads(T, fn):
    """Wall seconds for T threads to each run fn() once, started together."""
    barrier = threading.Barrier(T + 1)
    done = []

    def body():
        barrier.wait()
        fn()
        done.append(time.perf_counter())

    threads = [threading.Thread(target=body) for _ in range(T)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return max(done) - t0


def main():
    p = F.common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    p.add_argument("--items", type=int, default=50_000, help="vocabulary size")
    p.add_argument("--rounds", type=int, default=20, help="passes over the keys per thread")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    if args.quick:
        args.items, args.rounds, args.repeat = 20_000, 4, 3
    res = F.Results("threads", args)
    fs = F.load_fs()
    ft = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    gil = sys._is_gil_enabled() if hasattr(sys, "_is_gil_enabled") else True
    if not ft or gil:
        res.note("not a free-threaded interpreter with the GIL off (free-threaded: %s, GIL "
                 "enabled: %s): the threads take turns, no scaling is possible" % (ft, gil))
    plain = F.gen_tokens(args.items)
    frozen = fs.freeze(plain) if fs is not None else None
    rounds = args.rounds

    def lookup(m):
        def fn():
            keys = [k.encode().decode() for k in plain]   # the thread's own str objects
            for k in keys:                                 # hash them once, as probes are
                hash(k)
            get = m.__getitem__          # the thread's own bound method: the shared
            for _ in range(rounds):      # object's own count is not touched per read
                for k in keys:
                    get(k)
        return fn

    def iterate(m):
        def fn():
            for _ in range(rounds):
                for v in m.values():
                    pass
        return fn

    rows = []
    base = {}
    for op, make in (("lookup", lookup), ("iterate", iterate)):
        for T in (1, 2, 4):
            best = {"dict": None, "frozen": None}
            for _ in range(args.repeat):                    # interleaved samples
                for impl, m in (("dict", plain), ("frozen", frozen)):
                    if m is None:
                        continue
                    s = run_threads(T, make(m))
                    best[impl] = s if best[impl] is None else min(best[impl], s)
            ops = T * rounds * len(plain)
            thr = {k: (ops / v if v else None) for k, v in best.items()}
            for impl in thr:
                if T == 1:
                    base[(op, impl)] = thr[impl]
            r = res.row(op=op, threads=T, dict_ops_s=thr["dict"], frozen_ops_s=thr["frozen"],
                        ratio=F.ratio(thr["frozen"], thr["dict"]),
                        dict_scaling=F.ratio(thr["dict"], base.get((op, "dict"))),
                        frozen_scaling=F.ratio(thr["frozen"], base.get((op, "frozen"))))
            rows.append([op, T, r["dict_ops_s"], r["frozen_ops_s"], r["ratio"],
                         r["dict_scaling"], r["frozen_scaling"]])
    F.table(["op", "threads", "dict ops/s", "frozen ops/s", "frozen/dict",
             "dict xT1", "frozen xT1"], rows)
    for op in ("lookup", "iterate"):
        r4 = [r for r in res.rows if r["op"] == op and r["threads"] == 4]
        if r4 and r4[0]["ratio"] is not None and ft and not gil:
            r1 = [r for r in res.rows if r["op"] == op and r["threads"] == 1][0]
            res.target("%s from 4 threads: frozen/dict throughput >= its 1-thread ratio" % op,
                       r4[0]["ratio"], ">=%.3g" % r1["ratio"], r4[0]["ratio"] >= r1["ratio"],
                       "1 thread: %.3g" % r1["ratio"])
    res.write()


if __name__ == "__main__":
    main()
