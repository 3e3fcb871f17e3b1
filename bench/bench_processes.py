"""bench_processes -- one image for many processes: files, fork, spawn, Ray.

What it measures, each against its baseline in the same run:
  ready      time from "a file on disk" to "an object the process can read":
             fs.load(path) (verification on, and off) vs pickle.load of the
             same data from a file; and fs.loads(bytes) vs pickle.loads.
  verify     fs.loads of the image bytes with verification on: GB/s of image
             (the linear proof of well-formedness, checksum included).
  foreign    str-key hits over a loaded vocabulary in a process started with
             another PYTHONHASHSEED, vs a dict built there: the keyed hash
             domain at work (O(1), the probe hashed once with the image's seed).
  workers    N = 1, 2, 4 workers each reading all of the data once:
               fork         frozen before the fork  vs  plain objects before it
               spawn+load   fs.load in the worker   vs  pickle.load in the worker
               ray (--ray)  ray.put(proxy), a task  vs  ray.put(plain data), a task
             time until every worker has read everything, and the private
             memory each worker added (smaps_rollup: Anonymous for spawned
             workers and Ray tasks -- a mapped image is page cache, a copy is
             anonymous --, Private_Dirty for forked children, whose inherited
             heap is anonymous from the start and copied page by page).
Data: issue 12's same-keyed records (gen_records flat) and a vocabulary.
"""
import argparse
import gc
import multiprocessing as mp
import os
import pickle
import subprocess
import sys
import tempfile
import time

import fsbench as F

fs = F.load_fs()


def anon_kb():
    """Anonymous memory: what a process copies for itself. (A mapped image is
    page cache: not counted, however many processes map it.)"""
    with open("/proc/self/smaps_rollup") as f:
        return sum(int(line.split()[1]) for line in f if line.startswith("Anonymous:"))


def private_dirty_kb():
    """After a fork the inherited heap is anonymous in both processes; what a
    child copies (a refcount write to a shared page) turns Private_Dirty."""
    with open("/proc/self/smaps_rollup") as f:
        return sum(int(line.split()[1]) for line in f if line.startswith("Private_Dirty:"))


def read_all(data):
    total = 0
    for r in data["records"]:
        total += r["id"] + r["rank"] + len(r["token"])
    for k in data["vocab"]:
        total += len(k)
    return total


# ---- workers (module level: spawn imports this file) -------------------------

DATA = None


def _init(path, mode):
    global DATA
    if mode == "load":
        DATA = fs.load(path)
    else:
        with open(path, "rb") as f:
            DATA = pickle.load(f)


def _work(_):
    before = _BASE
    total = read_all(DATA)
    return anon_kb() - before, total, os.getpid()


_BASE = 0


def _init_measured(path, mode):
    global _BASE
    _BASE = anon_kb()
    _init(path, mode)


def spawn_run(n, path, mode):
    t0 = time.perf_counter()
    ctx = mp.get_context("spawn")
    with ctx.Pool(n, initializer=_init_measured, initargs=(path, mode)) as pool:
        got = pool.map(_work, range(n), chunksize=1)
    return time.perf_counter() - t0, got


def fork_run(n, data):
    """n forked children each read all of data; (seconds, [anon KiB grown])."""
    t0 = time.perf_counter()
    pipes, pids = [], []
    for _ in range(n):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            before = private_dirty_kb()
            read_all(data)
            os.write(w, b"%d" % (private_dirty_kb() - before))
            os._exit(0)
        os.close(w)
        pipes.append(r)
        pids.append(pid)
    grew = []
    for r, pid in zip(pipes, pids):
        grew.append(int(os.read(r, 64) or b"-1"))
        os.close(r)
        os.waitpid(pid, 0)
    return time.perf_counter() - t0, grew


