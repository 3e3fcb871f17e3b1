"""report -- Markdown summary of the latest results (one Python version).

Reads bench/results/<bench>-<py>.json, writes bench/results/report-<py>.md,
and with --update-docs replaces the block between the markers
`<!-- results:begin -->` / `<!-- results:end -->` in docs/benchmarks.md.
Usage: python bench/report.py [--py py3.13] [--update-docs]
"""
import argparse
import json
import os

import fsbench as F

BENCHES = ["handoff", "memory", "access", "freeze", "scaling", "contention", "processes", "records"]
HANDOFF_ORDER = ["frozenshare", "pickle", "queue-default", "marshal", "orjson", "msgspec", "msgpack"]


def c(v, digits=3):
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1000:
            return "{:,.0f}".format(v)
        if abs(v) >= 100:
            return "%.0f" % v
        if abs(v) >= 10:
            return "%.1f" % v
        return "%.*g" % (digits, v)
    return str(v)


def md_table(headers, rows):
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        out.append("| " + " | ".join(c(x) for x in r) + " |")
    return "\n".join(out) + "\n"


def us(s):
    if s is None:
        return None
    if s >= 1:
        return "%.2f s" % s
    if s >= 1e-3:
        return "%.1f ms" % (s * 1e3)
    return "%.1f us" % (s * 1e6)


def sec_handoff(d):
    rows = d["rows"]
    out = []
    rec = [r for r in rows if r["kind"] == "records"]
    sizes = []
    for r in rec:
        if r["size"] not in sizes:
            sizes.append(r["size"])
    meths = [m for m in HANDOFF_ORDER if any(r["method"] == m for r in rows)]
    by = {(r["kind"], r["size"], r["method"]): r for r in rows}
    out.append("Time until another subinterpreter can read the data (median; send + receive). "
               "Records (list of JSON-like dicts), size = pickle bytes. "
               "Last column: pickle hand-off time / frozenshare hand-off time.\n\n")
    hdr = ["size", "items"] + meths + (["pickle / frozenshare"] if "frozenshare" in meths else [])
    tab = []
    for s in sizes:
        any_r = next(r for r in rec if r["size"] == s)
        line = [s + " (%s)" % F.fmt_bytes(any_r["pickle_bytes"]), any_r.get("items")]
        for m in meths:
            r = by.get(("records", s, m))
            line.append(us(r["total_s"]) if r else None)
        if "frozenshare" in meths:
            f, p = by.get(("records", s, "frozenshare")), by.get(("records", s, "pickle"))
            line.append("%sx" % c(p["total_s"] / f["total_s"]) if f and p else None)
        tab.append(line)
    out.append(md_table(hdr, tab))
    other = [(r["kind"], r["size"]) for r in rows if r["kind"] != "records"]
    other = list(dict.fromkeys(other))
    if other:
        out.append("\nOther data kinds:\n\n")
        tab = []
        for k, s in other:
            any_r = next(r for r in rows if r["kind"] == k and r["size"] == s)
            line = ["%s %s (%s)" % (k, s, F.fmt_bytes(any_r["pickle_bytes"]))]
            for m in meths:
                r = by.get((k, s, m))
                line.append(us(r["total_s"]) if r else None)
            tab.append(line)
        out.append(md_table(["data"] + meths, tab))
    fsr = [r for r in rec if r["method"] == "frozenshare"]
    if fsr:
        out.append("\nfrozenshare split: " + "; ".join(
            "%s send %s + receive %s" % (r["size"], us(r["send_s"]), us(r["recv_s"])) for r in fsr) + ".\n")
    return "".join(out)


def sec_memory(d):
    rows = d["rows"]
    if not rows:
        return "No rows.\n"
    r0 = rows[0]
    out = ["Data set: %s, pickle %s%s. One process; N own-GIL interpreters each hold the data set. "
           "`per worker` = (RSS after hand-off - RSS of main + N empty interpreters) / N; the empty "
           "interpreters have already run once in their worker threads (a control hand-off of an int), "
           "whose one-time cost, the same for every method, is the `thread warm-up` column.\n\n" % (
               r0.get("kind"), F.fmt_bytes(r0.get("pickle_bytes")),
               ", frozen image %s" % F.fmt_bytes(next((r.get("image_bytes") for r in rows if r.get("image_bytes")), None))
               if any(r.get("image_bytes") for r in rows) else "")]
    out.append(md_table(["method", "N", "RSS held (MiB)", "RSS base (MiB)", "per worker (MiB)",
                         "per worker % of a copy", "per worker % of image", "thread warm-up per worker (MiB)",
                         "time to ready (s)", "RSS / pickle RSS"],
                        [[r["method"], r["n"], r["rss_held"] / F.MB, r["rss_base"] / F.MB,
                          r["per_worker_bytes"] / F.MB, r.get("per_worker_pct_of_copy"),
                          r.get("per_worker_pct_of_image") if r["method"] == "frozenshare" else None,
                          (r.get("thread_warmup_per_worker_bytes") or 0) / F.MB,
                          r.get("ready_s"), r.get("rss_vs_pickle")] for r in rows]))
    return "".join(out)


