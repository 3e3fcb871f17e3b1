"""Portable images: dumps/loads, dump/load, pickling, hash domains (issue 13).

Layout:
  * round trips -- every key kind is found again in the loaded image, values
    and types equal the source, info() names the backing;
  * another hash secret -- a fresh process with another PYTHONHASHSEED loads
    the file and finds every key by hashing (stats' lookups_scanned stays 0:
    never a scan of the entries);
  * buffers -- read-only buffers are read in place (backing 'buffer'), writable
    ones copied (backing 'arena', later writes to the source unseen); a proxy
    over a lent buffer still crosses to a subinterpreter and the registry;
  * pickling -- protocol 5 puts the image out of band as one read-only buffer
    (in-band part < 4 KB), every other protocol in band, all through loads;
  * files -- atomic replace (old readers keep the old image), clear errors,
    no partial file on failure;
  * bad input -- empty, truncated, foreign, other-version and mutated images
    give ImageError; mutations run in a child process with their checksums
    recomputed (fs._reseal) so the validator's other checks are what decides,
    and no mutation may crash it.
"""
import io
import mmap
import os
import pickle
import struct
import subprocess
import sys

import pytest

import frozenshare as fs
from _fshelpers import child_env, readme_examples, run_python, run_script, skip_under_asan

HERE = os.path.dirname(os.path.abspath(__file__))

try:
    FROZENDICT = frozendict  # noqa: F821  (3.15+ builtin)
except NameError:
    FROZENDICT = None

KEYS = ["ascii", "caf\xe9", "\u20ac uro", "\U0001f600 astral", "", b"raw", b"",
        0, 1, -1, 2 ** 61 - 1, 2 ** 70, -(2 ** 80), 2.5, -2.25, 1e300, float("inf"), 3 + 4j,
        None, (1, "t", (b"x", 2.0)), (), frozenset({"p", 2}), frozenset(),
        ("nested", frozenset({("a", 1)}))]
if FROZENDICT is not None:
    KEYS.append(FROZENDICT({"k": 1}))


def source():
    d = {k: i for i, k in enumerate(KEYS)}
    return {
        "keys": d,
        "records": [{"id": i, "name": f"n{i}", "score": i * 0.5, "tags": ["a", "b"]}
                    for i in range(300)],
        "vocab": {f"tok{i}": i for i in range(5000)},
        "set": frozenset(KEYS[:12]),
        "blob": b"\x00\xff" * 3000,
    }


def check_keys(p):
    keys = p["keys"]
    for i, k in enumerate(KEYS):
        assert keys[k] == i, k
        assert k in keys
    assert keys[1.0] == KEYS.index(1) and keys[False] == KEYS.index(0)   # 1 == 1.0, 0 == False
    for missing in ("nope", b"nope", 7, 7.5, (1, "u"), frozenset({9})):
        assert missing not in keys
    assert p["vocab"]["tok4999"] == 4999 and "tok5000" not in p["vocab"]
    assert all(k in p["set"] for k in KEYS[:12])


def test_round_trip_every_key_kind():
    src = source()
    f = fs.freeze(src)
    img = fs.dumps(f)
    assert isinstance(img, bytes) and len(img) == fs.info(f)["image_bytes"]
    p = fs.loads(img)
    info = fs.info(p)
    assert (info["backing"], info["hash_domain"]) == ("buffer", "keyed")
    assert fs.info(f)["hash_domain"] == "process" and fs.info(f)["backing"] == "arena"
    scanned = fs.stats()["lookups_scanned"]
    check_keys(p)
    assert fs.stats()["lookups_scanned"] == scanned      # every probe hashed
    assert fs.thaw(p) == src
    assert type(fs.thaw(p)["keys"]) is dict
    # a probe of no key kind still gets dict semantics, by a counted scan
    class Odd:
        def __hash__(self):
            return 1

        def __eq__(self, other):
            return other == 1

    assert p["keys"][Odd()] == KEYS.index(1)
    assert fs.stats()["lookups_scanned"] == scanned + 1
    with pytest.raises(TypeError):
        p["keys"][[1, 2]]                                # unhashable, as in a dict


