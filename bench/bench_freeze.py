"""bench_freeze -- freeze/thaw throughput and image size vs pickle and marshal.

What it measures, per data set (JSON-like records, non-ASCII vocabulary,
nested config, bytes blob):
  freeze  fs.freeze(obj)        vs pickle.dumps(obj, 5) and marshal.dumps(obj)
  thaw    fs.thaw(frozen)       vs pickle.loads(b) and marshal.loads(b)
and the sizes: the region's image bytes vs the pickle and marshal sizes vs
the live objects (sys.getsizeof over the unique objects of the graph).
Throughput is reported as MB/s of the pickle size (the same yardstick for all
three), time as the median of the repeats; each freeze's region is dropped
(reclaimed) outside the timed part.
Why: freeze is the price paid once per data set before O(1) hand-offs; it
should not cost more than pickling it for a single receiver.
"""
import argparse
import gc
import marshal
import pickle
import sys

import fsbench as F


def fs_rows(fs, obj, rec, rows, sizes):
    holder = {}

    def drop():
        holder.clear()                   # reclaim the previous region, untimed
    rec("serialize", "fs.freeze", lambda: holder.__setitem__("f", fs.freeze(obj)), drop)
    frozen = fs.freeze(obj)
    holder.clear()
    image = F.fs_image_bytes(frozen)
    sizes["image_bytes"] = image
    for r in rows.values():
        r["image_bytes"] = image
    rec("deserialize", "fs.thaw", lambda: fs.thaw(frozen))
    try:
        rows[("deserialize", "fs.thaw")]["roundtrip_equal"] = fs.thaw(frozen) == obj
    except Exception:                     # noqa: BLE001
        pass
    info = fs.info(frozen)
    rows[("serialize", "fs.freeze")]["info"] = {k: v for k, v in info.items()
                                                if isinstance(v, (int, float, str))}
    del frozen


def main():
    p = F.common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    p.add_argument("--size", default=None, help="pickle size per data set (default 10MB quick, 100MB full)")
    p.add_argument("--kinds", default="records,vocab,config,blob")
    args = p.parse_args()
    size = F.parse_size(args.size or ("10MB" if args.quick else "100MB"))
    reps = 3 if args.quick else 5
    res = F.Results("freeze", args)
    fs = F.load_fs()
    allrows = []
    for kind in args.kinds.split(","):
        obj = F.make_dataset(kind, size, progress=lambda m: print("#   " + m, file=sys.stderr, flush=True))
        pb = pickle.dumps(obj, 5)
        mb = marshal.dumps(obj)
        live = F.deep_sizeof(obj)
        sizes = {"pickle_bytes": len(pb), "marshal_bytes": len(mb), "live_bytes": live}
        rows = {}

        def rec(op, impl, fn, setup=None):
            ts = []
            for _ in range(reps):
                if setup:
                    setup()
                gc.collect()
                t0 = F.now_ns()
                fn()
                ts.append((F.now_ns() - t0) / 1e9)
            t = F.median(ts)
            rows[(op, impl)] = res.row(kind=kind, op=op, impl=impl, seconds=t, min_seconds=min(ts),
                                       mb_per_s=len(pb) / F.MB / t, **sizes)

        rec("serialize", "pickle.dumps", lambda: pickle.dumps(obj, 5))
        rec("serialize", "marshal.dumps", lambda: marshal.dumps(obj))
        rec("deserialize", "pickle.loads", lambda: pickle.loads(pb))
        rec("deserialize", "marshal.loads", lambda: marshal.loads(mb))
        if fs is not None:
            try:
                fs_rows(fs, obj, rec, rows, sizes)
            except Exception as e:                  # noqa: BLE001
                res.note("frozenshare on %s failed: %s: %s" % (kind, type(e).__name__, str(e)[:300]))
        for (op, impl), r in rows.items():
            base = rows[(op, "pickle.dumps" if op == "serialize" else "pickle.loads")]
            r["ratio_time_vs_pickle"] = F.ratio(r["seconds"], base["seconds"])
            r["speed_vs_pickle"] = F.ratio(base["seconds"], r["seconds"])
            allrows.append(r)
        del obj, pb, mb
        F.trim()

    F.table(["kind", "op", "impl", "seconds", "MB/s(pickle)", "speed_vs_pickle"],
            [[r["kind"], r["op"], r["impl"], r["seconds"], r["mb_per_s"], r["speed_vs_pickle"]]
             for r in allrows])
    print("\n# sizes")
    seen = []
    for r in allrows:
        if r["kind"] not in seen:
            seen.append(r["kind"])
    sz = []
    for k in seen:
        r = next(x for x in allrows if x["kind"] == k)
        img = r.get("image_bytes")
        sz.append([k, F.fmt_bytes(r["live_bytes"]), F.fmt_bytes(r["pickle_bytes"]), F.fmt_bytes(r["marshal_bytes"]),
                   F.fmt_bytes(img), F.ratio(img, r["pickle_bytes"]), F.ratio(img, r["live_bytes"])])
        res.row(kind=k, op="sizes", impl="-", live_bytes=r["live_bytes"], pickle_bytes=r["pickle_bytes"],
                marshal_bytes=r["marshal_bytes"], image_bytes=img)
    F.table(["kind", "live", "pickle", "marshal", "image", "image/pickle", "image/live"], sz)

    fr = [r for r in allrows if r["impl"] == "fs.freeze"]
    th = [r for r in allrows if r["impl"] == "fs.thaw"]
    if fr:
        worst = min(fr, key=lambda r: r["speed_vs_pickle"])
        res.target("freeze >= pickle.dumps speed (every data set)", worst["speed_vs_pickle"], ">=1",
                   worst["speed_vs_pickle"] >= 1,
                   ", ".join("%s %.2fx" % (r["kind"], r["speed_vs_pickle"]) for r in fr))
        worst = min(th, key=lambda r: r["speed_vs_pickle"])
        res.target("thaw >= pickle.loads speed (every data set)", worst["speed_vs_pickle"], ">=1",
                   worst["speed_vs_pickle"] >= 1,
                   ", ".join("%s %.2fx" % (r["kind"], r["speed_vs_pickle"]) for r in th))
    else:
        res.target("freeze >= pickle.dumps speed", None, ">=1", None, "frozenshare not built")
        res.target("thaw >= pickle.loads speed", None, ">=1", None, "frozenshare not built")
    res.write()


if __name__ == "__main__":
    main()