def sec_access(d):
    rows = d["rows"]
    out = ["ns per operation in a Python loop (`for k in keys: m[k]`); `net` subtracts the empty loop. "
           "Ratios to the builtin (dict / tuple / frozenset / list of dicts) of the same run, the "
           "contenders taking turns, best of N. `list[records7]` rows are per record.\n\n"]
    out.append(md_table(["container", "operation", "implementation", "ns/op", "net ns/op", "x builtin", "x builtin (net)"],
                        [[r["group"], r["op"], r["impl"], r["ns_gross"], r["ns_net"], r["ratio_gross"],
                          r["ratio_net"]] for r in rows]))
    return "".join(out)


def sec_freeze(d):
    rows = [r for r in d["rows"] if r.get("op") != "sizes"]
    sizes = [r for r in d["rows"] if r.get("op") == "sizes"]
    out = ["Seconds: median and best of the interleaved rounds; MB/s of the pickle size (median); "
           "`speed vs pickle` = pickle's best time / this one's best, > 1 is faster than "
           "pickle.dumps (serialize) / pickle.loads (deserialize).\n\n"]
    out.append(md_table(["data", "op", "implementation", "seconds", "best", "MB/s", "speed vs pickle"],
                        [[r["kind"], r["op"], r["impl"], r["seconds"], r.get("min_seconds"), r["mb_per_s"],
                          r["speed_vs_pickle"]] for r in rows]))
    if sizes:
        out.append("\nSizes (image = `fs.info(f)['image_bytes']`, pickle protocol 5, live = sys.getsizeof "
                   "over the unique objects):\n\n")
        out.append(md_table(["data", "items", "live objects", "pickle", "marshal", "frozen image",
                             "image / pickle", "image / live"],
                            [[r["kind"], r.get("items"), F.fmt_bytes(r["live_bytes"]), F.fmt_bytes(r["pickle_bytes"]),
                              F.fmt_bytes(r["marshal_bytes"]), F.fmt_bytes(r.get("image_bytes")),
                              F.ratio(r.get("image_bytes"), r["pickle_bytes"]),
                              F.ratio(r.get("image_bytes"), r["live_bytes"])] for r in sizes]))
    return "".join(out)


def sec_scaling(d):
    rows = d["rows"]
    out = ["K interpreters in K threads doing str-key lookups at once (%s entries). Speedup = aggregate "
           "throughput / K=1 of the same implementation (ideal K).\n\n" % c(rows[0]["entries"] if rows else None)]
    out.append(md_table(["probes", "implementation", "K", "Mlookups/s", "ns/op per worker", "speedup vs K=1",
                         "throughput vs dict copy", "CPU ns/op", "CPU cost vs K=1", "cores busy"],
                        [[r.get("probes") if r["impl"] != "pure-Python loop" else "-", r["impl"], r["k"],
                          r["ops_per_s"] / 1e6, r["ns_per_op_per_worker"], r["speedup_vs_k1"],
                          r.get("vs_dict_same_k"), r.get("cpu_ns_per_op"), r.get("cpu_cost_vs_k1"),
                          r.get("cpu_busy")] for r in rows]))
    return "".join(out)


def sec_contention(d):
    rows = d["rows"]
    out = ["K interpreters acquiring and dropping one published region at once "
           "(`cold`: lookup+drop creates and releases the interpreter's handle each time; "
           "`warm`: a proxy is kept alive; `get`: dict.get, the loop's floor).\n\n"]
    out.append(md_table(["mode", "K", "ns/op per worker", "Mops/s total", "aggregate vs K=1",
                         "per-worker slowdown", "CPU ns/op", "CPU cost vs K=1"],
                        [[r["mode"], r["k"], r["ns_per_op_worker"], r["ops_per_s"] / 1e6, r["aggregate_vs_k1"],
                          r["per_worker_slowdown_vs_k1"], r.get("cpu_ns_per_op"), r.get("cpu_cost_vs_k1")]
                         for r in rows]))
    return "".join(out)