def test_dumps_of_a_loaded_image_is_a_copy_and_of_anything_else_a_freeze():
    img = fs.dumps(source())                             # a plain object: frozen first
    p = fs.loads(img)
    assert fs.dumps(p) == img                            # already portable: bytes as they are
    inner = fs.dumps(p["records"])                       # not a root: flattened
    assert fs.thaw(fs.loads(inner)) == source()["records"]
    base = fs.freeze({"x": [1, 2]})
    outer = fs.freeze({"base": base, "n": 1})            # imports base
    assert fs.info(outer)["imports"] == 1
    q = fs.loads(fs.dumps(outer))
    assert fs.info(q)["imports"] == 0 and fs.thaw(q) == {"base": {"x": [1, 2]}, "n": 1}
    assert fs.loads(fs.dumps(5)) == 5                    # scalars too
    with pytest.raises(TypeError):
        fs.dumps(object())


CHILD_CHECK = """
import sys
sys.path.insert(0, {here!r})
import frozenshare as fs
import test_portable as T
p = fs.load({path!r})
assert fs.info(p)["backing"] == "file" and fs.info(p)["hash_domain"] == "keyed"
s0 = fs.stats()["lookups_scanned"]
T.check_keys(p)
v = p["vocab"]
assert all(v["tok%d" % i] == i for i in range(5000))
assert fs.stats()["lookups_scanned"] == s0, fs.stats()["lookups_scanned"]
assert fs.thaw(p) == T.source()
print("ok", hash("frozenshare"))
"""


def test_another_hash_secret_finds_every_key_by_hashing(tmp_path):
    path = tmp_path / "data.img"
    fs.dump(source(), path)
    seen = set()
    for seed in ("0", "12345", "random"):
        r = run_python(CHILD_CHECK.format(here=HERE, path=str(path)), args=(), env={"PYTHONHASHSEED": seed})
        assert r.returncode == 0, r.stderr
        word, h = r.stdout.split()
        assert word == "ok"
        seen.add(h)
    assert len(seen) == 3                                # three different secrets


def test_writable_buffers_are_copied_and_read_only_ones_lent():
    img = fs.dumps(source())
    ba = bytearray(img)
    p = fs.loads(ba)
    assert fs.info(p)["backing"] == "arena"
    ba[:] = bytes(len(ba))                               # the owner scribbles
    check_keys(p)
    mv = memoryview(img)
    q = fs.loads(mv)
    assert fs.info(q)["backing"] == "buffer"
    odd = memoryview(b"\x00" + img)[1:]                  # read-only, misaligned: copied
    assert fs.info(fs.loads(odd))["backing"] == "arena"
    with pytest.raises(TypeError):
        fs.loads("not a buffer")
    with pytest.raises(TypeError):
        fs.loads(img, classes=[1])
    assert fs.loads(img, classes=(dict,)) == q           # an allowlist of classes is accepted


def test_mmap_and_file_objects(tmp_path):
    path = tmp_path / "m.img"
    fs.dump(source(), str(path))
    with open(path, "rb") as f:
        p = fs.load(f)                                   # mapped through its fileno()
    assert fs.info(p)["backing"] == "file"
    check_keys(p)
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    q = fs.loads(m)
    assert fs.info(q)["backing"] == "buffer"
    with pytest.raises(BufferError):
        m.close()                                        # the proxy holds the export
    del q
    m.close()
    b = io.BytesIO()
    fs.dump(fs.freeze([1, "two"]), b)
    b.seek(0)
    assert fs.load(b) == [1, "two"]                      # no fileno(): read, then loads
    with open(tmp_path / "after-a-header.bin", "w+b") as f:
        f.write(b"my own header\n")
        fs.dump({"k": 1}, f)                             # written at the position
        f.seek(len(b"my own header\n"))
        assert fs.load(f) == {"k": 1}                    # read from the position


