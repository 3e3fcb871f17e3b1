"""fsbench -- shared plumbing for the Python benchmarks (bench/bench_*.py).

What lives here, and why it is in one stdlib-only module: every benchmark
process *and* every subinterpreter it starts imports it (an own-GIL
subinterpreter cannot import orjson/msgspec, so nothing here may depend on a
third-party package).

  * locating the built `frozenshare` package ($FS_PYPATH, else under build/),
  * deterministic data sets, sized by their pickle size (or, for the two
    modelled on issue 12, by item count):
      records   JSON-like user records (11 keys, nested dict and list),
      records7  flat same-keyed records (7 keys: id, token, rank, count,
                score, lang, flag) -- the list-of-dicts case of issue 12,
      vocab     str->int vocabulary, long mostly non-ASCII keys,
      tokens    str->int vocabulary of short BPE-like tokens (GPT-2-like:
                2-10 chars, mostly ASCII, some 'Ġ'-prefixed),
      config    a nested service configuration,
      blob      random bytes,
      mixed     records + vocab + config + blob in one dict,
  * subinterpreters and queues for 3.12 (_xxsubinterpreters/_xxinterpchannels)
    and 3.13 (_interpreters/_interpqueues) behind one small API,
  * memory (/proc/self/statm, /proc/self/smaps_rollup), timing helpers,
  * result files (bench/results/*.json) and one-line-per-case tables.

Numbers are only compared with baselines measured in the same run, on the
same machine and Python (STYLE.md, "Benchmarks").
"""
import datetime
import gc
import glob
import json
import os
import platform
import random
import subprocess
import sys
import sysconfig
import time

PY = sys.version_info[:2]
FT = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))   # free-threaded: "py3.13t"
PYTAG = "py%d.%d%s" % (*PY, "t" if FT else "")
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
RESULTS_DIR = os.environ.get("FS_BENCH_RESULTS", os.path.join(BENCH_DIR, "results"))
KB, MB = 1 << 10, 1 << 20

# --------------------------------------------------------------------------
# Locating and importing frozenshare
# --------------------------------------------------------------------------

def _has_fs(d):
    return (os.path.isfile(os.path.join(d, "frozenshare", "__init__.py"))
            or bool(glob.glob(os.path.join(d, "frozenshare", "*" + sysconfig.get_config_var("EXT_SUFFIX"))))
            or bool(glob.glob(os.path.join(d, "frozenshare" + sysconfig.get_config_var("EXT_SUFFIX")))))


def find_fs_dir():
    """Directory to put on sys.path for `import frozenshare`, or None.

    Order: $FS_PYPATH, then $FS_BUILD_DIR (default build/): its pyX.Y, other
    pyX.Y-ish dirs below it, bindings*. A package already importable
    (installed wheel, PYTHONPATH) wins if none of these exists. (Only the
    build scripts/bench.sh just made: a stale side build must not win.)"""
    env = os.environ.get("FS_PYPATH")
    cands = [env] if env else []
    ver = PYTAG[2:]
    for b in (os.environ.get("FS_BUILD_DIR", "build"),):
        cands.append(os.path.join(ROOT, b, "py" + ver))
        cands += sorted(glob.glob(os.path.join(ROOT, b, "**", "*" + ver + "*"), recursive=True))
        cands += sorted(glob.glob(os.path.join(ROOT, b, "**", "python"), recursive=True))
        cands += sorted(glob.glob(os.path.join(ROOT, b, "bindings*"), recursive=False))
    for d in cands:
        if d and os.path.isdir(d) and _has_fs(d):
            return d
    return None


_FS = False   # unknown yet


def load_fs():
    """The frozenshare module, or None (benchmarks then run baselines only)."""
    global _FS
    if _FS is not False:
        return _FS
    d = find_fs_dir()
    if d and d not in sys.path:
        sys.path.insert(0, d)
    try:
        import frozenshare
        _FS = frozenshare
    except Exception as e:                       # noqa: BLE001 -- report, go on
        sys.stderr.write("fsbench: frozenshare not importable (%s: %s); "
                         "frozenshare rows will be n/a\n" % (type(e).__name__, e))
        _FS = None
    return _FS