def sec_processes(d):
    rows = d["rows"]
    out = ["The image in other processes: time to a readable object from a file, verification "
           "throughput, str-key hits in a process with another hash secret, and N workers reading "
           "everything (private KiB added per worker).\n\n"]
    ready = [r for r in rows if r.get("part") == "ready"]
    if ready:
        out.append(md_table(["method", "seconds"], [[r["method"], r["seconds"]] for r in ready]))
        out.append("\n")
    work = [r for r in rows if r.get("part") == "workers"]
    if work:
        out.append(md_table(["method", "N", "seconds", "max KiB per worker"],
                            [[r["method"], r["n"], r["seconds"], max(r["anon_kib"])] for r in work]))
    return "".join(out)


def sec_records(d):
    out = ["Records of user classes and typed buffers: freeze and thaw against pickle, one field "
           "read per record against live instances, numpy.asarray against pickle.loads.\n\n"]
    out.append(md_table(["case", "frozenshare (s or ns)", "baseline", "ratio", "ratio is"],
                        [[r["case"], r["frozenshare"], r["baseline"], r["ratio"], r["meaning"]]
                         for r in d["rows"]]))
    return "".join(out)


SECTIONS = {"handoff": ("1. Hand-off to another subinterpreter", sec_handoff),
            "memory": ("2. Memory with N interpreters", sec_memory),
            "access": ("3. Access from Python", sec_access),
            "freeze": ("4. Freeze and thaw vs pickle and marshal", sec_freeze),
            "scaling": ("5. Scaling: K interpreters reading one region", sec_scaling),
            "contention": ("6. Contention: acquire/drop from K interpreters", sec_contention),
            "processes": ("7. Other processes: files, fork, spawn, Ray", sec_processes),
            "records": ("8. Records and typed buffers", sec_records)}


def build(py):
    docs = {}
    for b in BENCHES:
        p = os.path.join(F.RESULTS_DIR, "%s-%s.json" % (b, py))
        if os.path.exists(p):
            with open(p) as f:
                docs[b] = json.load(f)
    if not docs:
        return None
    m = next(iter(docs.values()))["machine"]
    out = []
    quick = any(d["params"].get("quick") for d in docs.values())
    out.append("Run of %s (%s mode), commit `%s`; Python %s (`%s`), %s, %s cores, %s RAM, %s, kernel %s; "
               "load average at start %s. frozenshare: %s. Peer libraries: %s.\n\n" % (
                   min(d["started"] for d in docs.values()), "quick" if quick else "full", m.get("commit"),
                   m["python"], m["executable"], m["cpu"], m["cores"], F.fmt_bytes(m.get("mem_bytes")),
                   m.get("os"), m.get("kernel"),
                   ", ".join("%.2f" % x for x in m.get("loadavg", [])) if m.get("loadavg") else "n/a",
                   "built" if m.get("frozenshare") else "**not built (baselines only)**",
                   ", ".join("%s %s" % (k, v) for k, v in m.get("libs", {}).items())))
    targets = [(b, t) for b in BENCHES if b in docs for t in docs[b]["targets"]]
    if targets:
        out.append("### Targets\n\n")
        out.append(md_table(["benchmark", "target", "measured", "verdict", "detail"],
                            [[b, t["name"], t["value"], "n/a" if t["met"] is None else ("met" if t["met"] else "**missed**"),
                              t.get("detail", "")] for b, t in targets]))
        out.append("\n")
    for b in BENCHES:
        if b not in docs:
            continue
        title, fn = SECTIONS[b]
        out.append("### %s\n\n" % title)
        try:
            out.append(fn(docs[b]))
        except Exception as e:                       # noqa: BLE001
            out.append("(could not render: %s)\n" % e)
        notes = docs[b].get("notes")
        if notes:
            out.append("\nNotes:\n\n" + "".join("- %s\n" % n for n in notes))
        out.append("\n")
    return "".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--py", default=F.PYTAG)
    p.add_argument("--update-docs", action="store_true")
    args = p.parse_args()
    text = build(args.py)
    if text is None:
        print("report: no results for %s" % args.py)
        return
    path = os.path.join(F.RESULTS_DIR, "report-%s.md" % args.py)
    with open(path, "w") as f:
        f.write(text)
    print("report: wrote %s" % os.path.relpath(path, F.ROOT))
    if args.update_docs:
        doc = os.path.join(F.ROOT, "docs", "benchmarks.md")
        with open(doc) as f:
            s = f.read()
        b, e = "<!-- results:begin -->", "<!-- results:end -->"
        if b in s and e in s:
            s = s[: s.index(b) + len(b)] + "\n" + text + s[s.index(e):]
            with open(doc, "w") as f:
                f.write(s)
            print("report: updated %s" % os.path.relpath(doc, F.ROOT))
        else:
            print("report: markers not found in docs/benchmarks.md; not updated")


if __name__ == "__main__":
    main()
