"""demo -- N worker interpreters that all need the same large data set:
frozenshare (freeze once, hand every worker an O(1) proxy) vs pickle copies
(what the 3.13 interpreter queue does by default).

Prints, for each way, the time until all workers are ready and the memory of
the process. Each way runs in its own fresh process so the memory numbers do
not mix. Run through `bash scripts/demo.sh` (which builds first), or directly
with PYTHONPATH pointing at a built frozenshare.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fsbench as F                     # noqa: E402
import bench_memory                     # noqa: E402


def main():
    p = argparse.ArgumentParser(
        prog="bash scripts/demo.sh",
        description="Start N worker subinterpreters that all need the same large data set, and compare "
                    "time-to-ready and memory: frozenshare (one frozen image shared in place) vs a pickle "
                    "copy per worker.")
    p.add_argument("-s", "--size", default="50MB",
                   help="data set size, as its pickle size (default 50MB: ~300 MB of live objects; "
                        "e.g. 10MB, 200MB, 1GB)")
    p.add_argument("-n", "--workers", type=int, default=4, help="number of worker interpreters (default 4)")
    p.add_argument("-k", "--kind", default="mixed", choices=["mixed", "records", "vocab", "config", "blob"],
                   help="data set: mixed = JSON-like records + non-ASCII vocabulary + nested config + "
                        "bytes blob (default)")
    p.add_argument("--only", choices=["frozenshare", "pickle"], help="run one side only")
    args = p.parse_args()
    size = F.parse_size(args.size)
    n = args.workers
    fs = F.load_fs()
    print("frozenshare demo -- Python %s, %d cores" % (sys.version.split()[0], os.cpu_count() or 0))
    print("%d worker interpreters (own GIL each) all need the same data set: %s, about %s as a pickle.\n"
          % (n, args.kind, F.fmt_bytes(size)))
    if fs is None and args.only != "pickle":
        print("frozenshare is not built for this Python: run `bash scripts/setup.sh` (or set FS_PYPATH). "
              "Showing the pickle side only.\n")
        args.only = "pickle"
    t_start = time.monotonic()

    def echo(line):
        line = line.strip()
        if line.startswith("fsbench:"):
            return
        sys.stdout.write("  [%6.1fs] %s\n" % (time.monotonic() - t_start, line))
        sys.stdout.flush()

    print("building the data set once (deterministic; both sides get the same one):")
    data_path = bench_memory.build_data_file(args.kind, size, echo)
    print("  done: %s on disk as a pickle\n" % F.fmt_bytes(os.path.getsize(data_path)))
    out = {}
    try:
        run_both(args, n, size, data_path, echo, out)
    finally:
        os.unlink(data_path)
    report(out, n, t_start)


def run_both(args, n, size, data_path, echo, out):
    for method in ("frozenshare", "pickle"):
        if args.only and method != args.only:
            continue
        print("%s:" % ("frozenshare: freeze once, hand each worker a proxy" if method == "frozenshare"
                       else "pickle: dumps once, each worker loads its own copy"))
        r = bench_memory.run_child(method, n, args.kind, size, False, echo=echo, data_path=data_path)
        if "error" in r and "rss_held" not in r:
            print("  failed: %s" % r["error"])
            continue
        out[method] = r
        print("  ready: %.2f s, process RSS %s\n" % (r["ready_s"], F.fmt_bytes(r["rss_held"])))


def report(out, n, t_start):
    rows = []
    f, k = out.get("frozenshare"), out.get("pickle")

    def cell(r, key, fmt):
        return fmt(r[key]) if r and r.get(key) is not None else "-"
    sec = lambda v: "%.3f s" % v if v >= 0.01 else "%.1f us" % (v * 1e6)   # noqa: E731
    rows.append(["time until all %d workers are ready" % n, cell(f, "ready_s", sec), cell(k, "ready_s", sec)])
    rows.append(["  prepare once (freeze / pickle.dumps)", cell(f, "prep_s", sec), cell(k, "prep_s", sec)])
    rows.append(["  hand-off to the workers (+ loads)", cell(f, "handoff_s", sec), cell(k, "handoff_s", sec)])
    rows.append(["process RSS with the %d workers" % n, cell(f, "rss_held", F.fmt_bytes),
                 cell(k, "rss_held", F.fmt_bytes)])
    rows.append(["memory added per worker by the data", cell(f, "per_worker_bytes", F.fmt_bytes),
                 cell(k, "per_worker_bytes", F.fmt_bytes)])
    rows.append(["shared frozen image", cell(f, "image_bytes", F.fmt_bytes), "-"])
    w0 = max(len(r[0]) for r in rows)
    print("%-*s  %16s  %16s" % (w0, "", "frozenshare", "pickle copies"))
    for r in rows:
        print("%-*s  %16s  %16s" % (w0, r[0], r[1], r[2]))
    if f and k:
        print("\nWith %d workers frozenshare was ready %.1fx sooner and used %.1fx less memory "
              "(%s vs %s); each extra worker costs %s instead of %s."
              % (n, k["ready_s"] / f["ready_s"], k["rss_held"] / f["rss_held"], F.fmt_bytes(f["rss_held"]),
                 F.fmt_bytes(k["rss_held"]), F.fmt_bytes(max(f["per_worker_bytes"], 0)),
                 F.fmt_bytes(k["per_worker_bytes"])))
    print("(total demo time %.1f s; --help for size and number of workers)" % (time.monotonic() - t_start))


if __name__ == "__main__":
    main()
