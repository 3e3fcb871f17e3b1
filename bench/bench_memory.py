"""bench_memory -- RSS of one process whose N subinterpreters all hold one data set.

What it measures: for N = 1, 2, 4, 8 own-GIL subinterpreters that each hold
the same data set, the resident memory of the whole process, and what each
extra interpreter costs
  frozenshare  the data set frozen once in the main interpreter (the original
               is then dropped); each worker receives the proxy through a
               queue (an O(1) handle, the image is shared)
  pickle       pickle.dumps once; each worker receives the bytes through a
               queue and pickle.loads its own copy (what the 3.13 queue does
               by default); the main interpreter then drops the bytes
Each (method, N) runs in a fresh process so allocator state does not leak
between cases. Workers receive in parallel, one thread each (time-to-ready).

Numbers: rss_base = main + N empty workers (interpreters created, modules
imported, one control hand-off of a tiny data set by the same method run in
the same threads -- the first concurrent run of a worker that mallocs costs
~3.3 MB: C-library per-thread arenas, reported as
thread_warmup_per_worker_bytes -- nothing held; for pickle, minus the pickle bytes that are freed
once handed out); rss_held = after every worker holds the data and
touched it; per_worker = (rss_held - rss_base) / N is the data set's cost per
interpreter. Measured with /proc/self/statm and /proc/self/smaps_rollup after
gc + malloc_trim.
Why: the project's claim is "one image, no copy per interpreter".
"""
import argparse
import json
import os
import pickle
import subprocess
import sys
import threading

import fsbench as F

WORKER = r'''
import pickle, fsbench
try:
    import frozenshare
except ImportError:
    frozenshare = None
held = None
def receive(q, method):
    global held
    o = fsbench.qget_wait(q)
    if method == "control":
        return
    if method == "pickle":
        o = pickle.loads(o)
    held = o
    # touch it: len and one nested read, as a worker starting up would
    len(held)
    if hasattr(held, "keys") and "config" in held:
        held["config"]["version"]
'''


def handoff(workers, q, payload, method):
    """Every worker receives `payload` from the queue at once, one thread
    each; returns the error messages."""
    errors = []

    def run(w):
        try:
            w.exec("receive(%d, %r)" % (q, method))
        except Exception as e:                        # noqa: BLE001
            errors.append(str(e))
    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for _ in workers:
        F.qput(q, payload)
    for t in threads:
        t.join()
    return errors


def child(method, n, kind, size, progress, data_path=None):
    """Run one (method, N) case in this process; return a result dict.
    data_path: a pickle of the data set made by build_data_file (saves
    building it again in every case)."""
    fs = F.load_fs() if method == "frozenshare" else None
    if method == "frozenshare" and fs is None:
        return {"method": method, "n": n, "error": "frozenshare not built"}
    rss_start = F.rss_bytes()
    if data_path:
        progress("loading the data set")
        with open(data_path, "rb") as f:
            obj = pickle.load(f)
    else:
        progress("building the data set (%s, %s of pickle)" % (kind, F.fmt_bytes(size)))
        obj = F.make_dataset(kind, size, progress=progress)
    F.trim()
    rss_data = F.rss_bytes()
    out = {"method": method, "n": n, "kind": kind, "size": size,
           "live_rss_bytes": rss_data - rss_start}
    t0 = F.now_ns()
    if method == "frozenshare":
        progress("freezing")
        payload = fs.freeze(obj)
        out["image_bytes"] = F.fs_image_bytes(payload)
    else:
        progress("pickling")
        payload = pickle.dumps(obj, 5)
    out["prep_s"] = (F.now_ns() - t0) / 1e9
    out["pickle_bytes"] = len(payload) if method == "pickle" else len(pickle.dumps(obj, 5))
    del obj                                           # main keeps only the shareable form
    F.trim()
    out["rss_main_only"] = F.rss_bytes()
    progress("starting %d worker interpreters" % n)
    workers = [F.Interp(isolated=True) for _ in range(n)]
    for w in workers:
        w.exec(WORKER)
    q = F.qcreate()
    # Control round: the same threads-and-queue hand-off, by the same method,
    # of a tiny data set of the same form. The first concurrent run of each
    # worker costs ~3.3 MB of RSS per worker (C-library per-thread heap
    # arenas, created by the first malloc of the thread: with a tiny int
    # nothing mallocs, and the arena then lands in the data round of N=1);
    # it is paid once and is not the data set's cost, so it goes in the base.
    F.trim()
    rss_pre = F.rss_bytes()
    tiny = {"config": {"version": 0}}
    handoff(workers, q, fs.freeze(tiny) if method == "frozenshare" else pickle.dumps(tiny, 5),
            method)
    F.trim()
    out["rss_base"] = F.rss_bytes()
    out["thread_warmup_per_worker_bytes"] = (out["rss_base"] - rss_pre) / n
    if method == "pickle":
        # the pickle bytes are resident now and freed once handed out: do not
        # count their release as a saving of the copies
        out["rss_base"] -= len(payload)
    out["smaps_base"] = F.smaps_rollup()
    progress("handing the data set to %d workers" % n)
    t0 = F.now_ns()
    errors = handoff(workers, q, payload, method)
    out["handoff_s"] = (F.now_ns() - t0) / 1e9
    out["ready_s"] = out["prep_s"] + out["handoff_s"]
    if errors:
        out["error"] = errors[0]
    if method == "pickle":
        del payload                                   # copies live in the workers now
    F.trim()
    for w in workers:                                 # return freed worker heap pages too
        w.exec("import gc; gc.collect()")
    F.trim()
    out["rss_held"] = F.rss_bytes()
    out["smaps_held"] = F.smaps_rollup()
    out["per_worker_bytes"] = (out["rss_held"] - out["rss_base"]) / n
    out["per_worker_incl_interp_bytes"] = (out["rss_held"] - out["rss_main_only"]) / n
    for w in workers:
        w.close()
    F.qdestroy(q)
    return out


