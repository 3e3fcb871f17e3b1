"""bench_submit -- cost of InterpreterPoolExecutor.submit() with a big argument (Python 3.14+).

What it measures: the round trip `executor.submit(fn, data).result()` of
Python 3.14's concurrent.futures.InterpreterPoolExecutor, with a warm pool
of one worker interpreter (started, frozenshare imported) and an fn that
does O(1) work on its argument (len) and returns a small int, for
  floor               submit(fn, None): the executor's own cost, no data
  frozenshare         submit(fn, proxy), proxy = frozenshare.freeze(records)
                      passed positionally: travels as cross-interpreter data
                      (XID), i.e. by reference -- O(1)
  frozenshare-lookup  fs.publish(name, proxy) once, submit(fn, name); the
                      worker calls fs.lookup(name) -- also by reference
  frozenshare-kwarg   submit(fn, data=proxy): the NAIVE way that is O(n).
                      3.14 packs the user's kwargs as one dict; dicts are
                      not shareable, so the dict is pickled, and the proxy
                      with it, by value (its __reduce__ is
                      (freeze, (thaw(proxy),))): thaw + pickle in the
                      sender, unpickle + freeze in the worker
  plain               submit(fn, records): the plain list of dicts, which
                      the executor pickles (a list is not shareable)
freeze() is excluded from the frozenshare rows and reported on its own
(`freeze_s`), as is pickle.dumps of the records (`dumps_s`, the sender's
share of `plain`).
Why: issue 6 -- the submit cost of a frozen 100 MB data set should be that
of a 1 KB one, next to the cost of passing the plain object.

How 3.14 ships a task (concurrent/futures/interpreter.py): the worker thread
runs interp.call(do_call, results, fn, args, kwargs); each element of that
argument tuple goes through _PyObject_GetXIData with the pickle fallback.
Tuples are shareable item by item, so a proxy in `args` uses the proxy
type's registered XID (one region count +1); anything not shareable (a
list, a dict, kwargs) is pickled whole. The `evidence` step checks this on
every run: it wraps pickle.dumps in the sender during one submit per method
and lists what was pickled, and compares the region id the worker sees with
the sender's (a by-value copy is a new region).

Timing: one worker (max_workers=1), so every submit reaches the same warm
interpreter; median (and min) of `reps` round trips measured in the main
interpreter; no gc.collect() inside the loop. The O(1) methods run hundreds
of reps, taking turns (one round trip each per round) so that noise hits
them alike; the O(n) ones run 1-15 reps, fewer at large sizes. `new_regions`
counts regions created in the process while a method ran (for the O(1)
methods: during their shared block): 0 means nothing was frozen again.
"""
import argparse
import pickle
import sys

import fsbench as F

NEEDS = (3, 14)
SIZES_QUICK = ["1KB", "10KB", "100KB", "1MB", "10MB", "100MB"]
SIZES_FULL = ["1KB", "10KB", "100KB", "1MB", "10MB", "30MB", "100MB"]
ORDER = ["floor", "frozenshare", "frozenshare-lookup", "frozenshare-kwarg", "plain"]
BY_REF = {"floor", "frozenshare", "frozenshare-lookup"}
PUB_NAME = "bench_submit.records"

# --------------------------------------------------------------------------
# Worker side. The executor pickles fn by reference (module + name), so
# these live in this importable module, not in __main__ (see the bottom).
# --------------------------------------------------------------------------
_wfs = None                      # frozenshare in this (worker) interpreter


def worker_init(paths):
    """Initializer: the main interpreter's sys.path, frozenshare imported."""
    global _wfs
    sys.path[:] = list(paths) + [p for p in sys.path if p not in paths]
    try:
        import frozenshare
        _wfs = frozenshare
    except ImportError:
        _wfs = None


def size(x):
    return 0 if x is None else len(x)


def size_kw(*, data):
    return len(data)


def size_published(name):
    return len(_wfs.lookup(name))


def _region(x):
    try:
        return _wfs.info(x)["region_id"]
    except Exception:                              # noqa: BLE001 -- not a proxy
        return -1


def probe(x):
    """(len, region id the worker sees or -1, process-wide regions_created)."""
    return len(x), _region(x), _wfs.stats()["regions_created"] if _wfs else -1


def probe_kw(*, data):
    return probe(data)


def probe_published(name):
    return probe(_wfs.lookup(name))


