"""plot -- PNG plots of the latest results with gnuplot.

  bench/results/handoff-<py>.png  hand-off time vs data size (log-log), one
                                  line per method: O(1) vs O(n)
  bench/results/memory-<py>.png   process RSS vs number of interpreters
                                  holding the data set, frozenshare vs copies
With --docs, the small PNGs committed under docs/ (shown in docs/benchmarks.md
and the README; each < 60 KB, 760 px wide):
  docs/image-size.png     bytes per data set: image, pickle, marshal, live
                          objects, relative to the pickle (freeze-<py>.json)
  docs/access-ratios.png  time per operation / the builtin's (list of dicts,
                          dict, tuple), log scale, bars from parity (1.0) with
                          issue 12's targets marked (access-<py>.json)
  docs/freeze-ratios.png  freeze and thaw speed vs pickle.dumps/loads per
                          data set, with the targets (freeze-<py>.json)
  docs/handoff.png, docs/memory.png   the two plots above, when their results
                          exist
Reads bench/results/<bench>-<py>.json ($FS_BENCH_RESULTS); writes the .dat and
.gp files into the results directory (never into docs/) so a plot can be
re-made or restyled by hand.  Needs gnuplot with the pngcairo terminal
(Debian: gnuplot-nox).
Usage: python bench/plot.py [--py py3.13] [--docs]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import fsbench as F

ORDER = ["frozenshare", "pickle", "queue-default", "marshal", "orjson", "msgspec", "msgpack"]


def load(name, py):
    path = os.path.join(F.RESULTS_DIR, "%s-%s.json" % (name, py))
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def gp_escape(s):
    return s.replace('"', '\\"')


def title_of(doc):
    m = doc["machine"]
    return "Python %s, %s, %s cores" % (m["python"], m["cpu"].replace("@", "at"), m["cores"])


SMALL = 'set terminal pngcairo size %d,%d enhanced font "DejaVu Sans,9"'
BIG = 'set terminal pngcairo size 1000,640 enhanced font "DejaVu Sans,11"'


def plot_handoff(doc, py, out, png=None, term=BIG):
    rows = [r for r in doc["rows"] if r.get("kind") == "records"]
    meths = [m for m in ORDER if any(r["method"] == m for r in rows)]
    if not meths:
        return None
    dat = os.path.join(out, "handoff-%s.dat" % py)
    with open(dat, "w") as f:
        for m in meths:
            f.write("# %s\n" % m)
            for r in sorted((r for r in rows if r["method"] == m), key=lambda r: r["pickle_bytes"]):
                f.write("%d %.9g\n" % (r["pickle_bytes"], r["total_s"]))
            f.write("\n\n")
    png = png or os.path.join(out, "handoff-%s.png" % py)
    plots = ", ".join('"%s" index %d using ($1/1048576):($2*1e6) with linespoints lw 2 pt 7 title "%s"'
                      % (dat, i, m + (" (receiver: legacy interp)" if m in ("orjson", "msgspec", "msgpack") else ""))
                      for i, m in enumerate(meths))
    gp = """%s
set output "%s"
set title "Hand-off to another subinterpreter: JSON-like records\\n{/*0.8 %s}"
set xlabel "data size (pickle bytes, MiB)"
set ylabel "time until the receiver can read it (microseconds)"
set logscale xy
set format x "10^{%%L}"
set format y "10^{%%L}"
set grid
set key top left
plot %s
""" % (term, png, gp_escape(title_of(doc)), plots)
    return run_gnuplot(gp, os.path.join(out, os.path.basename(png)[:-4] + ".gp"), png)


def plot_memory(doc, py, out, png=None, term=BIG):
    rows = doc["rows"]
    meths = [m for m in ("frozenshare", "pickle") if any(r["method"] == m for r in rows)]
    if not meths:
        return None
    dat = os.path.join(out, "memory-%s.dat" % py)
    with open(dat, "w") as f:
        for m in meths:
            f.write("# %s: N rss_held_MiB rss_base_MiB\n" % m)
            for r in sorted((r for r in rows if r["method"] == m), key=lambda r: r["n"]):
                f.write("%d %.3f %.3f\n" % (r["n"], r["rss_held"] / F.MB, r["rss_base"] / F.MB))
            f.write("\n\n")
    png = png or os.path.join(out, "memory-%s.png" % py)
    label = {"frozenshare": "frozenshare (one shared image)", "pickle": "pickle copy per interpreter"}
    plots = []
    for i, m in enumerate(meths):
        plots.append('"%s" index %d using 1:2 with linespoints lw 2 pt 7 title "%s"' % (dat, i, label[m]))
    i = meths.index("pickle") if "pickle" in meths else 0
    plots.append('"%s" index %d using 1:3 with lines dt 2 lc rgb "gray" title "%s"' % (
        dat, i, "main + N empty interpreters" if "pickle" in meths else "before the hand-off"))
    size = F.fmt_bytes(rows[0].get("pickle_bytes")) if rows else "?"
    gp = """%s