def fs_image_bytes(f):
    """Image size of the region holding proxy `f` (from fs.info)."""
    fs = load_fs()
    try:
        info = fs.info(f)
    except Exception:                              # noqa: BLE001
        return None
    for k in ("image_bytes", "image_size", "image", "bytes", "size", "nbytes"):
        v = info.get(k)
        if isinstance(v, int):
            return v
    for k, v in info.items():
        if "byte" in k and isinstance(v, int):
            return v
    return None


# --------------------------------------------------------------------------
# Machine and environment
# --------------------------------------------------------------------------

def machine_info():
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except OSError:
        pass
    commit = os.environ.get("FS_BENCH_COMMIT")   # bench.sh --in-root: no .git in the root
    if not commit:
        try:
            commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True, timeout=5).stdout.strip()
            dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            if commit and dirty:
                commit += "+dirty"
        except Exception:                          # noqa: BLE001
            commit = None
    libs = {}
    for name in ("orjson", "msgspec", "msgpack", "frozendict", "immutables"):
        try:
            from importlib.metadata import version
            libs[name] = version(name)
        except Exception:                          # noqa: BLE001
            libs[name] = None
    fs = load_fs()
    return {
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "mem_bytes": mem,
        "kernel": platform.release(),
        "loadavg": os.getloadavg(),
        "os": _os_release(),
        "python": sys.version.split()[0],
        "python_full": sys.version.replace("\n", " "),
        "executable": sys.executable,
        "gil_disabled": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "frozenshare": getattr(fs, "__file__", None) if fs else None,
        "frozenshare_version": getattr(fs, "__version__", None) if fs else None,
        "commit": commit,
        "libs": libs,
    }


def _os_release():
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


