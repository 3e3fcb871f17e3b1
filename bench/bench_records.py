"""bench_records -- records of user classes and typed buffers (issue 14).

What it measures, each against its baseline in the same run:
  freeze   fs.freeze of a list of N frozen dataclasses (7 fields: the records7
           shape) vs pickle.dumps (protocol 5) of the same list; the same for
           named tuples.
  thaw     fs.thaw of it vs pickle.loads of that pickle.
  field    reading one field of every record of the FrozenList
           (sum(r.rank for r in frozen)) vs the same over the list of
           instances: each read rebuilds an instance (no user code runs) --
           what the O(1) hand-off costs per record read.
  numpy    numpy.asarray of a frozen 100 MB float64 array vs pickle.loads of
           its pickle: O(1) (a view of the image) vs O(n) (a copy); and the
           freeze of the array vs pickle.dumps.
Targets (issue 14): field read <= 2x; asarray O(1) (the ratio grows with size).
"""
import argparse
import dataclasses
import pickle
import random
from typing import NamedTuple

import fsbench as F

fs = F.load_fs()


@dataclasses.dataclass(frozen=True)
class Token:
    id: int
    token: str
    rank: int
    count: int
    score: float
    lang: str
    flag: bool


# the same fields as a typing.NamedTuple
TokenNT = NamedTuple("TokenNT", [(f.name, f.type) for f in dataclasses.fields(Token)])


def gen(n, cls, seed=14):
    rnd = random.Random(seed)
    langs = ["en", "de", "fr", "ja", "zh", "es"]
    return [cls(i, "tok%06d" % rnd.randrange(10**6), rnd.randrange(50_000), rnd.randrange(10**6),
                rnd.random(), rnd.choice(langs), rnd.random() < 0.5) for i in range(n)]


def records_rows(res, n, cls, label, repeat):
    data = gen(n, cls)
    pkl = pickle.dumps(data, protocol=5)
    t_fz = F.time_once(lambda: fs.freeze(data), repeat)[1]
    t_pd = F.time_once(lambda: pickle.dumps(data, protocol=5), repeat)[1]
    fz = fs.freeze(data)
    t_th = F.time_once(lambda: fs.thaw(fz), repeat)[1]
    t_pl = F.time_once(lambda: pickle.loads(pkl), repeat)[1]
    plain = data

    def read_frozen():
        s = 0
        for r in fz:
            s += r.rank
        return s

    def read_plain():
        s = 0
        for r in plain:
            s += r.rank
        return s
    assert read_frozen() == read_plain()
    ns_fz, ns_pl = F.time_interleaved([read_frozen, read_plain], n, min_time=1.0, repeat=3)
    rows = [
        [label + " freeze", t_fz, t_pd, F.ratio(t_pd, t_fz), "pickle.dumps / freeze"],
        [label + " thaw", t_th, t_pl, F.ratio(t_pl, t_th), "pickle.loads / thaw"],
        [label + " field read (ns/record)", ns_fz, ns_pl, F.ratio(ns_fz, ns_pl),
         "frozen / instances"],
    ]
    for r in rows:
        res.row(case=r[0], frozenshare=r[1], baseline=r[2], ratio=r[3], meaning=r[4], n=n,
                image_bytes=F.fs_image_bytes(fz), pickle_bytes=len(pkl))
    return rows, F.ratio(ns_fz, ns_pl), F.ratio(t_pd, t_fz), F.ratio(t_pl, t_th)


def numpy_rows(res, nbytes, repeat):
    try:
        import numpy as np
    except ImportError:
        res.note("NumPy is not installed: the numpy rows are skipped")
        return []
    a = np.random.default_rng(14).random(nbytes // 8)
    pkl = pickle.dumps(a, protocol=5)
    fz = fs.freeze(a)
    t_as = F.time_once(lambda: np.asarray(fz), repeat)[1]
    t_pl = F.time_once(lambda: pickle.loads(pkl), repeat)[1]
    t_fz = F.time_once(lambda: fs.freeze(a), repeat)[1]
    t_pd = F.time_once(lambda: pickle.dumps(a, protocol=5), repeat)[1]
    assert np.asarray(fz).ctypes.data != a.ctypes.data and (np.asarray(fz)[:10] == a[:10]).all()
    rows = [
        ["numpy.asarray(frozen %s)" % F.fmt_bytes(a.nbytes), t_as, t_pl, F.ratio(t_pl, t_as),
         "pickle.loads / asarray"],
        ["freeze ndarray %s" % F.fmt_bytes(a.nbytes), t_fz, t_pd, F.ratio(t_pd, t_fz),
         "pickle.dumps / freeze"],
    ]
    for r in rows:
        res.row(case=r[0], frozenshare=r[1], baseline=r[2], ratio=r[3], meaning=r[4])
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    F.common_args(ap)
    args = ap.parse_args()
    res = F.Results("records", args)
    n = 20_000 if args.quick else 200_000
    repeat = 3 if args.quick else 5
    rows, field, fz_ratio, th_ratio = records_rows(res, n, Token, "dataclass", repeat)
    rows += records_rows(res, n, TokenNT, "namedtuple", repeat)[0]
    rows += numpy_rows(res, (10 << 20) if args.quick else (100 << 20), repeat)
    F.table(["case", "frozenshare (s|ns)", "baseline", "ratio", "ratio is"], rows)
    res.target("field read over frozen dataclasses vs instances", field, "<= 2x",
               field is not None and field <= 2.0)
    res.note("freeze/pickle.dumps %.2fx, pickle.loads/thaw %.2fx (dataclasses, n=%d)"
             % (fz_ratio, th_ratio, n))
    res.write()


if __name__ == "__main__":
    main()