set output "%s"
set title "Process RSS with N subinterpreters each holding the data set (%s pickle, %s)\\n{/*0.8 %s}"
set xlabel "N interpreters"
set ylabel "RSS (MiB)"
set xtics (1, 2, 4, 8, 16)
set grid
set key top left
set yrange [0:*]
plot %s
""" % (term, png, gp_escape(size), rows[0].get("kind", "") if rows else "", gp_escape(title_of(doc)),
       ", ".join(plots))
    return run_gnuplot(gp, os.path.join(out, os.path.basename(png)[:-4] + ".gp"), png)


# --------------------------------------------------------------------------
# docs/: the figures of issue 12's rows
# --------------------------------------------------------------------------

SIZE_KINDS = ["records", "records7", "vocab", "tokens", "config", "blob"]
SIZE_TARGETS = {"records7": 1.5, "tokens": 2.5}          # image / pickle, issue 12
# colours: image, pickle, marshal, live objects
SIZE_SERIES = [("image_bytes", "frozen image", "#1f77b4"), ("pickle_bytes", "pickle (protocol 5)", "#7f7f7f"),
               ("marshal_bytes", "marshal", "#bcbd22"), ("live_bytes", "live objects (deep sizeof)", "#ff7f0e")]


def commit_of(doc):
    return doc["machine"].get("commit") or "?"


def plot_image_size(doc, py, out, png):
    rows = {r["kind"]: r for r in doc["rows"] if r.get("op") == "sizes"}
    kinds = [k for k in SIZE_KINDS if k in rows] + [k for k in rows if k not in SIZE_KINDS]
    if not kinds:
        return None
    nser = len(SIZE_SERIES)
    dat = os.path.join(out, "image-size-%s.dat" % py)
    with open(dat, "w") as f:
        f.write("# x  bytes/pickle  bytes  series-index  kind\n")
        for j, (key, _, _) in enumerate(SIZE_SERIES):
            f.write("# %s\n" % key)
            for i, k in enumerate(kinds):
                r = rows[k]
                v = r.get(key)
                x = i * (nser + 1) + j
                if v:
                    f.write('%d %.6g %d %d "%s"\n' % (x, v / r["pickle_bytes"], v, j, F.fmt_bytes(v)))
            f.write("\n\n")
        f.write("# targets: x  image/pickle limit\n")
        for i, k in enumerate(kinds):
            if k in SIZE_TARGETS:
                f.write("%d %g\n" % (i * (nser + 1), SIZE_TARGETS[k]))
        f.write("\n\n")
    xt = ", ".join('"%s\\n{/*0.9 %s, %s}" %g' % (
        k, c_items(rows[k].get("items")), F.fmt_bytes(rows[k]["pickle_bytes"]), i * (nser + 1) + (nser - 1) / 2)
        for i, k in enumerate(kinds))
    plots = []
    for j, (_, label, colour) in enumerate(SIZE_SERIES):
        plots.append('"%s" index %d using 1:2:(0.9) with boxes fs solid 0.85 noborder lc rgb "%s" title "%s"'
                     % (dat, j, colour, label))
    plots.append('"%s" index 0 using 1:($2*1.12):(sprintf("%%.1fx", $2)) with labels font ",8" notitle' % dat)
    plots.append('"%s" index %d using ($1-0.45):2:(0.9):(0) with vectors nohead lw 3 lc rgb "#d62728" '
                 'title "issue 12 target (image / pickle)"' % (dat, nser))
    gp = """%s