# --------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes():
    """Resident set size of this process (all interpreters), /proc/self/statm."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def smaps_rollup():
    """{'Rss': bytes, 'Pss': ..., 'Private_Dirty': ...} from smaps_rollup."""
    out = {}
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    except OSError:
        pass
    return out


def trim():
    """Collect garbage and give freed heap back to the OS, so RSS means 'live'."""
    gc.collect()
    try:
        import ctypes
        ctypes.CDLL(None).malloc_trim(0)
    except Exception:                              # noqa: BLE001
        pass


def deep_sizeof(obj):
    """Bytes of the live object graph (sys.getsizeof over unique objects)."""
    seen = set()
    stack = [obj]
    total = 0
    getsizeof = sys.getsizeof
    while stack:
        o = stack.pop()
        i = id(o)
        if i in seen:
            continue
        seen.add(i)
        total += getsizeof(o)
        t = type(o)
        if t is dict:
            stack.extend(o.keys())
            stack.extend(o.values())
        elif t in (list, tuple, set, frozenset):
            stack.extend(o)
    return total


# --------------------------------------------------------------------------
# Deterministic data sets
# --------------------------------------------------------------------------
# Every generator takes (n, seed) and returns the same object on every
# machine and Python >= 3.12 (random.Random with an int seed is stable).

_SYL = {
    "ascii": ["an", "ed", "or", "in", "th", "er", "st", "ly", "qu", "ro", "ka", "mi"],
    "latin1": ["ré", "mü", "ñe", "zø", "lå", "tï", "çu", "sé", "ðo", "þa", "ä", "ê"],
    "greek": ["κα", "λη", "μο", "νυ", "ξε", "πι", "ρω", "στ", "φα", "ψη"],
    "cyrillic": ["да", "не", "жи", "щу", "ля", "бо", "ыр", "ёж", "зо", "ки"],
    "cjk": ["東", "京", "語", "彙", "数", "据", "共", "享", "凍", "結", "読", "書"],
    "emoji": ["🐍", "🧊", "🔒", "🚀", "📦", "🌍"],
}
# share of keys per script: mostly Latin, like a real multilingual vocabulary
_SCRIPTS = (["ascii"] * 40 + ["latin1"] * 30 + ["greek"] * 8 + ["cyrillic"] * 10
            + ["cjk"] * 10 + ["emoji"] * 2)

_FIRST = ["Zoë", "José", "Łukasz", "Søren", "Ana", "Chen", "Μαρία", "Иван", "さくら",
          "Björk", "François", "Ngozi", "Ayşe", "Dvořák", "Mateus", "Olivia", "Noah"]
_LAST = ["Ødegaard", "Müller", "García", "Nakamura", "Ковалёв", "Παπαδόπουλος",
         "O'Brien", "Nguyễn", "Smith", "Żółć", "Lefèvre", "Kowalski", "李"]
_CITY = ["Zürich", "São Paulo", "Kraków", "Reykjavík", "東京", "Москва", "Αθήνα",
         "Montréal", "Berlin", "Lagos", "İstanbul", "Hà Nội", "Bogotá", "Oslo"]
_TAGS = ["admin", "beta", "vip", "trial", "früh", "nuevo", "старый", "新", "ops", "ml"]
_LANGS = ["en", "de", "fr", "es", "pt", "ja", "zh", "ru"]

# Short-token vocabulary (gen_tokens). GPT-2's BPE file (50,257 tokens) cannot
# be downloaded here, so its shape is imitated: letters in English frequency,
# word pieces of 1-9 letters, 'Ġ' (U+0120, GPT-2's marker for "preceded by a
# space": a 2-byte-kind str) on about a quarter of them, some capitalized,
# some digit and punctuation tokens.
_TOK_LETTERS = "etaoinshrdlcumwfgypbvkjxqz"
_TOK_WEIGHTS = [127, 91, 82, 75, 70, 67, 63, 61, 60, 43, 40, 28, 28, 24, 24, 22, 20, 20, 19, 15,
                10, 8, 2, 2, 1, 1]
_TOK_LEN = [1, 2, 3, 4, 5, 6, 7, 8, 9]               # letters of the word piece
_TOK_LEN_W = [3, 10, 16, 18, 17, 14, 10, 7, 5]
_TOK_PUNCT = [".", ",", "!", "?", "-", "'", ":", ";", "(", ")", "\"", "/", "$", "%"]


def gen_vocab(n, seed=1, progress=None):
    """str -> int vocabulary with n unique, mostly non-ASCII keys (1/2/4-byte kinds)."""
    rng = random.Random(seed)
    choice, randint = rng.choice, rng.randint
    out = {}
    i = 0
    while len(out) < n:
        syl = _SYL[choice(_SCRIPTS)]
        w = "".join([choice(syl) for _ in range(randint(2, 6))])
        if w in out:
            w = "%s%d" % (w, i)
        out[w] = i
        i += 1
        if progress and not i % 200000:
            progress("vocab %d/%d" % (i, n))
    return out


def gen_tokens(n=200_000, seed=5, progress=None):
    """str -> int vocabulary of n unique short tokens (2-10 chars), valued by
    rank 0..n-1 as a BPE vocabulary is: ~70% lowercase ASCII pieces, ~25%
    'Ġ'-prefixed, the rest capitalized, numbers and punctuation.  The first m
    tokens of gen_tokens(n) are gen_tokens(m) (one random stream)."""
    rng = random.Random(seed)
    choices, choice, rnd, randint = rng.choices, rng.choice, rng.random, rng.randint
    out = {}
    while len(out) < n:
        u = rnd()
        if u < 0.04:
            w = choice(_TOK_PUNCT) + choice(_TOK_PUNCT) if rnd() < 0.3 else str(randint(0, 99999))
        else:
            k = choices(_TOK_LEN, _TOK_LEN_W)[0]
            w = "".join(choices(_TOK_LETTERS, _TOK_WEIGHTS, k=k))
            if u < 0.29:
                w = "\u0120" + w                       # 'Ġ': a space before the piece
            elif u < 0.35:
                w = w.capitalize()
        if len(w) < 2 or len(w) > 10 or w in out:
            continue
        out[w] = len(out)
        if progress and not len(out) % 100000:
            progress("tokens %d/%d" % (len(out), n))
    return out


_TOKS50K = None


def gen_records(n, seed=2, progress=None, flat=False):
    """n JSON-like user records (dicts of str/int/float/bool/None, lists, nested dicts).

    flat=True: issue 12's same-keyed records instead, 7 keys in one order:
      {"id": int, "token": str, "rank": int, "count": int, "score": float,
       "lang": str, "flag": bool}
    token: from the first 50,257 tokens of gen_tokens (GPT-2's vocabulary
    size), skewed towards frequent ones so tokens repeat; rank: its id there;
    lang: one of 8 short codes.  The keys are the same str objects in every
    record (as json.loads and a dict literal make them); every str VALUE is
    its own object, equal values repeated as parsed input has them, so
    neither pickle's memo nor an identity memo can fold them."""
    rng = random.Random(seed)
    choice, randint, rnd = rng.choice, rng.randint, rng.random
    out = []
    if flat:
        global _TOKS50K
        if _TOKS50K is None:
            _TOKS50K = list(gen_tokens(50_257).items())
        toks, m = _TOKS50K, len(_TOKS50K)
        for i in range(n):
            if progress and i and not i % 100000:
                progress("records7 %d/%d" % (i, n))
            tok, rank = toks[int(m * rnd() ** 3)]
            out.append({"id": i, "token": probe_copy(tok), "rank": rank,
                        "count": int(10 ** (rnd() * 6)), "score": round(rnd(), 4),
                        "lang": probe_copy(choice(_LANGS)), "flag": rnd() < 0.5})
        return out
    for i in range(n):
        if progress and i and not i % 100000:
            progress("records %d/%d" % (i, n))
        first, last = choice(_FIRST), choice(_LAST)
        out.append({
            "id": i,
            "uuid": "%016x" % rng.getrandbits(64),
            "name": first + " " + last,
            "email": "user%d@example.org" % i,
            "age": randint(18, 90),
            "score": round(rnd() * 100, 3),
            "active": rnd() < 0.7,
            "tags": [choice(_TAGS) for _ in range(randint(0, 4))],
            "address": {"city": choice(_CITY), "zip": "%05d" % randint(0, 99999),
                        "geo": [round(rnd() * 180 - 90, 5), round(rnd() * 360 - 180, 5)]},
            "manager": randint(0, i) if i and rnd() < 0.5 else None,
            "bio": None if rnd() < 0.6 else "Ünïcode bio №%d — %s" % (i, choice(_CITY)),
        })
    return out