def build_data_file(kind, size, progress):
    """Build the data set once and pickle it to a temporary file; returns its path."""
    import tempfile
    obj = F.make_dataset(kind, size, progress=progress)
    fd, path = tempfile.mkstemp(prefix="fsbench-", suffix=".pickle")
    with os.fdopen(fd, "wb") as f:
        pickle.dump(obj, f, 5)
    return path


def run_child(method, n, kind, size, quick, echo=None, data_path=None):
    """Run one case in a fresh interpreter process; stream its progress."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", method, str(n), kind, str(size)]
    if data_path:
        cmd.append(data_path)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        if echo:
            echo(line.rstrip("\n"))
    out = p.stdout.read()
    p.wait()
    for line in out.splitlines()[::-1]:
        if line.startswith("{"):
            return json.loads(line)
    return {"method": method, "n": n, "error": "child failed (exit %s)" % p.returncode}


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        method, n, kind, size = sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
        r = child(method, n, kind, size,
                  lambda m: print("  [%s N=%d] %s" % (method, n, m), file=sys.stderr, flush=True),
                  sys.argv[6] if len(sys.argv) > 6 else None)
        print(json.dumps(r))
        return
    p = F.common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    p.add_argument("--size", default=None, help="data set size as pickle bytes (default 20MB quick, 100MB full)")
    p.add_argument("--kind", default="mixed", help="records|vocab|config|blob|mixed")
    p.add_argument("--ns", default="1,2,4,8")
    p.add_argument("--methods", default="frozenshare,pickle")
    args = p.parse_args()
    size = F.parse_size(args.size or ("20MB" if args.quick else "100MB"))
    ns = [int(x) for x in args.ns.split(",")]
    res = F.Results("memory", args)
    rows = []
    data_path = build_data_file(args.kind, size, lambda m: print("#   " + m, file=sys.stderr, flush=True))
    for method in args.methods.split(","):
        for n in ns:
            r = run_child(method, n, args.kind, size, args.quick,
                          echo=lambda s: print("#" + s, file=sys.stderr, flush=True), data_path=data_path)
            if "error" in r:
                res.note("%s N=%d: %s" % (method, n, r["error"]))
                if "rss_held" not in r:
                    continue
            rows.append(res.row(**r))
    os.unlink(data_path)
    by = {(r["method"], r["n"]): r for r in rows}
    copy1 = by.get(("pickle", 1))
    copy_bytes = copy1["per_worker_bytes"] if copy1 else None
    image = next((r.get("image_bytes") for r in rows if r.get("image_bytes")), None)
    for r in rows:
        base = by.get(("pickle", r["n"]))
        r["rss_vs_pickle"] = F.ratio(r["rss_held"], base["rss_held"]) if base else None
        r["per_worker_pct_of_copy"] = (100.0 * r["per_worker_bytes"] / copy_bytes) if copy_bytes else None
        r["per_worker_pct_of_image"] = (100.0 * r["per_worker_bytes"] / image) if image else None
    print("# data set: %s, pickle %s, image %s, one live copy %s" % (
        args.kind, F.fmt_bytes(rows[0]["pickle_bytes"]) if rows else "n/a", F.fmt_bytes(image),
        F.fmt_bytes(copy_bytes)))
    F.table(["method", "N", "rss_base_MB", "rss_held_MB", "per_worker_MB", "per_worker_%copy",
             "per_worker_%image", "thread_warmup_MB", "ready_s", "rss_vs_pickle"],
            [[r["method"], r["n"], r["rss_base"] / F.MB, r["rss_held"] / F.MB, r["per_worker_bytes"] / F.MB,
              r["per_worker_pct_of_copy"], r["per_worker_pct_of_image"] if r["method"] == "frozenshare" else None,
              r.get("thread_warmup_per_worker_bytes", 0) / F.MB, r["ready_s"], r["rss_vs_pickle"]]
             for r in rows])
    fsrows = [r for r in rows if r["method"] == "frozenshare"]
    if fsrows and image:
        worst = max(fsrows, key=lambda r: r["per_worker_bytes"])
        pct = 100.0 * worst["per_worker_bytes"] / image
        res.target("memory per extra interpreter <= 2% of data set (image)", pct, "<=2%", pct <= 2.0,
                   "worst N=%d: %.2f MB per worker, image %.1f MB; %.2f%% of one live copy" % (
                       worst["n"], worst["per_worker_bytes"] / F.MB, image / F.MB,
                       worst["per_worker_pct_of_copy"] or float("nan")))
    else:
        res.target("memory per extra interpreter <= 2% of data set", None, "<=2%", None, "frozenshare not built")
    res.write()


if __name__ == "__main__":
    main()