def worker_has_fs():
    return _wfs is not None


# --------------------------------------------------------------------------
# Main side
# --------------------------------------------------------------------------

def call_of(method, obj, frozen):
    """(fn, args, kwargs) to time, (probe_fn, args, kwargs) for the evidence."""
    if method == "floor":
        return (size, (None,), {}), None
    if method == "frozenshare":
        return (size, (frozen,), {}), (probe, (frozen,), {})
    if method == "frozenshare-lookup":
        return (size_published, (PUB_NAME,), {}), (probe_published, (PUB_NAME,), {})
    if method == "frozenshare-kwarg":
        return (size_kw, (), {"data": frozen}), (probe_kw, (), {"data": frozen})
    return (size, (obj,), {}), (probe, (obj,), {})


def time_submit(ex, call, reps, warm):
    fn, args, kwargs = call
    if warm:
        ex.submit(fn, *args, **kwargs).result()
    ts, r = [], None
    for _ in range(reps):
        t0 = F.now_ns()
        r = ex.submit(fn, *args, **kwargs).result()
        ts.append(F.now_ns() - t0)
    return ts, r


def pickled_during(ex, call):
    """Type names of what pickle.dumps saw in this interpreter during one submit."""
    seen = []
    real = pickle.dumps

    def spy(obj, *a, **k):
        t = type(obj).__name__
        if callable(obj) and hasattr(obj, "__qualname__"):
            t += " %s.%s" % (getattr(obj, "__module__", "?"), obj.__qualname__)
        elif isinstance(obj, (tuple, list)):
            t += "[%s]" % ",".join(sorted({type(v).__name__ for v in obj}))
        elif isinstance(obj, dict):
            t += "{%s}" % ",".join("%s: %s" % (k2, type(v).__name__) for k2, v in obj.items())
        seen.append(t)
        return real(obj, *a, **k)
    fn, args, kwargs = call
    pickle.dumps = spy
    try:
        ex.submit(fn, *args, **kwargs).result()
    finally:
        pickle.dumps = real
    return seen