def gen_config(n, seed=3):
    """Nested configuration: n service sections, each 4 levels deep."""
    rng = random.Random(seed)
    choice, randint = rng.choice, rng.randint
    services = {}
    for i in range(n):
        services["svc-%04d" % i] = {
            "enabled": rng.random() < 0.8,
            "replicas": randint(1, 16),
            "image": "registry.example/%s:%d.%d" % (choice(_TAGS), randint(0, 9), randint(0, 99)),
            "env": {"LANG": choice(["C.UTF-8", "de_DE.UTF-8", "ja_JP.UTF-8"]),
                    "REGION": choice(_CITY), "DEBUG": rng.random() < 0.1},
            "limits": {"cpu": round(rng.random() * 4, 2), "mem_mb": randint(64, 8192),
                       "ports": [randint(1024, 65535) for _ in range(randint(1, 4))]},
            "routes": [{"path": "/%s/%d" % (choice(_TAGS), j), "timeout_s": rng.random() * 30,
                        "retry": {"max": randint(0, 5), "backoff": [0.1, 0.5, 2.0]}}
                       for j in range(randint(1, 4))],
            "labels": {choice(_TAGS): choice(_CITY) for _ in range(3)},
        }
    return {"version": 3, "name": "frozenshare-demo", "owner": "Zoë Ødegaard",
            "features": {"beta": True, "ratio": 0.25, "limits": [1, 2, 3]},
            "services": services}


def gen_blob(nbytes, seed=4):
    return random.Random(seed).randbytes(nbytes)


def gen_records7(n, seed=6, progress=None):
    return gen_records(n, seed, progress, flat=True)


_GENS = {"records": gen_records, "records7": gen_records7, "vocab": gen_vocab,
         "tokens": gen_tokens, "config": gen_config}
# Data sets of issue 12 have a natural size: counted in items, not pickle bytes.
DEFAULT_ITEMS = {"records7": 120_000, "tokens": 200_000}
_PER_ITEM = {}


def _per_item(kind):
    """Average pickle bytes per item (record, vocabulary entry, config section)."""
    if kind not in _PER_ITEM:
        import pickle
        m = 20000 if kind in ("vocab", "tokens", "records7") else 2000
        sample = _GENS[kind](m, seed=99)
        _PER_ITEM[kind] = len(pickle.dumps(sample, 5)) / m
    return _PER_ITEM[kind]