set output "%s"
set title "Size of one data set: frozen image vs pickle, marshal, live objects\\n{/*0.85 %s, commit %s; labels: image / pickle; x: items, pickle size}"
set ylabel "bytes / pickle bytes (log scale)"
set logscale y
set yrange [0.3:60]
set ytics (0.5, 1, 2, 5, 10, 20)
set bmargin 3.5
set grid ytics
set xtics (%s) scale 0 font ",8"
set xrange [-1:%d]
set boxwidth 0.9 absolute
set key top center horizontal font ",8" maxcols 3
plot %s
""" % (SMALL % (760, 400), png,
       gp_escape(title_of(doc)), commit_of(doc), xt, len(kinds) * (nser + 1) - 1, ", ".join(plots))
    return run_gnuplot(gp, os.path.join(out, "image-size-%s.gp" % py), png)


def c_items(n):
    if n is None:
        return "?"
    if n >= 1_000_000:
        return "%.1fM" % (n / 1e6)
    if n >= 1000:
        return "%dk" % round(n / 1000)
    return str(n)


# (group, op, frozen impl, ratio key, label, issue 12 target or None); top to bottom
ACCESS_ROWS = [
    ("list[records7]", 'field read [r["token"] for r in l]', "FrozenList", "ratio_gross",
     "records: [r[token] for r in l]", 2.0),
    ("list[records7]", "r.items() per record", "FrozenList", "ratio_gross", "records: r.items() per record", 2.0),
    ("list[records7]", "iter records", "FrozenList", "ratio_gross", "records: for r in l", None),
    ("map[tokens]", "getitem hit", "FrozenMap", "ratio_net", "short tokens: m[k] hit", 1.1),
    ("map", "getitem hit", "FrozenMap", "ratio_net", "long non-ASCII keys: m[k] hit", 1.1),
    ("map[tokens]", "getitem hit (hot 1k)", "FrozenMap", "ratio_net", "short tokens: m[k] hit, hot 1k", None),
    ("map", "get miss", "FrozenMap", "ratio_net", "long keys: m.get(k) miss", None),
    ("map", "iter items", "FrozenMap", "ratio_gross", "long keys: for k, v in m.items()", None),
    ("tuple[tokens]", "iter", "FrozenTuple", "ratio_gross", "FrozenTuple[short str]: iter", 3.0),
    ("tuple[str]", "iter", "FrozenTuple", "ratio_gross", "FrozenTuple[long str]: iter", 3.0),
    ("tuple[int]", "iter", "FrozenTuple", "ratio_gross", "FrozenTuple[int]: iter", None),
]


def plot_access(doc, py, out, png):
    by = {(r["group"], r["op"], r["impl"]): r for r in doc["rows"]}
    rows = [(by[(g, op, impl)][key], label, tgt) for g, op, impl, key, label, tgt in ACCESS_ROWS
            if (g, op, impl) in by and by[(g, op, impl)].get(key)]
    if not rows:
        return None
    dat = os.path.join(out, "access-ratios-%s.dat" % py)
    n = len(rows)
    with open(dat, "w") as f:
        f.write("# y  ratio  target(or -1)  colour  label\n")
        for i, (v, label, tgt) in enumerate(rows):
            colour = 0x1f77b4 if tgt is None else (0x2ca02c if v <= tgt else 0xff7f0e)
            f.write('%d %.6g %g %d "%s"\n' % (n - 1 - i, v, tgt if tgt else -1, colour, label))
    gp = """%s
set output "%s"
set title "Reading frozen data: time / the same read of the plain object\\n{/*0.85 %s, commit %s}"
set xlabel "time ratio vs list of dicts / dict / tuple (log scale; < 1 faster, > 1 slower)"
set logscale x
set xrange [0.4:20]
set xtics (0.5, 1, 1.5, 2, 3, 5, 10)
set yrange [-0.7:%g]
set grid xtics
set key top right font ",8"
set arrow from 1, graph 0 to 1, graph 1 nohead lw 1.5 lc rgb "black"
set style fill solid 0.85 noborder
plot "%s" using (1):1:((($2<1)?$2:1)):((($2<1)?1:$2)):($1-0.35):($1+0.35):4:ytic(5) with boxxyerror lc rgb variable notitle, \\
     "%s" using (($2>=1)?$2*1.04:NaN):1:(sprintf("%%.2fx", $2)) with labels font ",8" left notitle, \\
     "%s" using (($2<1)?$2/1.04:NaN):1:(sprintf("%%.2fx", $2)) with labels font ",8" right notitle, \\
     "%s" using 3:($1-0.45):(0):(0.9) with vectors nohead lw 3 lc rgb "#d62728" title "issue 12 target (bar green: met, orange: missed; blue: no target)"
""" % (SMALL % (760, 90 + 26 * n), png, gp_escape(title_of(doc)), commit_of(doc), n + 0.6, dat, dat, dat, dat)
    gp = gp.replace("using 3:($1-0.45)", "using (($3>0)?$3:NaN):($1-0.45)")
    return run_gnuplot(gp, os.path.join(out, "access-ratios-%s.gp" % py), png)


FREEZE_KINDS = ["records", "records7", "vocab", "tokens", "config", "blob"]


def plot_freeze(doc, py, out, png):
    rows = {(r["kind"], r["impl"]): r for r in doc["rows"] if r.get("impl") in ("fs.freeze", "fs.thaw")}
    kinds = [k for k in FREEZE_KINDS if (k, "fs.freeze") in rows]
    if not kinds:
        return None
    dat = os.path.join(out, "freeze-ratios-%s.dat" % py)
    with open(dat, "w") as f:
        for j, impl in enumerate(("fs.freeze", "fs.thaw")):
            f.write("# %s: x  speed vs pickle  target\n" % impl)
            for i, k in enumerate(kinds):
                r = rows.get((k, impl))
                if r and r.get("speed_vs_pickle"):
                    tgt = (1.0 if k == "blob" else 1.5) if impl == "fs.freeze" else (None if k == "blob" else 1.2)
                    f.write("%d %.6g %g\n" % (i * 3 + j, r["speed_vs_pickle"], tgt or -1))
            f.write("\n\n")
    xt = ", ".join('"%s" %g' % (k, i * 3 + 0.5) for i, k in enumerate(kinds))
    gp = """%s
