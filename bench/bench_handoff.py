"""bench_handoff -- time to make a data set readable in another subinterpreter.

What it measures: from "the sender holds the object" to "the receiving
interpreter holds an object it can read" (len() answered), for
  frozenshare    the frozen proxy put on a queue as XID (O(1): one atomic +1,
                 a handle and a proxy in the receiver); freeze() is done once
                 beforehand and measured in bench_freeze.py
  pickle         pickle.dumps(protocol 5) -> bytes on the queue -> pickle.loads
  queue-default  what the 3.13 high-level queue does by default
                 (test.support.interpreters.queues: syncobj=False ->
                 pickle.dumps, fmt=1 -> pickle.loads in get); 3.13 only
  marshal        marshal.dumps -> bytes -> marshal.loads
  orjson, msgspec (msgpack codec), msgpack
                 encode -> bytes -> decode.  orjson and msgspec are
                 single-phase modules that cannot be imported in an own-GIL
                 subinterpreter; their receiver is a 'legacy' (shared-GIL)
                 subinterpreter -- the best case for them.  msgpack imports in
                 an isolated interpreter only as its pure-Python fallback, so
                 it is measured (with its C extension) in the legacy one too.
Why: the question the project answers is "I put a list of dicts on a queue
between two subinterpreters -- what happens next?". Sizes go from 1 KB to
100 MB (pickle size) to show O(1) against O(n).

Timing: sender part (serialize + put) timed in the main interpreter, receiver
part (get + deserialize + len) timed inside the receiver with the same
monotonic clock; the exec() round trip used to drive the receiver is not
counted. Median of the repeats.
"""
import argparse
import gc
import marshal
import pickle
import sys

import fsbench as F

SIZES_QUICK = ["1KB", "10KB", "100KB", "1MB", "10MB", "100MB"]
SIZES_FULL = ["1KB", "10KB", "100KB", "1MB", "10MB", "30MB", "100MB"]

RECEIVER = r'''
import pickle, marshal
from time import perf_counter_ns as _now
import fsbench
try:
    import frozenshare
except ImportError:
    frozenshare = None
held = None
def recv_xid(q):
    t0 = _now(); o = fsbench.qget(q); len(o); return o, _now() - t0
def recv_pickle(q):
    t0 = _now(); o = pickle.loads(fsbench.qget(q)); len(o); return o, _now() - t0
def recv_queue_default(q):
    t0 = _now()
    o, fmt = fsbench.qget_raw(q)
    if fmt == 1:
        o = pickle.loads(o)
    len(o)
    return o, _now() - t0
def recv_marshal(q):
    t0 = _now(); o = marshal.loads(fsbench.qget(q)); len(o); return o, _now() - t0
'''

RECEIVER_LEGACY = RECEIVER + r'''
import orjson, msgspec, msgpack
_msgspec_dec = msgspec.msgpack.Decoder()
def recv_orjson(q):
    t0 = _now(); o = orjson.loads(fsbench.qget(q)); len(o); return o, _now() - t0
def recv_msgspec(q):
    t0 = _now(); o = _msgspec_dec.decode(fsbench.qget(q)); len(o); return o, _now() - t0
def recv_msgpack(q):
    t0 = _now(); o = msgpack.unpackb(fsbench.qget(q)); len(o); return o, _now() - t0
'''


def senders():
    s = {
        "pickle": lambda q, o: F.qput(q, pickle.dumps(o, 5)),
        "marshal": lambda q, o: F.qput(q, marshal.dumps(o)),
    }
    if F.V13:
        # Queue.put(obj) with the default syncobj=False: pickle.dumps with the
        # default protocol, fmt=_PICKLED; get() unpickles.
        s["queue-default"] = lambda q, o: F.qput(q, pickle.dumps(o), F.FMT_PICKLED)
    try:
        import orjson
        s["orjson"] = lambda q, o: F.qput(q, orjson.dumps(o))
    except ImportError:
        pass
    try:
        import msgspec
        enc = msgspec.msgpack.Encoder()
        s["msgspec"] = lambda q, o: F.qput(q, enc.encode(o))
    except ImportError:
        pass
    try:
        import msgpack
        s["msgpack"] = lambda q, o: F.qput(q, msgpack.packb(o))
    except ImportError:
        pass
    return s


RECV_FN = {"frozenshare": "recv_xid", "pickle": "recv_pickle", "queue-default": "recv_queue_default",
           "marshal": "recv_marshal", "orjson": "recv_orjson", "msgspec": "recv_msgspec",
           "msgpack": "recv_msgpack"}