def make_dataset(kind, target_bytes, progress=None, items=None):
    """A deterministic data set of `kind` whose pickle is about target_bytes,
    or of exactly `items` items (records, entries, sections) when given.

    kind: records | records7 | vocab | tokens | config | blob | mixed (40%
    records, 40% vocab, 10% config, 10% blob in a dict).  progress(msg) is
    called for long builds."""
    if items is not None and kind in _GENS:
        return gen_config(items) if kind == "config" else _GENS[kind](items, progress=progress)
    if kind == "blob":
        return gen_blob(max(1, int(target_bytes)))
    if kind == "mixed":
        parts = {}
        for sub, share in (("records", 0.4), ("vocab", 0.4), ("config", 0.1), ("blob", 0.1)):
            if progress:
                progress("building %s (%s)" % (sub, fmt_bytes(target_bytes * share)))
            parts[sub] = make_dataset(sub, target_bytes * share, progress)
        return parts
    n = max(1, int(round(target_bytes / _per_item(kind))))
    if kind == "config":
        return gen_config(n)
    return _GENS[kind](n, progress=progress if n > 200000 else None)


def n_items(obj):
    return len(obj) if hasattr(obj, "__len__") else 1


def fmt_bytes(n):
    if n is None:
        return "n/a"
    for unit, div in (("GB", 1 << 30), ("MB", MB), ("KB", KB)):
        if abs(n) >= div:
            return "%.1f %s" % (n / div, unit)
    return "%d B" % n


def parse_size(s):
    s = str(s).strip().upper().replace("IB", "B")
    for suf, mul in (("GB", 1 << 30), ("MB", MB), ("KB", KB), ("G", 1 << 30), ("M", MB),
                     ("K", KB), ("B", 1)):
        if s.endswith(suf):
            return int(float(s[: -len(suf)]) * mul)
    return int(float(s))


def probe_copy(s):
    """An equal str that is a different object (as keys parsed from input are)."""
    return (s + "\x00")[:-1] if s else s


# --------------------------------------------------------------------------
# Subinterpreters and queues (3.12 and 3.13)
# --------------------------------------------------------------------------
# 3.13: _interpreters.create('isolated'|'legacy'), exec(id, code, shared)
#       returns None or an exception snapshot; _interpqueues.create(maxsize,
#       fmt, unboundop), put(qid, obj, fmt, unboundop), get -> (obj, fmt, op).
# 3.12: _xxsubinterpreters.create(isolated=), run_string(id, code, shared);
#       _xxinterpchannels.create/send/recv/destroy (send does not block).

V13 = PY >= (3, 13)
if V13:
    import _interpreters as _I
    import _interpqueues as _Q
else:
    import _xxsubinterpreters as _I
    import _xxinterpchannels as _C

FMT_SHARED, FMT_PICKLED, UNBOUND = 0, 1, 3   # test.support.interpreters.queues


_CHANNELS = {}     # 3.12: a channel lives while a ChannelID object refers to it


def qcreate():
    if V13:
        return _Q.create(0, FMT_SHARED, UNBOUND)
    cid = _C.create()
    _CHANNELS[int(cid)] = cid
    return int(cid)


def qdestroy(qid):
    try:
        if V13:
            _Q.destroy(qid)
        else:
            _C.destroy(qid)
            _CHANNELS.pop(qid, None)
    except Exception:                              # noqa: BLE001
        pass


def qput(qid, obj, fmt=FMT_SHARED):
    """Put obj (must be shareable: XID) on the queue / channel."""
    if V13:
        _Q.put(qid, obj, fmt, UNBOUND)
    else:
        _C.send(qid, obj)


def qget(qid):
    """Next object on the queue (non-blocking; the benchmarks always put first)."""
    if V13:
        return _Q.get(qid)[0]
    return _C.recv(qid)


def qget_raw(qid):
    """(obj, fmt) -- for the 3.13 queue's default (pickled) path."""
    if V13:
        obj, fmt, _ = _Q.get(qid)
        return obj, fmt
    return _C.recv(qid), FMT_SHARED