set output "%s"
set title "freeze vs pickle.dumps, thaw vs pickle.loads: speed\\n{/*0.85 %s, commit %s; best of N, interleaved}"
set ylabel "pickle's time / frozenshare's (> 1: faster)"
set yrange [0:*]
set xrange [-1:%d]
set xtics (%s) scale 0
set grid ytics
set boxwidth 0.9 absolute
set style fill solid 0.85 noborder
set key top left font ",8"
set arrow from graph 0, first 1 to graph 1, first 1 nohead lw 1.5 lc rgb "black"
plot "%s" index 0 using 1:2 with boxes lc rgb "#1f77b4" title "fs.freeze / pickle.dumps", \\
     "%s" index 1 using 1:2 with boxes lc rgb "#2ca02c" title "fs.thaw / pickle.loads", \\
     "%s" index 0 using 1:($2+0.08):(sprintf("%%.2f", $2)) with labels font ",8" notitle, \\
     "%s" index 1 using 1:($2+0.08):(sprintf("%%.2f", $2)) with labels font ",8" notitle, \\
     "%s" index 0 using ($1-0.45):(($3>0)?$3:NaN):(0.9):(0) with vectors nohead lw 3 lc rgb "#d62728" title "issue 12 target", \\
     "%s" index 1 using ($1-0.45):(($3>0)?$3:NaN):(0.9):(0) with vectors nohead lw 3 lc rgb "#d62728" notitle
""" % (SMALL % (760, 340), png, gp_escape(title_of(doc)), commit_of(doc), len(kinds) * 3 - 1, xt,
       dat, dat, dat, dat, dat, dat)
    return run_gnuplot(gp, os.path.join(out, "freeze-ratios-%s.gp" % py), png)


DOCS = os.path.join(F.ROOT, "docs")
DOC_LIMIT = 60 * 1024


def plot_docs(py, out):
    made = []
    for name, bench, fn, extra in (("image-size.png", "freeze", plot_image_size, {}),
                                   ("access-ratios.png", "access", plot_access, {}),
                                   ("freeze-ratios.png", "freeze", plot_freeze, {}),
                                   ("handoff.png", "handoff", plot_handoff, {"term": SMALL % (760, 440)}),
                                   ("memory.png", "memory", plot_memory, {"term": SMALL % (760, 440)})):
        d = load(bench, py)
        if not d:
            print("plot: no %s-%s.json: %s not made" % (bench, py, name), file=sys.stderr)
            continue
        png = fn(d, py, out, png=os.path.join(DOCS, name), **extra)
        if png:
            made.append(png)
            size = os.path.getsize(png)
            if size > DOC_LIMIT:
                print("plot: WARNING: %s is %d KB (> %d KB)" % (name, size // 1024, DOC_LIMIT // 1024),
                      file=sys.stderr)
    return made


def run_gnuplot(script, gp_path, png):
    with open(gp_path, "w") as f:
        f.write(script)
    exe = shutil.which("gnuplot")
    if not exe:
        print("plot: gnuplot not found (apt-get install gnuplot-nox); wrote %s" % gp_path, file=sys.stderr)
        return None
    r = subprocess.run([exe, gp_path], capture_output=True, text=True)
    if r.returncode != 0:
        print("plot: gnuplot failed: %s" % r.stderr.strip(), file=sys.stderr)
        return None
    print("plot: wrote %s" % os.path.relpath(png, F.ROOT))
    return png


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--py", default=F.PYTAG)
    p.add_argument("--docs", action="store_true", help="also write the committed PNGs under docs/")
    args = p.parse_args()
    out = F.RESULTS_DIR
    os.makedirs(out, exist_ok=True)
    if args.docs:
        plot_docs(args.py, out)
    h = load("handoff", args.py)
    if h:
        plot_handoff(h, args.py, out)
    m = load("memory", args.py)
    if m:
        plot_memory(m, args.py, out)


if __name__ == "__main__":
    main()