def test_lent_buffer_crosses_interpreters_as_a_copy(interps, channels, names):
    img = fs.dumps({"k": list(range(100))})
    p = fs.loads(img)
    assert fs.info(p)["backing"] == "buffer"
    (a,) = interps(1)
    (c,) = channels(1)
    c.put(p["k"])
    a.run(f"""
        x = chan_get({c.id})
        reply("%s|%d" % (fs.info(x)["backing"], sum(x)))
    """)
    assert a.recv() == f"arena|{sum(range(100))}"
    name = names("lent")
    fs.publish(name, p)
    a.run(f"""
        y = fs.lookup({name!r})
        reply(y["k"][99])
        del x, y
    """)
    assert a.recv() == 99
    fz = fs.freeze({"inner": p})                         # imports the copy, not the buffer
    assert fs.info(fz)["imports"] == 1 and fz["inner"]["k"][5] == 5
    fs.unpublish(name)


def test_mapped_file_crosses_interpreters_by_reference(tmp_path, interps, channels, names):
    path = tmp_path / "x.img"
    fs.dump({"k": list(range(100)), "s": "text"}, path)
    p = fs.load(path)
    rid = fs.info(p)["region_id"]
    (a,) = interps(1)
    (c,) = channels(1)
    c.put(p)
    name = names("mapped")
    fs.publish(name, p["k"])
    a.run(f"""
        x = chan_get({c.id})
        y = fs.lookup({name!r})
        reply("%d|%d|%s|%s|%d" % (fs.info(x)["region_id"], fs.info(y)["region_id"],
                                  fs.info(x)["backing"], x["s"], sum(y)))
        del x, y
    """)
    assert a.recv() == f"{rid}|{rid}|file|text|{sum(range(100))}"   # the same mapping
    fz = fs.freeze([p["k"], 1])                          # an import of the mapped region
    assert fs.info(fz)["import_ids"] == [rid] and fz[0][99] == 99
    fs.unpublish(name)


