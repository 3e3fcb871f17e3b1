"""bench_scaling -- lookup throughput of K own-GIL interpreters reading one shared region.

What it measures: K subinterpreters, one thread each, all doing str-key
lookups (`m[k]` with equal-but-distinct probe keys, fixed shuffled order) at
the same time, K = 1, 2 (--ks). Aggregate throughput = all lookups / wall
time (first start to last end, one monotonic clock).
  frozenshare  every worker reads the SAME FrozenMap image (fs.publish in the
               main interpreter, fs.lookup in each worker)
  dict copy    every worker reads its own dict (received as a pickle)
  pure-Python loop  an integer loop touching no data: the ceiling for
               parallel subinterpreters on this machine at this moment (other
               load on a 2-core machine shows up here first)
Each K runs --repeats times, interleaved with the other Ks; the best run of
each K is reported (every run is in the JSON).
Reported: throughput relative to K=1 of the same implementation (ideal: K),
and frozenshare's throughput relative to a private dict at the same K. Also
the CPU time per lookup (thread_time of each worker): if it stays at K=1's
while the wall-clock speedup falls short, the shortfall is the machine (other
load, fewer free cores), not contention inside the process; cores_busy =
CPU seconds of the workers / wall seconds.
Why: reading shared data must not serialize the interpreters (no shared
counters on the read path: biased per-interpreter handles).
"""
import argparse
import json
import pickle

import fsbench as F

WORKER = r'''
import json, random, pickle
from time import perf_counter_ns as _now, thread_time_ns as _cpu
import fsbench
try:
    import frozenshare
except ImportError:
    frozenshare = None
m = None
keys = None
def setup(impl, q, nprobe):
    global m, keys
    if impl == "pure-Python loop":
        m, keys = {}, list(range(nprobe))
        return
    if impl == "frozenshare":
        m = frozenshare.lookup("fsbench-scaling")
    else:
        m = pickle.loads(fsbench.qget_wait(q))
    step = max(1, len(m) // nprobe)
    sample = [k for i, k in enumerate(m) if i % step == 0][:nprobe]
    random.Random(7).shuffle(sample)
    keys = [fsbench.probe_copy(k) for k in sample]
def work(m, keys, rounds):
    for _ in range(rounds):
        for k in keys:
            m[k]
def work_cpu(m, keys, rounds):                         # touches no data: the machine's ceiling
    x = 0
    for _ in range(rounds):
        for k in keys:
            x += k
def run(rounds, rq):
    w = work_cpu if not m else work
    w(m, keys, 1)                                      # warm-up
    c0 = _cpu()
    t0 = _now()
    w(m, keys, rounds)
    t1 = _now()
    c1 = _cpu()
    fsbench.qput(rq, json.dumps({"t0": t0, "t1": t1, "cpu": c1 - c0, "ops": rounds * len(keys)}))
'''


def run_k(impl, k, payload, nprobe, rounds, rq):
    q = F.qcreate()

    def setup(w):
        w.exec(WORKER)
        if impl == "dict copy":
            F.qput(q, payload)
        w.exec("setup(%r, %d, %d)" % (impl, q, nprobe))
    try:
        rs, agg = F.run_workers(k, setup, "run(%d, %d)" % (rounds, rq), rq)
    finally:
        F.qdestroy(q)
    per = [r["ops"] / ((r["t1"] - r["t0"]) / 1e9) for r in rs]
    return dict(agg, impl=impl, per_worker_ops_per_s=per,
                ns_per_op_per_worker=1e9 * k / agg["ops_per_s"])


