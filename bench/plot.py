"""plot -- PNG plots of the latest results with gnuplot.

  bench/results/handoff-<py>.png  hand-off time vs data size (log-log), one
                                  line per method: O(1) vs O(n)
  bench/results/memory-<py>.png   process RSS vs number of interpreters
                                  holding the data set, frozenshare vs copies
Reads bench/results/{handoff,memory}-<py>.json; writes the .dat and .gp files
beside the PNGs so a plot can be re-made or restyled by hand.
Usage: python bench/plot.py [--py py3.13]
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


def plot_handoff(doc, py, out):
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
    png = os.path.join(out, "handoff-%s.png" % py)
    plots = ", ".join('"%s" index %d using ($1/1048576):($2*1e6) with linespoints lw 2 pt 7 title "%s"'
                      % (dat, i, m + (" (receiver: legacy interp)" if m in ("orjson", "msgspec", "msgpack") else ""))
                      for i, m in enumerate(meths))
    gp = """set terminal pngcairo size 1000,640 enhanced font "DejaVu Sans,11"
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
""" % (png, gp_escape(title_of(doc)), plots)
    return run_gnuplot(gp, os.path.join(out, "handoff-%s.gp" % py), png)


def plot_memory(doc, py, out):
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
    png = os.path.join(out, "memory-%s.png" % py)
    label = {"frozenshare": "frozenshare (one shared image)", "pickle": "pickle copy per interpreter"}
    plots = []
    for i, m in enumerate(meths):
        plots.append('"%s" index %d using 1:2 with linespoints lw 2 pt 7 title "%s"' % (dat, i, label[m]))
    i = meths.index("pickle") if "pickle" in meths else 0
    plots.append('"%s" index %d using 1:3 with lines dt 2 lc rgb "gray" title "%s"' % (
        dat, i, "main + N empty interpreters" if "pickle" in meths else "before the hand-off"))
    size = F.fmt_bytes(rows[0].get("pickle_bytes")) if rows else "?"
    gp = """set terminal pngcairo size 1000,640 enhanced font "DejaVu Sans,11"
set output "%s"
set title "Process RSS with N subinterpreters each holding the data set (%s pickle, %s)\\n{/*0.8 %s}"
set xlabel "N interpreters"
set ylabel "RSS (MiB)"
set xtics (1, 2, 4, 8, 16)
set grid
set key top left
set yrange [0:*]
plot %s
""" % (png, gp_escape(size), rows[0].get("kind", "") if rows else "", gp_escape(title_of(doc)), ", ".join(plots))
    return run_gnuplot(gp, os.path.join(out, "memory-%s.gp" % py), png)


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
    args = p.parse_args()
    out = F.RESULTS_DIR
    os.makedirs(out, exist_ok=True)
    h = load("handoff", args.py)
    if h:
        plot_handoff(h, args.py, out)
    m = load("memory", args.py)
    if m:
        plot_memory(m, args.py, out)


if __name__ == "__main__":
    main()