@pytest.mark.parametrize("proto", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_in_band(proto):
    f = fs.freeze(source())
    data = pickle.dumps(f, protocol=proto)
    q = pickle.loads(data)
    assert type(q) is type(f) and fs.thaw(q) == source()
    assert fs.info(q)["hash_domain"] == "keyed"


def test_pickle_protocol_5_out_of_band():
    f = fs.freeze(source())
    bufs = []
    data = pickle.dumps(f, protocol=5, buffer_callback=bufs.append)
    assert len(data) < 4096 and len(bufs) == 1
    raw = bufs[0].raw()
    assert raw.readonly and raw.contiguous and raw.nbytes == fs.info(f)["image_bytes"]
    q = pickle.loads(data, buffers=bufs)
    assert fs.info(q)["backing"] == "buffer"            # read in place, zero-copy
    check_keys(q)
    # a proxy inside a plain object, and a proxy that is not its region's root
    inner = f["records"]
    bufs = []
    data = pickle.dumps({"a": inner, "b": 1}, protocol=5, buffer_callback=bufs.append)
    got = pickle.loads(data, buffers=bufs)
    assert fs.thaw(got["a"]) == source()["records"] and got["b"] == 1


def test_dump_replaces_atomically_and_old_readers_keep_reading(tmp_path):
    path = tmp_path / "v.img"
    fs.dump({"version": 1, "data": list(range(1000))}, path)
    old = fs.load(path)
    fs.dump({"version": 2, "data": []}, path)
    assert old["version"] == 1 and sum(old["data"]) == sum(range(1000))
    assert fs.load(path)["version"] == 2
    assert sorted(os.listdir(tmp_path)) == ["v.img"]    # no temporary left


def test_dump_failures_leave_nothing(tmp_path):
    with pytest.raises(OSError):
        fs.dump([1], tmp_path / "missing-dir" / "x.img")
    target = tmp_path / "adir"
    target.mkdir()
    with pytest.raises(OSError):
        fs.dump([1], target)                             # rename over a directory
    assert os.listdir(tmp_path) == ["adir"] and os.listdir(target) == []
    with pytest.raises(OSError):
        fs.dump([1], "/proc/frozenshare-test.img")       # no writing there, even as root
    with pytest.raises(TypeError):
        fs.dump(object(), tmp_path / "y.img")            # refused before any file exists
    assert os.listdir(tmp_path) == ["adir"]


def test_bad_files_and_buffers(tmp_path):
    img = fs.dumps(source())
    cases = {
        "empty": b"",
        "short": img[:100],
        "truncated": img[:-8],
        "json": b'{"not": "an image", "padding": "' + b"x" * 200 + b'"}',
        "v1": b"FRZSHRV1" + img[8:],
        "v3": img[:8] + struct.pack("<H", 3) + img[10:],
        "big-endian": img[:10] + b"\x02" + img[11:],
        "flipped": img[:500] + bytes([img[500] ^ 0x10]) + img[501:],
    }
    expect = {"empty": "empty|shorter", "short": "shorter", "truncated": "truncated",
              "json": "not a frozenshare image", "v1": "version 1", "v3": "another format version",
              "big-endian": "big-endian", "flipped": "checksum"}
    for name, data in cases.items():
        path = tmp_path / (name + ".img")
        path.write_bytes(data)
        with pytest.raises(fs.ImageError, match=expect[name]):
            fs.load(path)
        if name != "empty":
            with pytest.raises(fs.ImageError, match=expect[name].split("|")[-1]):
                fs.loads(data)
    assert issubclass(fs.ImageError, ValueError)
    with pytest.raises(FileNotFoundError):
        fs.load(tmp_path / "nothing-here.img")
    with pytest.raises(fs.ImageError, match="not a regular file"):
        fs.load(tmp_path)
    # verify=False checks the header only: for images the caller made
    assert fs.loads(img, verify=False)["vocab"]["tok1"] == 1
    with pytest.raises(fs.ImageError):
        fs.loads(img[:-8], verify=False)


MUTATE = """
import random, struct, sys
sys.path.insert(0, {here!r})
import frozenshare as fs
import frozenshare._frozenshare as C
import test_portable as T

def exercise(p):
    # read everything a reader can reach; any Python exception is fine
    try:
        fs.thaw(p)
    except (ValueError, RecursionError, TypeError, MemoryError, OverflowError):
        pass

rng = random.Random({seed})
images = [fs.dumps(T.source()), fs.dumps([{{"a": i, "b": str(i)}} for i in range(50)]),
          fs.dumps({{"k": frozenset({{1, "x", (2, b"y")}}), "t": (1.5, None, 2 ** 90)}})]
accepted = refused = 0
for n in range({count}):
    img = bytearray(rng.choice(images))
    how = rng.randrange(4)
    if how == 0:                                  # bit flips
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(img))
            img[i] ^= 1 << rng.randrange(8)
    elif how == 1:                                # a patched length / offset word
        i = rng.randrange(len(img) // 8) * 8
        v = rng.choice([0, 1, 7, 8, 0xFFFFFFFF, 2 ** 31, 2 ** 63, len(img), rng.getrandbits(64)])
        img[i:i + 8] = struct.pack("<Q", v)
    elif how == 2:                                # a patched u32 (counts, index sizes)
        i = rng.randrange(len(img) // 4) * 4
        img[i:i + 4] = struct.pack("<I", rng.choice([0, 1, 9, 0xFFFFFFFF, rng.getrandbits(32)]))
    else:                                         # truncation, header kept
        del img[rng.randrange(128, len(img)):]
    if len(img) >= 128 and rng.random() < 0.9:
        try:
            C._reseal(img)                        # the checksum would catch it: skip that check
        except ValueError:
            pass
    try:
        p = fs.loads(bytes(img))
    except fs.ImageError:
        refused += 1
        continue
    accepted += 1
    exercise(p)
print(accepted, refused)
"""


@pytest.mark.parametrize("seed", [1, 2])
def test_mutated_images_never_crash(seed):
    r = run_python(MUTATE.format(here=HERE, seed=seed, count=1500), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    accepted, refused = map(int, r.stdout.split())
    assert refused > 1000 and accepted + refused == 1500


SPAWN = """
import os, pickle, sys
from concurrent.futures import ProcessPoolExecutor
import multiprocessing as mp
sys.path.insert(0, {here!r})
import frozenshare as fs

def anon_kb():
    # anonymous pages only: a private copy; the mapped image is shmem/file
    # pages, counted dirty-private by smaps while one process alone maps them
    with open("/proc/self/smaps_rollup") as f:
        return sum(int(line.split()[1]) for line in f if line.startswith("Anonymous:"))

def init(path, mode):
    global DATA, GROWTH
    before = anon_kb()
    if mode == "frozen":
        DATA = fs.load(path)
    else:
        with open(path, "rb") as f:
            DATA = pickle.load(f)
    total = 0
    for r in DATA["records"]:                 # read every field of every record
        total += r["id"] + len(r["name"]) + len(r["tags"])
    GROWTH = (anon_kb() - before, total)

def report(_):
    return GROWTH

if __name__ == "__main__":
    data = {{"records": [{{"id": i, "name": "name-%d" % i, "tags": ["t%d" % (i % 50), "x"]}}
                        for i in range(200_000)]}}
    img, pkl = {shm!r} + ".img", {shm!r} + ".pkl"
    fs.dump(data, img)
    with open(pkl, "wb") as f:
        pickle.dump(data, f)
    try:
        for mode, path in (("frozen", img), ("pickled", pkl)):
            with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn"),
                                     initializer=init, initargs=(path, mode)) as ex:
                got = list(ex.map(report, range(2)))
            print(mode, os.path.getsize(img) // 1024, *[g for g, _ in got])
    finally:
        os.unlink(img)
        os.unlink(pkl)
"""


@skip_under_asan
@pytest.mark.skipif(not os.path.isdir("/dev/shm") or not os.path.exists("/proc/self/smaps_rollup"),
                    reason="needs /dev/shm and smaps_rollup")
def test_spawned_workers_share_one_loaded_copy(tmp_path):
    """Anonymous (private) memory a spawned worker adds by loading the image
    and reading all of it, against the same data unpickled in the worker (the
    usual way)."""
    shm = f"/dev/shm/fs-test-{os.getpid()}"
    r = run_script(tmp_path, SPAWN.format(here=HERE, shm=shm))
    assert r.returncode == 0, r.stderr[-3000:]
    rows = {line.split()[0]: list(map(int, line.split()[1:])) for line in r.stdout.splitlines()}
    image_kb = rows["frozen"][0]
    frozen, pickled = rows["frozen"][1:], rows["pickled"][1:]
    print(f"image {image_kb} KiB; private growth per worker: frozen {frozen} KiB, "
          f"unpickled {pickled} KiB")
    assert all(g <= 0.03 * image_kb for g in frozen), (image_kb, frozen)
    assert all(g >= 0.5 * image_kb for g in pickled), (image_kb, pickled)


def test_readme_spawn_example_runs_verbatim(tmp_path):
    examples = readme_examples("### `spawn`, files and pickling")
    if not examples:
        pytest.skip("README.md is not beside the tests")
    (code,) = examples
    r = run_script(tmp_path, code)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "[7, 999999, -1]"


def cli(*args):
    return subprocess.run([sys.executable, "-m", "frozenshare", *map(str, args)],
                          env=child_env(None), capture_output=True, text=True, timeout=120)


def test_command_line_info_and_verify(tmp_path):
    good, bad = tmp_path / "good.img", tmp_path / "bad.img"
    fs.dump(source(), good)
    data = bytearray(good.read_bytes())
    data[300] ^= 4
    bad.write_bytes(bytes(data))
    r = cli("info", good)
    assert r.returncode == 0, r.stderr
    for want in ("format:         version 2, little-endian, 64-bit", "hash domain:    keyed",
                 "checksum:       xxh3", "root:           FrozenMap of 5", "shaped dict",
                 f"image bytes:    {len(data)}"):
        assert want in r.stdout, (want, r.stdout)
    r = cli("verify", good)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr
    r = cli("verify", bad)
    assert r.returncode == 1 and "checksum" in r.stderr, r.stderr
    r = cli("info", tmp_path / "absent.img")
    assert r.returncode == 1 and "No such file" in r.stderr
    for sub in ("info", "verify"):
        r = cli(sub, "--help")
        assert r.returncode == 0 and "FILE" in r.stdout
    assert cli().returncode == 2                         # a command is required
