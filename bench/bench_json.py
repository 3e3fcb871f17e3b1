"""bench_json -- JSON text straight into an image (fs.from_json) and back out
(fs.to_json), against the JSON libraries people use (issue 15).

Data sets, written as JSON files first: records (JSON-like user records),
a str->int vocabulary, a nested service configuration; ~40 MB each (--quick:
~8 MB). Every parse case runs in a fresh process (so peak RSS is its own):
  from_json                    fs.from_json(bytes)
  json.loads / orjson.loads / msgspec.json.decode
  <each of them> + freeze      the same, then fs.freeze (the path issue 15
                               replaces: objects first, then an image)
reporting throughput (MB of JSON per second) and the peak RSS the case added
over the process's own (VmHWM after the input was read, before the parse).
to_json runs in one process: fs.to_json(proxy) vs orjson.dumps and
json.dumps(separators, ensure_ascii=False).encode() of the thawed value.
Targets: from_json >= 2x orjson.loads, >= 4x orjson.loads + freeze; peak
memory <= input + 1.5x the image.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import fsbench as F

CHILD = r"""
import gc, json, sys, time
sys.path.insert(0, %(bench)r)
import fsbench as F
fs = F.load_fs()
import orjson, msgspec
case = %(case)r
with open(%(path)r, "rb") as f:
    data = f.read()
loaders = {"json.loads": json.loads, "orjson.loads": orjson.loads,
           "msgspec": msgspec.json.decode, "from_json": fs.from_json}
name, _, then = case.partition("+")
load = loaders[name]
def hwm():     # VmHWM: this process's peak RSS since exec (ru_maxrss carries the
    with open("/proc/self/status") as f:            # parent's peak across fork + exec)
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
gc.collect()
base = hwm()
t0 = time.perf_counter()
v = load(data)
if then == "freeze":
    v = fs.freeze(v)
t = time.perf_counter() - t0
peak = hwm()
image = fs.info(v)["image_bytes"] if fs.is_frozen(v) else None
print(json.dumps({"seconds": t, "peak_added": peak - base, "image": image}))
"""


def run_case(case, path, repeat):
    """Best time of `repeat` fresh processes, and the peak RSS of that one."""
    best = None
    for _ in range(repeat):
        code = CHILD % {"bench": F.BENCH_DIR, "case": case, "path": path}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=1200)
        if out.returncode != 0:
            raise RuntimeError("%s failed: %s" % (case, out.stderr[-2000:]))
        r = json.loads(out.stdout.strip().splitlines()[-1])
        if best is None or r["seconds"] < best["seconds"]:
            best = r
    return best


def datasets(target):
    """(name, value) of about `target` bytes of JSON each."""
    rec = F.gen_records(max(1000, target // 330))
    voc = F.gen_vocab(max(1000, target // 24))
    cfg = F.gen_config(max(10, target // 1500))
    return [("records", rec), ("vocab", voc), ("config", cfg)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    F.common_args(ap)
    args = ap.parse_args()
    res = F.Results("json", args)
    fs = F.load_fs()
    try:
        import orjson
        import msgspec  # noqa: F401 - the children use it
    except ImportError:
        res.note("orjson/msgspec missing (bash scripts/bench.sh installs them): nothing to compare")
        res.write()
        return
    target = (8 << 20) if args.quick else (40 << 20)
    repeat = 2 if args.quick else 3
    cases = ["from_json", "json.loads", "orjson.loads", "msgspec",
             "json.loads+freeze", "orjson.loads+freeze", "msgspec+freeze"]
    worst_plain = worst_freeze = worst_mem = None
    with tempfile.TemporaryDirectory() as tmp:
        for name, value in datasets(target):
            text = json.dumps(value, ensure_ascii=False).encode()
            path = os.path.join(tmp, name + ".json")
            with open(path, "wb") as f:
                f.write(text)
            del value
            mb = len(text) / F.MB
            rows, got = [], {}
            for case in cases:
                r = run_case(case, path, repeat)
                got[case] = r
                rows.append([name, case, r["seconds"], mb / r["seconds"], r["peak_added"] / F.MB,
                             r["image"] and r["image"] / F.MB])
                res.row(part="parse", data=name, case=case, json_bytes=len(text), **r)
            fj = got["from_json"]
            vs_orjson = got["orjson.loads"]["seconds"] / fj["seconds"]
            vs_freeze = got["orjson.loads+freeze"]["seconds"] / fj["seconds"]
            mem_ratio = fj["peak_added"] / (len(text) + 1.5 * fj["image"])
            F.table(["data", "case", "seconds", "MB/s", "peak MB added", "image MB"], rows)
            print("%s: %.1f MB of JSON; from_json %.2fx orjson.loads, %.2fx orjson.loads+freeze, "
                  "peak %.2f of (input + 1.5 x image)" % (name, mb, vs_orjson, vs_freeze, mem_ratio))
            worst_plain = vs_orjson if worst_plain is None else min(worst_plain, vs_orjson)
            worst_freeze = vs_freeze if worst_freeze is None else min(worst_freeze, vs_freeze)
            worst_mem = mem_ratio if worst_mem is None else max(worst_mem, mem_ratio)
            # to_json of the same data: a proxy written vs the thawed value dumped
            proxy = fs.from_json(text)
            plain = fs.thaw(proxy)
            t = F.time_once(lambda: fs.to_json(proxy), repeat)[1]
            t_or = F.time_once(lambda: orjson.dumps(plain), repeat)[1]
            t_js = F.time_once(lambda: json.dumps(plain, separators=(",", ":"),
                                                  ensure_ascii=False).encode(), repeat)[1]
            F.table(["data", "to_json s", "orjson.dumps s", "json.dumps s", "orjson/to_json",
                     "json/to_json"], [[name, t, t_or, t_js, t_or / t, t_js / t]])
            res.row(part="write", data=name, to_json=t, orjson_dumps=t_or, json_dumps=t_js)
            del proxy, plain
    res.target("from_json vs orjson.loads (slowest data set)", worst_plain, ">= 2x",
               worst_plain >= 2.0)
    res.target("from_json vs orjson.loads + fs.freeze", worst_freeze, ">= 4x", worst_freeze >= 4.0)
    res.target("from_json peak RSS / (input + 1.5 x image)", worst_mem, "<= 1", worst_mem <= 1.0)
    res.write()


if __name__ == "__main__":
    main()