def qget_wait(qid, timeout=600.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return qget(qid)
        except Exception:                          # noqa: BLE001 -- empty
            if time.monotonic() > deadline:
                raise
            time.sleep(0.001)


class Interp:
    """One subinterpreter. isolated=True: own GIL and obmalloc, and only
    multi-phase extension modules import; isolated=False: 'legacy' (shared
    GIL), needed by single-phase modules such as orjson and msgspec."""

    _live = []

    def __init__(self, isolated=True, paths=None):
        self.isolated = isolated
        if V13:
            self.id = _I.create("isolated" if isolated else "legacy")
        else:
            self.id = _I.create(isolated=isolated)
        Interp._live.append(self)
        paths = list(paths) if paths is not None else [p for p in sys.path if p]
        if BENCH_DIR not in paths:
            paths.insert(0, BENCH_DIR)
        self.exec("import sys\nsys.path[:0] = %r\nimport fsbench" % (paths,))

    def exec(self, code, shared=None):
        if V13:
            err = _I.exec(self.id, code, shared) if shared else _I.exec(self.id, code)
            if err is not None:
                raise RuntimeError("in subinterpreter %s: %s\n%s" % (
                    self.id, err.formatted, getattr(err, "errdisplay", "")))
        else:
            try:
                _I.run_string(self.id, code, shared)
            except _I.RunFailedError as e:
                raise RuntimeError("in subinterpreter %s: %s" % (self.id, e)) from None

    def close(self):
        if self in Interp._live:
            Interp._live.remove(self)
            _I.destroy(self.id)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    @classmethod
    def close_all(cls):
        for it in list(cls._live):
            try:
                it.close()
            except Exception:                      # noqa: BLE001
                pass


import atexit                                      # noqa: E402
atexit.register(Interp.close_all)


def remote_result(interp, code, qid):
    """Run code that ends with fsbench.qput(qid, json.dumps(x)); return x."""
    interp.exec(code)
    return json.loads(qget(qid))


# --------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------

now_ns = time.perf_counter_ns


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def time_per_op(fn, ops_per_call, min_time=0.2, repeat=5):
    """Best-of-`repeat` ns/op of fn() (which does ops_per_call operations);
    each sample runs fn enough times to last about min_time/repeat."""
    fn()                                       # warm-up (specialization, caches)
    t0 = now_ns()
    fn()
    once = max(now_ns() - t0, 1)
    loops = max(1, int(min_time * 1e9 / repeat / once))
    best = None
    for _ in range(repeat):
        t0 = now_ns()
        for _ in range(loops):
            fn()
        dt = (now_ns() - t0) / (loops * ops_per_call)
        best = dt if best is None or dt < best else best
    return best


def time_interleaved(fns, ops_per_call, min_time=0.2, repeat=5):
    """Best-of-`repeat` ns/op of each fn in fns, the samples taking turns
    (fn0, fn1, ..., fn0, fn1, ...) so that noise on a shared machine hits
    every contender alike; the ratios of the results are measured in one run.
    ops_per_call: one count for all, or one per fn.  Each fn is warmed up and
    calibrated alone first (a sample lasts about min_time/repeat)."""
    if isinstance(ops_per_call, (int, float)):
        ops_per_call = [ops_per_call] * len(fns)
    loops = []
    for fn in fns:
        fn()                                   # warm-up (specialization, caches)
        t0 = now_ns()
        fn()
        once = max(now_ns() - t0, 1)
        loops.append(max(1, int(min_time * 1e9 / repeat / once)))
    best = [None] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            n = loops[i]
            t0 = now_ns()
            for _ in range(n):
                fn()
            dt = (now_ns() - t0) / (n * ops_per_call[i])
            if best[i] is None or dt < best[i]:
                best[i] = dt
    return best


def time_once(fn, repeat=3):
    """Median and min seconds of `repeat` calls of fn() (for O(n) operations)."""
    ts = []
    for _ in range(repeat):
        gc.collect()
        t0 = now_ns()
        fn()
        ts.append((now_ns() - t0) / 1e9)
    return median(ts), min(ts)


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------

class Results:
    """Collects rows and target verdicts; writes bench/results/<name>-<pytag>.json."""

    def __init__(self, name, args=None):
        self.name = name
        self.rows = []
        self.targets = []
        self.notes = []
        self.name = name
        self.params = vars(args) if args is not None and hasattr(args, "__dict__") else (args or {})
        self.started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        self.machine = machine_info()
        print("# %s  python %s  %s  %d cores  load %.2f  commit %s  frozenshare %s" % (
            name, self.machine["python"], self.machine["cpu"], self.machine["cores"] or 0,
            self.machine["loadavg"][0], self.machine["commit"],
            os.path.relpath(os.path.dirname(os.path.dirname(self.machine["frozenshare"])), ROOT)
            if self.machine["frozenshare"] else "NOT BUILT"), flush=True)
        if self.machine["loadavg"][0] > 0.5 * (self.machine["cores"] or 1):
            self.note("load average %.2f on %d cores at start: other work competes for the CPUs"
                      % (self.machine["loadavg"][0], self.machine["cores"] or 1))

    def row(self, **kw):
        self.rows.append(kw)
        return kw

    def target(self, name, value, limit, met, detail=""):
        t = {"name": name, "value": value, "limit": limit, "met": met, "detail": detail}
        self.targets.append(t)
        verdict = "n/a " if met is None else ("MET " if met else "MISS")
        print("TARGET %s  %-52s value=%s  limit=%s  %s" % (
            verdict, name, _fmtv(value), limit, detail), flush=True)

    def note(self, s):
        self.notes.append(s)
        print("# note: " + s, flush=True)

    def write(self):
        os.makedirs(RESULTS_DIR, exist_ok=True)
        doc = {"benchmark": self.name, "started": self.started,
               "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "machine": self.machine, "params": self.params, "rows": self.rows,
               "targets": self.targets, "notes": self.notes}
        stamp = self.started.replace(":", "").replace("-", "")[:15]
        path = os.path.join(RESULTS_DIR, "%s-%s.json" % (self.name, PYTAG))
        hist = os.path.join(RESULTS_DIR, "history", "%s-%s-%s.json" % (self.name, PYTAG, stamp))
        os.makedirs(os.path.dirname(hist), exist_ok=True)
        for p in (path, hist):
            with open(p, "w") as f:
                json.dump(doc, f, indent=1, ensure_ascii=False, default=str)
        print("# wrote %s" % os.path.relpath(path, ROOT), flush=True)
        return path


def _fmtv(v):
    if isinstance(v, float):
        return "%.3g" % v
    return str(v)


def table(headers, rows):
    """Print one stable, aligned line per case."""
    srows = [[_cell(c) for c in r] for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in srows)) if srows else len(str(h))
              for i, h in enumerate(headers)]
    print("  ".join(str(h).ljust(w) for h, w in zip(headers, widths)))
    for r in srows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    sys.stdout.flush()