FOREIGN = r"""
import sys, time, random
sys.path.insert(0, %(bench)r)
import fsbench as F
fs = F.load_fs()
v = fs.load(%(path)r)["vocab"]
keys = list(v)                          # the vocabulary's own order, as a dict would
d = dict.fromkeys(keys, 0)              # be built from the data: same layout as the image
probes = [k.encode().decode() for k in random.Random(1).sample(keys, 20000)]
# fresh str objects in random order (not the dict's own keys, not in its
# order: a dict probed in insertion order reads its entries sequentially)
for p in probes:
    hash(p)
def hits_fs():
    for p in probes:
        v[p]
def hits_dict():
    for p in probes:
        d[p]
t_fs, t_dict = F.time_interleaved([hits_fs, hits_dict], len(probes))
scanned = fs.stats()["lookups_scanned"]
print(t_fs, t_dict, scanned, fs.info(v)["hash_domain"])
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    F.common_args(ap)
    ap.add_argument("--ray", action="store_true", help="also run Ray tasks (needs ray; ~10 s to start)")
    args = ap.parse_args()
    res = F.Results("processes", args)
    if fs is None:
        res.note("frozenshare is not built")
        res.write()
        return
    n_rec = 120_000 if args.quick else 400_000
    data = {"records": F.gen_records(n_rec, flat=True), "vocab": F.gen_vocab(200_000)}
    folder = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    img = os.path.join(folder, "fs-bench-%d.img" % os.getpid())
    pkl = os.path.join(folder, "fs-bench-%d.pkl" % os.getpid())
    frozen = fs.freeze(data)
    fs.dump(frozen, img)
    with open(pkl, "wb") as f:
        pickle.dump(data, f, protocol=5)
    image_bytes = os.path.getsize(img)
    raw_img = open(img, "rb").read()
    raw_pkl = open(pkl, "rb").read()
    print("# data: %d records + 200k-word vocabulary; image %s, pickle %s"
          % (n_rec, F.fmt_bytes(image_bytes), F.fmt_bytes(len(raw_pkl))))
    try:
        # ---- ready ---------------------------------------------------------
        def pload():
            with open(pkl, "rb") as f:
                return pickle.load(f)
        t = {
            "fs.load": F.time_once(lambda: fs.load(img))[0],
            "fs.load verify=False": F.time_once(lambda: fs.load(img, verify=False))[0],
            "pickle.load": F.time_once(pload)[0],
            "fs.loads": F.time_once(lambda: fs.loads(raw_img))[0],
            "pickle.loads": F.time_once(lambda: pickle.loads(raw_pkl))[0],
        }
        print("\n# time to a readable object (s, median)")
        F.table(["method", "seconds"], [[k, v] for k, v in t.items()])
        for k, v in t.items():
            res.row(part="ready", method=k, seconds=v, image_bytes=image_bytes)
        sp = t["pickle.load"] / t["fs.load"]
        res.target("load (verify on) vs pickle.load: >= 20x faster", sp, ">=20", sp >= 20,
                   "%.4f s vs %.4f s" % (t["fs.load"], t["pickle.load"]))
        gbs = image_bytes / t["fs.loads"] / 1e9
        res.row(part="verify", gb_per_s=gbs)
        res.target("verification throughput >= 1 GB/s of image", gbs, ">=1", gbs >= 1,
                   "loads(bytes) of %s in %.4f s" % (F.fmt_bytes(image_bytes), t["fs.loads"]))

        # ---- foreign process -----------------------------------------------
        bench_dir = os.path.dirname(os.path.abspath(__file__))
        out = subprocess.run([sys.executable, "-c", FOREIGN % {"bench": bench_dir, "path": img}],
                             env=dict(os.environ, PYTHONHASHSEED="4242"), capture_output=True,
                             text=True, timeout=600)
        if out.returncode != 0:
            res.note("foreign-process lookups failed: " + out.stderr[-500:])
        else:
            t_fs, t_d, scanned, domain = out.stdout.split()
            t_fs, t_d = float(t_fs), float(t_d)
            r = t_fs / t_d
            res.row(part="foreign", fs_ns=t_fs, dict_ns=t_d, scanned=int(scanned), domain=domain)
            print("\n# str-key hit, PYTHONHASHSEED=4242 process: %.0f ns vs dict %.0f ns (%s domain, "
                  "%s lookups scanned)" % (t_fs, t_d, domain, scanned))
            res.target("foreign-process str-key hit vs dict <= 1.5x", r, "<=1.5", r <= 1.5,
                       "%.0f vs %.0f ns, %s scans" % (t_fs, t_d, scanned))

        # ---- workers ---------------------------------------------------------
        print("\n# N workers each reading everything: seconds, anonymous KiB added per worker")
        rows = []
        worst = {}
        gc.collect()
        gc.freeze()
        for n in (1, 2, 4):
            for method, run in (
                    ("fork frozen", lambda n=n: fork_run(n, frozen)),
                    ("fork plain", lambda n=n: fork_run(n, data)),
                    ("spawn+load", lambda n=n: spawn_run(n, img, "load")),
                    ("spawn+pickle.load", lambda n=n: spawn_run(n, pkl, "pickle"))):
                secs, got = run()
                grew = [g if isinstance(g, int) else g[0] for g in got]
                rows.append([method, n, secs, max(grew)])
                res.row(part="workers", method=method, n=n, seconds=secs, anon_kib=grew)
                worst[method] = max(worst.get(method, 0), max(grew))
        gc.unfreeze()
        if args.ray:
            rows += ray_rows(res, frozen, data, worst)
        F.table(["method", "N", "seconds", "max KiB/worker"], rows)
        image_kib = image_bytes / 1024
        for method, limit in (("fork frozen", 0.03), ("spawn+load", 0.03), ("ray frozen", 0.05)):
            if method in worst:
                frac = worst[method] / image_kib
                base = {"fork frozen": "fork plain", "spawn+load": "spawn+pickle.load",
                        "ray frozen": "ray plain"}[method]
                res.target("private memory per worker, %s <= %d%% of the image" % (method, limit * 100),
                           frac, "<=%g" % limit, frac <= limit,
                           "%d KiB of %d KiB (baseline %s: %d KiB)"
                           % (worst[method], image_kib, base, worst.get(base, -1)))
    finally:
        for p in (img, pkl):
            try:
                os.unlink(p)
            except OSError:
                pass
    res.write()


def ray_rows(res, frozen, data, worst):
    try:
        import ray
    except ImportError:
        res.note("ray is not installed: no Ray rows")
        return []
    pkg = os.path.dirname(os.path.dirname(fs.__file__))      # the build tree's frozenshare
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.pathsep.join([pkg, here, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})

    @ray.remote(num_cpus=1, max_calls=1)        # a fresh worker process per task
    def task(boxed):
        before = anon_kb()
        read_all(ray.get(boxed[0]))
        return anon_kb() - before

    rows = []
    try:
        for name, obj in (("ray frozen", frozen), ("ray plain", data)):
            ref = ray.put(obj)
            for n in (1, 2, 4):
                t0 = time.perf_counter()
                grew = ray.get([task.remote([ref]) for _ in range(n)])
                secs = time.perf_counter() - t0
                rows.append([name, n, secs, max(grew)])
                res.row(part="workers", method=name, n=n, seconds=secs, anon_kib=grew)
                worst[name] = max(worst.get(name, 0), max(grew))
            del ref
    finally:
        ray.shutdown()
    return rows


if __name__ == "__main__":
    main()