def main():
    p = F.common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    p.add_argument("--ks", default="1,2", help="numbers of interpreters (threads), e.g. 1,2,4")
    p.add_argument("--entries", type=int, default=None, help="map entries (default 1e5 quick, 1e6 full)")
    p.add_argument("--seconds", type=float, default=None, help="target run time per worker (1 quick, 3 full)")
    p.add_argument("--repeats", type=int, default=3,
                   help="runs per K, interleaved across K; the best is reported (default 3)")
    args = p.parse_args()
    ks = [int(x) for x in args.ks.split(",")]
    n = args.entries or (100_000 if args.quick else 1_000_000)
    secs = args.seconds or (1.0 if args.quick else 3.0)
    probes = [("random 20k keys", 20_000), ("hot 1k keys", 1_000)]
    res = F.Results("scaling", args)
    fs = F.load_fs()
    vocab = F.gen_vocab(n)
    payload = pickle.dumps(vocab, 5)
    impls = ["dict copy", "pure-Python loop"]
    if fs is not None:
        fs.publish("fsbench-scaling", fs.freeze(vocab))
        impls.insert(0, "frozenshare")
    del vocab
    rq = F.qcreate()
    rows = []
    for plabel, nprobe in probes:
        for impl in impls:
            if impl == "pure-Python loop" and nprobe != probes[0][1]:
                continue
            # calibrate: rounds so that one worker runs about `secs`
            try:
                cal = run_k(impl, 1, payload, nprobe, 2, rq)
            except Exception as e:                  # noqa: BLE001
                res.note("%s failed: %s" % (impl, str(e)[:300]))
                continue
            rounds = max(1, int(secs / (cal["wall_s"] / 2)))
            # Repeats interleave the Ks, so a burst of other load hits every K
            # alike; the best run of each K is its capacity on this machine.
            runs = {k: [] for k in ks}
            for _ in range(max(1, args.repeats)):
                for k in ks:
                    runs[k].append(run_k(impl, k, payload, nprobe, rounds, rq))
            base = None
            for k in ks:
                r = max(runs[k], key=lambda x: x["ops_per_s"])
                r["all_ops_per_s"] = [x["ops_per_s"] for x in runs[k]]
                base = base or r
                r["speedup_vs_k1"] = r["ops_per_s"] / base["ops_per_s"]
                r["cpu_cost_vs_k1"] = r["cpu_ns_per_op"] / base["cpu_ns_per_op"]
                r["rounds"] = rounds
                rows.append(res.row(entries=n, probes=plabel, **r))
    if fs is not None:
        fs.unpublish("fsbench-scaling")
    F.qdestroy(rq)
    for r in rows:
        d = next((x for x in rows if x["impl"] == "dict copy" and x["k"] == r["k"]
                  and x["probes"] == r["probes"]), None)
        r["vs_dict_same_k"] = F.ratio(r["ops_per_s"], d["ops_per_s"]) if d else None
    F.table(["probes", "impl", "K", "Mops/s", "ns/op/worker", "speedup_vs_K1", "throughput_vs_dict",
             "cpu_ns/op", "cpu_cost_vs_K1", "cores_busy"],
            [[r["probes"] if r["impl"] != "pure-Python loop" else "-", r["impl"], r["k"], r["ops_per_s"] / 1e6,
              r["ns_per_op_per_worker"], r["speedup_vs_k1"], r["vs_dict_same_k"], r["cpu_ns_per_op"],
              r["cpu_cost_vs_k1"], r["cpu_busy"]] for r in rows])

    def pick(impl, pl):
        return next((r for r in rows if r["impl"] == impl and r["k"] == 2 and r["probes"] == pl), None)
    c2 = pick("pure-Python loop", probes[0][0])
    for pl, _ in probes:
        f2, d2 = pick("frozenshare", pl), pick("dict copy", pl)
        ctx = ("dict copies %.2fx, pure-Python loop %.2fx on this machine now"
               % (d2["speedup_vs_k1"], c2["speedup_vs_k1"])) if d2 and c2 else ""
        if f2 and c2:
            ctx += "; frozenshare / ceiling = %.2f; CPU time per lookup at K=2 = %.2fx K=1's" % (
                f2["speedup_vs_k1"] / c2["speedup_vs_k1"], f2["cpu_cost_vs_k1"])
        if f2:
            res.target("2 interpreters >= 1.8x throughput of 1 (frozenshare, %s)" % pl, f2["speedup_vs_k1"],
                       ">=1.8", f2["speedup_vs_k1"] >= 1.8, ctx)
        else:
            res.target("2 interpreters >= 1.8x throughput of 1 (%s)" % pl, None, ">=1.8", None,
                       "frozenshare not built; " + ctx)
    res.write()


if __name__ == "__main__":
    main()
