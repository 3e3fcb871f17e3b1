"""bench_contention -- acquiring and dropping one region from K interpreters at once.

What it measures: K subinterpreters (one thread each, K = 1, 2 by default)
hammer the SAME published region at the same time:
  cold  `p = fs.lookup(name); del p` -- the worker holds nothing else, so
        every iteration takes the registry lock, creates this interpreter's
        handle (atomic +1) and drops it again (atomic -1): the shared
        control block's cache line bounces between cores
  warm  the same loop while the worker keeps one proxy alive: the handle
        already exists (biased refcount), so no atomic on the region count
  get   `d.get(name)` on a plain dict: the floor of the loop itself
Reported: ns per acquire/drop per worker, aggregate operations per second,
and the aggregate relative to K=1 (ideal K; < 1 means contention costs more
than the second core brings); CPU ns per operation (thread_time) relative to
K=1 separates real contention (cache-line bouncing, lock waits spin on CPU)
from a busy machine (wall time grows, CPU time per operation does not).
Why: hand-offs and lookups from many interpreters must not serialize on the
region's reference count or the registry lock.
"""
import argparse
import json

import fsbench as F

WORKER = r'''
import json
from time import perf_counter_ns as _now, thread_time_ns as _cpu
import fsbench
try:
    import frozenshare
except ImportError:
    frozenshare = None
NAME = "fsbench-contention"
def loop_cold(n):
    lookup = frozenshare.lookup
    for _ in range(n):
        p = lookup(NAME)
        del p
def loop_warm(n):
    lookup = frozenshare.lookup
    keep = lookup(NAME)
    for _ in range(n):
        p = lookup(NAME)
        del p
    del keep
def loop_get(n):
    d = {NAME: 1}
    get = d.get
    for _ in range(n):
        p = get(NAME)
        del p
def run(mode, n, rq):
    f = globals()["loop_" + mode]
    f(min(n, 1000))
    c0 = _cpu()
    t0 = _now()
    f(n)
    t1 = _now()
    c1 = _cpu()
    fsbench.qput(rq, json.dumps({"t0": t0, "t1": t1, "cpu": c1 - c0, "ops": n}))
'''


def run_k(mode, k, n, rq):
    rs, agg = F.run_workers(k, lambda w: w.exec(WORKER), "run(%r, %d, %d)" % (mode, n, rq), rq)
    per_ns = [(r["t1"] - r["t0"]) / r["ops"] for r in rs]
    return dict(agg, mode=mode, ns_per_op_worker=sum(per_ns) / len(per_ns))


def main():
    p = F.common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    p.add_argument("--ks", default="1,2")
    p.add_argument("--ops", type=int, default=None, help="iterations per worker (default 2e5 quick, 2e6 full)")
    args = p.parse_args()
    ks = [int(x) for x in args.ks.split(",")]
    nops = args.ops or (200_000 if args.quick else 2_000_000)
    res = F.Results("contention", args)
    fs = F.load_fs()
    modes = ["get"]
    if fs is not None:
        fs.publish("fsbench-contention", fs.freeze({"config": F.gen_config(50), "ids": list(range(1000))}))
        modes = ["cold", "warm", "get"]
    rq = F.qcreate()
    rows = []
    for mode in modes:
        base = None
        for k in ks:
            try:
                r = run_k(mode, k, nops, rq)
            except Exception as e:                  # noqa: BLE001
                res.note("%s K=%d failed: %s" % (mode, k, str(e)[:300]))
                break
            base = base or r
            r["aggregate_vs_k1"] = r["ops_per_s"] / base["ops_per_s"]
            r["per_worker_slowdown_vs_k1"] = r["ns_per_op_worker"] / base["ns_per_op_worker"]
            r["cpu_cost_vs_k1"] = r["cpu_ns_per_op"] / base["cpu_ns_per_op"]
            rows.append(res.row(**r))
    if fs is not None:
        fs.unpublish("fsbench-contention")
        st = fs.stats()
        res.note("fs.stats() after: %s" % json.dumps(st, default=str))
    F.qdestroy(rq)
    F.table(["mode", "K", "ns/op/worker", "Mops/s", "aggregate_vs_K1", "per_worker_slowdown", "cpu_ns/op",
             "cpu_cost_vs_K1"],
            [[r["mode"], r["k"], r["ns_per_op_worker"], r["ops_per_s"] / 1e6, r["aggregate_vs_k1"],
              r["per_worker_slowdown_vs_k1"], r["cpu_ns_per_op"], r["cpu_cost_vs_k1"]] for r in rows])
    res.write()


if __name__ == "__main__":
    main()