LEGACY = {"orjson", "msgspec", "msgpack"}
ORDER = ["frozenshare", "pickle", "queue-default", "marshal", "orjson", "msgspec", "msgpack"]


def supports(method, kind):
    if method == "orjson" and kind in ("blob", "mixed"):
        return False                        # JSON has no bytes
    return True


def run_case(res, interps, q, rq, method, kind, size_label, obj, send, reps, extra):
    """Hand obj to the receiver `reps` times; one result row (median)."""
    it = interps["legacy" if method in LEGACY else "isolated"]
    fn = RECV_FN[method]
    sends, recvs = [], []
    gc.collect()
    for i in range(reps + 1):                  # +1: the first is a warm-up
        # Each hand-off follows an interpreter switch (exec), as in real use;
        # no gc.collect() in between, which would leave every cache cold.
        it.exec("held = None")
        t0 = F.now_ns()
        send(q, obj)
        t1 = F.now_ns()
        it.exec("held, _dt = %s(%d)\nfsbench.qput(%d, _dt)" % (fn, q, rq))
        dt = F.qget(rq)
        if i:
            sends.append(t1 - t0)
            recvs.append(dt)
    it.exec("_n = len(held); held = None\nfsbench.qput(%d, _n)" % rq)
    n_recv = F.qget(rq)
    totals = [a + b for a, b in zip(sends, recvs)]
    row = res.row(kind=kind, size=size_label, method=method, reps=reps,
                  send_s=F.median(sends) / 1e9, recv_s=F.median(recvs) / 1e9,
                  total_s=F.median(totals) / 1e9, total_min_s=min(totals) / 1e9,
                  receiver="legacy" if method in LEGACY else "isolated",
                  len_ok=(n_recv == len(obj)), **extra)
    if n_recv != len(obj):
        res.note("%s %s %s: receiver saw len %s, expected %s" % (method, kind, size_label, n_recv, len(obj)))
    return row