def main():
    p = F.common_args(argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="Needs Python 3.14+; on a Debian 12/13 host run it in the sid root: "
               "bash scripts/bench.sh --in-root [--quick]"))
    p.add_argument("--sizes", help="comma-separated sizes (pickle bytes of the records), e.g. 1KB,1MB,100MB")
    p.add_argument("--methods", default=",".join(ORDER), help="subset of " + ",".join(ORDER))
    p.add_argument("--reps", type=int, default=None, help="round trips per O(1) case (default 201, full 501)")
    p.add_argument("--max-copy", default=None,
                   help="largest size for the by-value methods plain and frozenshare-kwarg "
                        "(default: plain always; kwarg 10MB with --quick)")
    args = p.parse_args()
    if sys.version_info < NEEDS:
        print("bench_submit: needs Python 3.14+ (concurrent.futures.InterpreterPoolExecutor); "
              "this is Python %d.%d -- skipped. Run it with Python 3.14, e.g. "
              "bash scripts/bench.sh --in-root --quick" % F.PY)
        return 0
    from concurrent.futures import InterpreterPoolExecutor

    sizes = args.sizes.split(",") if args.sizes else (SIZES_QUICK if args.quick else SIZES_FULL)
    methods = [m for m in ORDER if m in args.methods.split(",")]
    reps_fast = args.reps or (201 if args.quick else 501)
    max_plain = F.parse_size(args.max_copy) if args.max_copy else None
    max_kwarg = F.parse_size(args.max_copy) if args.max_copy else (10 * F.MB if args.quick else None)

    res = F.Results("submit", args)
    fs = F.load_fs()
    if fs is None:
        methods = [m for m in methods if m not in ("frozenshare", "frozenshare-lookup", "frozenshare-kwarg")]
    ex = InterpreterPoolExecutor(max_workers=1, initializer=worker_init,
                                 initargs=(tuple(q for q in sys.path if q),))
    t0 = F.now_ns()
    ex.submit(size, None).result()                 # starts the worker, runs worker_init
    start_s = (F.now_ns() - t0) / 1e9
    if fs is not None and not ex.submit(worker_has_fs).result():
        res.note("the worker interpreter cannot import frozenshare: frozenshare rows skipped")
        methods = [m for m in methods if m not in ("frozenshare", "frozenshare-lookup", "frozenshare-kwarg")]
    for _ in range(50):                            # warm: specialization, the worker's caches
        ex.submit(size, None).result()
    res.note("worker start (interpreter creation + worker_init) %.1f ms" % (start_s * 1e3))
    if max_kwarg is not None and "frozenshare-kwarg" in methods:
        res.note("frozenshare-kwarg (by value, O(n)) measured up to %s only" % F.fmt_bytes(max_kwarg))
    if max_plain is not None and "plain" in methods:
        res.note("plain measured up to %s only" % F.fmt_bytes(max_plain))
    if args.quick:
        res.note("quick mode: the by-value rows run once above 20 MB (one sample, not a median)")

    evidence = {}
    for size_label in sizes:
        target = F.parse_size(size_label)
        obj = F.make_dataset("records", target, progress=lambda m: print("#   " + m, file=sys.stderr, flush=True))
        t0 = F.now_ns()
        pbytes = len(pickle.dumps(obj))            # the executor's protocol (the default)
        dumps_s = (F.now_ns() - t0) / 1e9
        big = pbytes > 20 * F.MB
        reps_copy = 1 if (args.quick and big) else (3 if pbytes > 2 * F.MB else (7 if args.quick else 15))
        frozen, freeze_s, image, sender_region = None, None, None, None
        if fs is not None:
            t0 = F.now_ns()
            frozen = fs.freeze(obj)
            freeze_s = (F.now_ns() - t0) / 1e9
            image = F.fs_image_bytes(frozen)
            fs.publish(PUB_NAME, frozen)
            sender_region = fs.info(frozen)["region_id"]
        todo = [m for m in methods
                if not (m == "plain" and max_plain is not None and pbytes > max_plain * 1.1)
                and not (m == "frozenshare-kwarg" and max_kwarg is not None and pbytes > max_kwarg * 1.1)]
        calls = {m: call_of(m, obj, frozen) for m in todo}
        if size_label == sizes[0]:
            evidence = {m: pickled_during(ex, calls[m][0]) for m in todo}
        timed = {}                                 # method -> (times, last result, new regions)
        # The O(1) methods take turns, one round trip each, so that noise (the
        # other core's load, the main interpreter's gc) hits them alike.
        fast = [m for m in todo if m in BY_REF]
        if fast:
            F.trim()
            created0 = fs.stats()["regions_created"] if fs else None
            for m in fast:
                ex.submit(calls[m][0][0], *calls[m][0][1], **calls[m][0][2]).result()
            for m in fast:
                timed[m] = ([], None, None)
            for _ in range(reps_fast):
                for m in fast:
                    ts, r = time_submit(ex, calls[m][0], 1, warm=False)
                    timed[m] = (timed[m][0] + ts, r, None)
            created = fs.stats()["regions_created"] - created0 if fs else None
            timed = {m: (ts, r, created) for m, (ts, r, _) in timed.items()}
        for m in todo:
            if m in BY_REF:
                continue
            F.trim()
            created0 = fs.stats()["regions_created"] if fs else None
            ts, r = time_submit(ex, calls[m][0], reps_copy, warm=reps_copy >= 7)
            timed[m] = (ts, r, fs.stats()["regions_created"] - created0 if fs else None)
        rows = {}
        for m in todo:
            ts, r, created = timed[m]
            if r != len(obj) and m != "floor":
                res.note("%s %s: worker returned %r, expected %d" % (m, size_label, r, len(obj)))
            transport, seen_region = "none", None
            pcall = calls[m][1]
            if pcall is not None:
                fn, a, k = pcall
                _, seen_region, _ = ex.submit(fn, *a, **k).result()
                if seen_region == -1:
                    transport = "pickled (plain objects)"
                elif seen_region == sender_region:
                    transport = "by reference (same region)"
                else:
                    transport = "by value (new region %d)" % seen_region
            rows[m] = res.row(kind="records", size=size_label, method=m, reps=len(ts),
                              median_s=F.median(ts) / 1e9, min_s=min(ts) / 1e9,
                              pickle_bytes=pbytes, items=len(obj), dumps_s=dumps_s,
                              freeze_s=freeze_s, image_bytes=image, transport=transport,
                              worker_region=seen_region, sender_region=sender_region,
                              regions_created_during=created)
        floor = rows.get("floor")
        plain = rows.get("plain")
        for r in rows.values():
            r["x_floor"] = F.ratio(r["median_s"], floor["median_s"]) if floor else None
            r["plain_over_this"] = F.ratio(plain["median_s"], r["median_s"]) if plain else None
        F.table(["size", "pickle_bytes", "method", "transport", "reps", "median_us", "min_us",
                 "x_floor", "plain/this", "new_regions"],
                [[size_label, F.fmt_bytes(pbytes), m, r["transport"], r["reps"], r["median_s"] * 1e6,
                  r["min_s"] * 1e6, r["x_floor"], r["plain_over_this"], r["regions_created_during"]]
                 for m, r in rows.items()])
        print("# %s: freeze %.4f s (excluded above), pickle.dumps %.4f s, image %s, %d items" % (
            size_label, freeze_s if freeze_s is not None else float("nan"), dumps_s,
            F.fmt_bytes(image), len(obj)), flush=True)
        if fs is not None:
            fs.unpublish(PUB_NAME)
        del obj, frozen, rows
        F.trim()
    ex.shutdown(wait=True)

    # ---- evidence, summary, targets ---------------------------------------------
    print("\n# what pickle.dumps saw in the sender during one submit (%s records)" % sizes[0])
    for m in ORDER:
        if m in evidence:
            print("#   %-19s %s" % (m, ", ".join(evidence[m]) or "nothing"))
    res.params["evidence_pickled"] = evidence
    if "plain" in evidence and not any(t.startswith("list") for t in evidence["plain"]):
        res.note("the pickle.dumps spy did not see the plain list: this Python pickles by another "
                 "route, so the 'what pickle.dumps saw' lines prove nothing here (region ids still do)")
    by = {}
    for r in res.rows:
        by.setdefault(r["method"], {})[r["size"]] = r
    meths = [m for m in ORDER if m in by]
    print("\n# submit round trip (us, median) vs size, records; freeze excluded")
    F.table(["size", "items", "freeze_s"] + meths + ["plain/frozenshare"],
            [[s, next((by[m][s]["items"] for m in meths if s in by[m]), None),
              next((by[m][s]["freeze_s"] for m in meths if s in by[m]), None)]
             + [by[m][s]["median_s"] * 1e6 if s in by[m] else None for m in meths]
             + [F.ratio(by.get("plain", {}).get(s, {}).get("median_s"),
                        by.get("frozenshare", {}).get(s, {}).get("median_s"))]
             for s in sizes])
    fsr, pk, fl = by.get("frozenshare", {}), by.get("plain", {}), by.get("floor", {})
    big, small = sizes[-1], sizes[0]
    if big in fsr and small in fsr:
        rr = fsr[big]["median_s"] / fsr[small]["median_s"]
        res.target("submit cost %s / %s (frozenshare) <= 2x" % (big, small), rr, "<=2", rr <= 2,
                   "%.1f us vs %.1f us; %s" % (fsr[big]["median_s"] * 1e6, fsr[small]["median_s"] * 1e6,
                                               fsr[big]["transport"]))
    else:
        res.target("submit cost 100MB / 1KB (frozenshare) <= 2x", None, "<=2", None, "frozenshare not built")
    if big in fsr and big in pk:
        sp = pk[big]["median_s"] / fsr[big]["median_s"]
        res.target("plain pickled / frozenshare at %s >= 1000x" % big, sp, ">=1000", sp >= 1000,
                   "plain %.3f s (%d reps), frozenshare %.1f us" % (pk[big]["median_s"], pk[big]["reps"],
                                                                     fsr[big]["median_s"] * 1e6))
    else:
        res.target("plain pickled / frozenshare at 100MB >= 1000x", None, ">=1000", None,
                   "frozenshare or plain row missing")
    if big in fsr and big in fl:
        rf = fsr[big]["median_s"] / fl[big]["median_s"]
        res.target("frozenshare %s / submit(None) floor <= 2x" % big, rf, "<=2", rf <= 2,
                   "%.1f us vs %.1f us" % (fsr[big]["median_s"] * 1e6, fl[big]["median_s"] * 1e6))
    res.write()
    return 0


if __name__ == "__main__":
    # The worker interpreters unpickle fn by reference (module + name) and
    # cannot see this process's __main__: run main() from the module
    # imported under its own name, so the functions above are bench_submit.*.
    import bench_submit
    sys.exit(bench_submit.main())