def _cell(c):
    if c is None:
        return "n/a"
    if isinstance(c, float):
        if c == 0:
            return "0"
        if abs(c) >= 100:
            return "%.0f" % c
        if abs(c) >= 10:
            return "%.1f" % c
        return "%.3g" % c
    return str(c)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def common_args(p):
    p.add_argument("--quick", action="store_true", help="small sizes, few repeats (~minutes on 2 cores)")
    return p


def parallel_exec(workers, code):
    """exec(code) in every worker at once, one thread each (own GIL each);
    returns the exceptions raised (empty list when all succeeded)."""
    import threading
    errors = []

    def run(w):
        try:
            w.exec(code)
        except Exception as e:                     # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def collect(qid, n):
    """n JSON results put by workers with qput(qid, json.dumps(...))."""
    return [json.loads(qget_wait(qid)) for _ in range(n)]


def run_workers(k, setup, code, rq):
    """k fresh isolated interpreters, one thread each: setup(worker) in turn,
    then exec(code) in all at once; code makes each worker qput one JSON dict
    {"t0", "t1" (perf_counter_ns), "cpu" (thread_time ns), "ops"} on rq.
    Returns those dicts plus the aggregate: wall seconds (first start to last
    end), ops, ops_per_s, cpu_ns_per_op and cpu_busy (CPU s / wall s)."""
    workers = [Interp(isolated=True) for _ in range(k)]
    try:
        for w in workers:
            setup(w)
        errs = parallel_exec(workers, code)
        if errs:
            raise errs[0]
        rs = collect(rq, k)
    finally:
        for w in workers:
            w.close()
    wall = (max(r["t1"] for r in rs) - min(r["t0"] for r in rs)) / 1e9
    ops = sum(r["ops"] for r in rs)
    cpu = sum(r["cpu"] for r in rs)
    return rs, {"k": k, "ops": ops, "wall_s": wall, "ops_per_s": ops / wall,
                "cpu_ns_per_op": cpu / ops, "cpu_busy": cpu / 1e9 / wall}