def main():
    p = F.common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    p.add_argument("--sizes", help="comma-separated sizes (pickle bytes), e.g. 1KB,1MB,100MB")
    p.add_argument("--kinds", default=None,
                   help="data kinds at the largest quick size (records,vocab,config,blob,mixed)")
    p.add_argument("--methods", default=",".join(ORDER))
    args = p.parse_args()
    sizes = (args.sizes.split(",") if args.sizes else (SIZES_QUICK if args.quick else SIZES_FULL))
    kinds_at = "10MB" if args.quick else "100MB"
    kinds = (args.kinds or "vocab,config,blob,mixed").split(",")
    methods = [m for m in args.methods.split(",") if m]

    res = F.Results("handoff", args)
    fs = F.load_fs()
    snd = senders()
    if not F.V13:
        res.note("Python 3.12: no _interpqueues, so no 'queue-default' row; channels carry the bytes")
    rq0 = F.qcreate()
    interps = {"isolated": F.Interp(isolated=True)}
    interps["isolated"].exec(RECEIVER)
    try:
        interps["legacy"] = F.Interp(isolated=False)
        interps["legacy"].exec(RECEIVER_LEGACY)
        interps["legacy"].exec("fsbench.qput(%d, msgpack.unpackb.__module__)" % rq0)
        mp_mod = F.qget(rq0)
        if "fallback" in mp_mod:
            res.note("msgpack: its Cython extension loads in only one interpreter per process, so the "
                     "receiver runs msgpack.fallback (pure Python); rows are that real-world cost")
    except RuntimeError as e:
        res.note("legacy receiver unavailable (%s): orjson/msgspec/msgpack skipped" % str(e).splitlines()[0])
        methods = [m for m in methods if m not in LEGACY]
    q, rq = F.qcreate(), F.qcreate()

    cases = [("records", s) for s in sizes] + [(k, kinds_at) for k in kinds]
    skipped_msgpack = []
    if "orjson" in methods and any(k in ("blob", "mixed") for k in kinds):
        res.note("orjson: no rows for blob and mixed (JSON has no bytes type)")
    for kind, size_label in cases:
        target = F.parse_size(size_label)
        obj = F.make_dataset(kind, target, progress=lambda m: print("#   " + m, file=sys.stderr, flush=True))
        pbytes = len(pickle.dumps(obj, 5))
        extra = {"pickle_bytes": pbytes, "items": len(obj)}
        big = pbytes > 20 * F.MB
        reps_copy = 1 if (args.quick and big) else (3 if big or pbytes > 2 * F.MB else (7 if args.quick else 15))
        reps_fs = 21 if args.quick else 101
        rows = {}
        if "frozenshare" in methods and fs is not None:
            try:
                t0 = F.now_ns()
                frozen = fs.freeze(obj)
                freeze_s = (F.now_ns() - t0) / 1e9
                ex = dict(extra, freeze_s=freeze_s, image_bytes=F.fs_image_bytes(frozen))
                rows["frozenshare"] = run_case(res, interps, q, rq, "frozenshare", kind, size_label, frozen,
                                               F.qput, reps_fs, ex)
            except Exception as e:                 # noqa: BLE001 -- report and go on with baselines
                res.note("frozenshare %s %s failed: %s: %s" % (kind, size_label, type(e).__name__,
                                                              str(e).splitlines()[0][:300]))
            frozen = None
        for m in methods:
            if m == "frozenshare" or m not in snd or not supports(m, kind):
                continue
            if m == "msgpack" and pbytes > (5 if args.quick else 30) * F.MB:
                skipped_msgpack.append("%s %s" % (kind, size_label))
                continue
            try:
                rows[m] = run_case(res, interps, q, rq, m, kind, size_label, obj, snd[m], reps_copy, extra)
            except Exception as e:                 # noqa: BLE001 -- e.g. unsupported type
                res.note("%s %s %s failed: %s" % (m, kind, size_label, str(e).splitlines()[0][:200]))
                while True:                            # drain what the failed send left
                    try:
                        F.qget(q)
                    except Exception:                  # noqa: BLE001
                        break
        base = rows.get("pickle")
        for m, r in rows.items():
            r["ratio_vs_pickle"] = F.ratio(r["total_s"], base["total_s"]) if base else None
            r["pickle_over_this"] = F.ratio(base["total_s"], r["total_s"]) if base else None
        F.table(["kind", "size", "pickle_bytes", "method", "send_us", "recv_us", "total_us",
                 "x_vs_pickle", "reps"],
                [[r["kind"], r["size"], F.fmt_bytes(r["pickle_bytes"]), m, r["send_s"] * 1e6,
                  r["recv_s"] * 1e6, r["total_s"] * 1e6, r["ratio_vs_pickle"], r["reps"]]
                 for m, r in sorted(rows.items(), key=lambda kv: ORDER.index(kv[0]))])
        del obj, rows
        F.trim()

    if skipped_msgpack:
        res.note("msgpack (pure-Python receiver, 7-25x pickle's time) not run above %d MB: %s"
                 % (5 if args.quick else 30, ", ".join(skipped_msgpack)))
    for it in interps.values():
        it.close()
    F.qdestroy(q)
    F.qdestroy(rq)

    # ---- summary and targets -------------------------------------------------
    rec = [r for r in res.rows if r["kind"] == "records"]
    by = {}
    for r in rec:
        by.setdefault(r["method"], {})[r["size"]] = r["total_s"]
    print("\n# hand-off time (us, median) vs size, records")
    meths = [m for m in ORDER if m in by]
    hdr = ["size"] + meths
    F.table(hdr, [[s] + [by[m].get(s, None) and by[m][s] * 1e6 for m in meths] for s in sizes])
    fsr = by.get("frozenshare", {})
    pk = by.get("pickle", {})
    big, small = sizes[-1], sizes[0]
    if fsr and pk and big in fsr and big in pk:
        sp = pk[big] / fsr[big]
        res.target("hand-off %s: pickle round trip / frozenshare >= 1000x" % big, sp, ">=1000", sp >= 1000,
                   "pickle %.3f s, frozenshare %.1f us" % (pk[big], fsr[big] * 1e6))
    else:
        res.target("hand-off 100MB >= 1000x faster than pickle", None, ">=1000", None, "frozenshare not built")
    if fsr and big in fsr and small in fsr:
        rr = fsr[big] / fsr[small]
        res.target("hand-off time %s / %s (frozenshare) <= 2x" % (big, small), rr, "<=2", rr <= 2,
                   "%.1f us vs %.1f us" % (fsr[big] * 1e6, fsr[small] * 1e6))
    else:
        res.target("hand-off time 100MB / 1KB <= 2x", None, "<=2", None, "frozenshare not built")
    res.write()


if __name__ == "__main__":
    main()
