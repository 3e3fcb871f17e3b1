"""Stress across own-GIL interpreters (DESIGN.md I2, I5): random interleavings
of freeze / share / read / drop / publish / unpublish / interpreter destroy,
bounded in time, reproducible from the printed seed.

Environment: FS_STRESS_SEED (default: fixed), FS_STRESS_SECONDS (default 15),
FS_STRESS_INTERPRETERS (default 2). At the end: zero live regions beyond the
start, image bytes back, every region created was reclaimed, and jemalloc's
allocated bytes of the arena back to the starting value.
"""
import gc
import os
import random
import time

import frozenshare as fs
from _fshelpers import Channel, Interp, checksum, run_in_threads, wait_live

SEED = int(os.environ.get("FS_STRESS_SEED", "20261128"))
SECONDS = float(os.environ.get("FS_STRESS_SECONDS", "15"))
K = int(os.environ.get("FS_STRESS_INTERPRETERS", "2"))


def make_data(rng, i):
    n = rng.randrange(1, 200)
    return {
        "id": i,
        "rows": [{"k": j, "s": "é%d" % j, "f": j / 3} for j in range(n)],
        "blob": bytes(rng.randrange(256) for _ in range(rng.randrange(64))),
        "tags": frozenset(range(n % 11)),
        "big": 10 ** (n % 40),
    }


# Run in a worker each round: drain its inbox, verify what arrived, keep a
# random subset alive across rounds (dropping the rest), maybe look up and
# publish names. Every op is decided by a per-round seed sent along.
WORKER_ROUND = """
import random as _r
_rng = _r.Random({seed})
while True:
    ok, item = chan_try_get({inbox})
    if not ok:
        break
    proxy, expected = item[0], item[1]     # a frozen pair importing the data
    assert fs.is_frozen(proxy)
    assert checksum(proxy) == expected, "checksum mismatch"
    kept.append(proxy)
_rng.shuffle(kept)
del kept[_rng.randrange(len(kept) + 1):]
for _name in ("a", "b"):
    if _rng.random() < 0.3:
        try:
            _p = fs.lookup(_name)
            assert _p["id"] >= 0
            kept.append(_p)
        except KeyError:
            pass
if kept and _rng.random() < 0.2:
    fs.publish("b", kept[0])
if _rng.random() < 0.1:
    try:
        fs.unpublish("a")
    except KeyError:
        pass
if _rng.random() < 0.2:
    kept.append(fs.freeze({{"id": 0, "made_in": "worker", "n": len(kept)}}))
gc.collect()
"""


def test_random_interleavings_balance():
    print(f"stress seed {SEED}, {K} interpreters, {SECONDS:.0f} s")
    rng = random.Random(SEED)
    gc.collect()
    st0 = fs.stats()

    def new_worker():
        w = Interp()
        w.inbox = Channel()
        w.run("kept = []")
        return w

    workers = [new_worker() for _ in range(K)]
    rounds = sent = destroyed = 0
    deadline = time.monotonic() + SECONDS
    try:
        while time.monotonic() < deadline:
            rounds += 1
            for _ in range(rng.randrange(1, 4)):
                data = make_data(rng, rounds)
                f = fs.freeze(data)
                expected = checksum(f)
                for w in rng.sample(workers, rng.randrange(1, K + 1)):
                    # 3.12 channels carry no tuples: send a frozen pair, whose
                    # first item is an import of f's region (no copy)
                    w.inbox.put(fs.freeze((f, expected)))
                    sent += 1
                if rng.random() < 0.3:
                    fs.publish("a", f)
                del f
            run_in_threads([(w, WORKER_ROUND.format(seed=rng.randrange(1 << 30),
                                                    inbox=w.inbox.id))
                            for w in workers])
            if rng.random() < 0.15:
                # Destroy a worker that still holds proxies, sometimes with
                # items still queued for it; replace it.
                victim = workers.pop(rng.randrange(K))
                if rng.random() < 0.5:
                    g = fs.freeze(make_data(rng, -1))
                    victim.inbox.put(fs.freeze((g, checksum(g))))
                    del g
                victim.destroy()
                victim.inbox.destroy()
                destroyed += 1
                workers.append(new_worker())
    finally:
        for w in workers:
            w.destroy()
            w.inbox.destroy()
        for name in fs.published():
            fs.unpublish(name)
    print(f"{rounds} rounds, {sent} hand-offs, {destroyed} interpreters destroyed")
    wait_live(st0["live_regions"])
    gc.collect()
    st1 = fs.stats()
    assert st1["image_bytes"] == st0["image_bytes"]
    assert st1["regions_created"] - st0["regions_created"] == st1["reclaims"] - st0["reclaims"]
    assert st1["arena_allocated_bytes"] == st0["arena_allocated_bytes"]
    assert rounds > 0 and sent > 0


def test_hundred_thousand_live_regions_then_memory_returned():
    """>= 100,000 regions alive at once from Python (one sealed page each),
    then dropped: every region reclaimed and the arena's allocated bytes
    back where they were."""
    gc.collect()
    st0 = fs.stats()
    n = 100_000
    kept = [fs.freeze((i, "r")) for i in range(n)]
    st1 = fs.stats()
    assert st1["live_regions"] - st0["live_regions"] == n
    assert sum(k[0] for k in kept[::1000]) == sum(range(0, n, 1000))
    # Drop every other one first: unsealing splits mappings at each hole.
    del kept[::2]
    del kept
    gc.collect()
    wait_live(st0["live_regions"])
    st2 = fs.stats()
    assert st2["image_bytes"] == st0["image_bytes"]
    assert st2["arena_allocated_bytes"] == st0["arena_allocated_bytes"]
