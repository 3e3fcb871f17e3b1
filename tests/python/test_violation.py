"""The violation reporter (DESIGN.md, "Violation reporter"): a write into
frozen memory kills the process by SIGSEGV, after one line on stderr naming
the address and the region -- a region frozen here or a loaded (mapped)
file, whose truncation while loaded is named too (SIGBUS);
FROZENSHARE_NO_SIGNAL_HANDLER=1 opts out.

The writes run in child processes. The address comes from the read-only
buffer of a FrozenBytes (or a .view()), through PyObject_GetBuffer called
with ctypes (ctypes.c_char.from_buffer refuses read-only buffers)."""
import os
import re
import signal

import pytest

import frozenshare as fs
from _fshelpers import run_python


HERE = os.path.dirname(os.path.abspath(__file__))   # _fshelpers, for the children
PRELUDE = f"""
import ctypes, sys
sys.path.insert(0, {HERE!r})
import frozenshare as fs
from _fshelpers import buffer_address as address_of
"""

WRITE_FB = PRELUDE + r'''
fb = fs.freeze(b"A" * 3 * 65536)
addr, n = address_of(memoryview(fb))
assert n == 3 * 65536
rid = fs.info(fb)["region_id"]
assert ctypes.string_at(addr, 4) == b"AAAA"        # reading frozen memory is fine
target = addr + OFFSET
print("REGION", rid, "ADDR", hex(target), flush=True)
ctypes.memset(target, 0x42, 1)
print("SURVIVED", flush=True)
'''

LINE_RE = re.compile(r"frozenshare: write to frozen memory at (0x[0-9a-f]+) "
                     r"\(region #(\d+), offset (0x[0-9a-f]+)\)")


def _parse(stdout):
    m = re.search(r"REGION (\d+) ADDR (0x[0-9a-f]+)", stdout)
    assert m, stdout
    return int(m.group(1)), int(m.group(2), 16)


def _write(offset=0, env=None, args=(), code=WRITE_FB):
    return run_python(code.replace("OFFSET", str(offset)), env=env, args=args, timeout=60)


def test_write_to_frozen_memory_dies_with_report():
    r = _write()
    assert r.returncode == -signal.SIGSEGV, (r.returncode, r.stderr[-2000:])
    assert "SURVIVED" not in r.stdout
    rid, addr = _parse(r.stdout)
    assert "frozenshare: write to frozen memory at 0x" in r.stderr
    m = LINE_RE.search(r.stderr)
    assert m, r.stderr
    assert int(m.group(1), 16) == addr
    assert int(m.group(2)) == rid
    assert r.stderr.count("frozenshare: write to frozen memory") == 1


def test_reported_offset_follows_the_address():
    r0 = _write(0)
    r1 = _write(2 * 4096 + 5)
    for r in (r0, r1):
        assert r.returncode == -signal.SIGSEGV, r.stderr[-2000:]
    m0, m1 = LINE_RE.search(r0.stderr), LINE_RE.search(r1.stderr)
    assert m0 and m1
    assert int(m1.group(3), 16) - int(m0.group(3), 16) == 2 * 4096 + 5


def test_no_signal_handler_opt_out():
    r = _write(env={"FROZENSHARE_NO_SIGNAL_HANDLER": "1"})
    assert r.returncode == -signal.SIGSEGV, (r.returncode, r.stderr[-2000:])
    assert "SURVIVED" not in r.stdout
    assert "frozenshare:" not in r.stderr


def test_report_with_faulthandler_enabled_first():
    """faulthandler installed at startup (-X faulthandler); the reporter goes
    on top at freeze, reports, then chains to faulthandler."""
    r = _write(args=("-X", "faulthandler"))
    assert r.returncode == -signal.SIGSEGV, (r.returncode, r.stderr[-2000:])
    assert LINE_RE.search(r.stderr), r.stderr
    assert "Fatal Python error" in r.stderr          # faulthandler still ran
    assert r.stderr.index("frozenshare: write") < r.stderr.index("Fatal Python error")


def test_report_when_faulthandler_enabled_between_freezes():
    code = PRELUDE + r'''
import faulthandler
first = fs.freeze([1])
faulthandler.enable()                 # now faulthandler is on top ...
fb = fs.freeze(b"B" * 8192)           # ... and freeze re-checks the reporter
addr, n = address_of(memoryview(fb))
print("REGION", fs.info(fb)["region_id"], "ADDR", hex(addr), flush=True)
ctypes.memset(addr, 0, 1)
print("SURVIVED", flush=True)
'''
    r = run_python(code, timeout=60)
    assert r.returncode == -signal.SIGSEGV, (r.returncode, r.stderr[-2000:])
    rid, addr = _parse(r.stdout)
    m = LINE_RE.search(r.stderr)
    assert m and int(m.group(1), 16) == addr and int(m.group(2)) == rid, r.stderr


def test_write_through_view_address_inside_container():
    code = PRELUDE + r'''
m = fs.freeze({"k": b"C" * 10000, "other": [1, 2]})
addr, n = address_of(m.view("k"))
assert n == 10000
print("REGION", fs.info(m)["region_id"], "ADDR", hex(addr + 100), flush=True)
ctypes.memmove(addr + 100, b"hello", 5)
print("SURVIVED", flush=True)
'''
    r = run_python(code, timeout=60)
    assert r.returncode == -signal.SIGSEGV, (r.returncode, r.stderr[-2000:])
    rid, addr = _parse(r.stdout)
    m = LINE_RE.search(r.stderr)
    assert m and int(m.group(2)) == rid, r.stderr
    assert addr <= int(m.group(1), 16) < addr + 5


def test_unrelated_segfault_is_not_reported():
    """A fault outside the arena (a NULL-page read) is not misreported, and
    the process still dies by SIGSEGV."""
    code = PRELUDE + r'''
keep = fs.freeze({"x": 1})
print("READY", flush=True)
ctypes.string_at(16, 1)
print("SURVIVED", flush=True)
'''
    r = run_python(code, timeout=60)
    assert "READY" in r.stdout
    assert r.returncode == -signal.SIGSEGV, (r.returncode, r.stderr[-2000:])
    assert "frozenshare:" not in r.stderr


def test_reporter_names_region_frozen_in_a_subinterpreter():
    """A region frozen by an own-GIL subinterpreter (still alive and holding
    it); the main thread writes into it (ctypes cannot load in isolated
    subinterpreters on 3.12). The child makes the subinterpreter with the
    suites' Interp, whatever the Python version."""
    code = PRELUDE + r'''
from _fshelpers import Interp
sub = Interp()
sub.run("""
    fb = fs.freeze(b'D' * 8192)
    mv = memoryview(fb)
    reply(fs.info(fb)['region_id'])
    fs.publish('viol', fb)
""")
rid = sub.recv()
# main reaches the sub's region through the registry
got = fs.lookup('viol')
assert fs.info(got)["region_id"] == rid
addr, n = address_of(memoryview(got))
print("REGION", rid, "ADDR", hex(addr), flush=True)
ctypes.memset(addr, 1, 1)
print("SURVIVED", flush=True)
'''
    r = run_python(code, timeout=60)
    assert r.returncode == -signal.SIGSEGV, (r.returncode, r.stdout, r.stderr[-2000:])
    rid, addr = _parse(r.stdout)
    m = LINE_RE.search(r.stderr)
    assert m and int(m.group(1), 16) == addr and int(m.group(2)) == rid, r.stderr


def test_writing_to_a_view_raises_typeerror_in_process():
    m = fs.freeze({"k": b"abc"})
    v = m.view("k")
    with pytest.raises(TypeError):
        v[0] = 0
    mv = memoryview(fs.freeze(b"xyz"))
    with pytest.raises(TypeError):
        mv[0] = 0
    assert v.tobytes() == b"abc" and mv.tobytes() == b"xyz"


def test_segfault_after_faulthandler_disable_dies_instead_of_spinning():
    """D2 (issue 10): the reporter is installed at import, faulthandler goes
    on top of it, freeze puts the reporter back on top (chaining to
    faulthandler), and faulthandler.disable() restores its previous handler:
    the reporter, still chaining to a faulthandler that now just returns. The
    fault must end in the default action, not re-execute forever."""
    code = PRELUDE + r'''
import faulthandler
faulthandler.enable()
fs.freeze([1])
faulthandler.disable()
print("READY", flush=True)
ctypes.string_at(0)
print("SURVIVED", flush=True)
'''
    r = run_python(code, timeout=30)          # before the fix: TimeoutExpired
    assert "READY" in r.stdout and "SURVIVED" not in r.stdout, r.stdout
    assert r.returncode == -signal.SIGSEGV, (r.returncode, r.stderr[-2000:])
    assert "frozenshare:" not in r.stderr


def test_write_after_faulthandler_disable_reports_once_then_dies():
    """The same chain, for a write into frozen memory: one report (not one per
    re-execution), then death by SIGSEGV."""
    code = WRITE_FB.replace("fb = fs.freeze(", "import faulthandler\nfaulthandler.enable()\n"
                            "fb = fs.freeze(", 1).replace(
        "target = addr", "faulthandler.disable()\ntarget = addr", 1)
    r = run_python(code.replace("OFFSET", "0"), timeout=30)
    assert r.returncode == -signal.SIGSEGV, (r.returncode, r.stderr[-2000:])
    rid, addr = _parse(r.stdout)
    m = LINE_RE.search(r.stderr)
    assert m and int(m.group(1), 16) == addr and int(m.group(2)) == rid, r.stderr
    assert r.stderr.count("frozenshare: write to frozen memory") == 1, r.stderr


WRITE_LOADED = PRELUDE + r'''
import os
path = PATH
fs.dump({"blob": b"A" * 3 * 65536, "n": 1}, path)
m = fs.load(path)
addr, n = address_of(m.view("blob"))
target = addr + OFFSET
print("REGION", fs.info(m)["region_id"], "ADDR", hex(target), flush=True)
ACTION
print("SURVIVED", flush=True)
'''


@pytest.mark.parametrize("mode", ["write", "truncate"])
def test_mapped_file_faults_are_named(tmp_path, mode):
    """A loaded file is mapped read-only: a stray write faults and the
    report names the region; a file cut while loaded gives SIGBUS on the
    next read past its new end, named as such."""
    offset, action = ((100, "ctypes.memset(target, 0x42, 1)") if mode == "write" else
                      (100 + 65536, "os.truncate(path, 4096)\nctypes.string_at(target, 1)"))
    code = (WRITE_LOADED.replace("PATH", repr(str(tmp_path / "m.img")))
            .replace("OFFSET", str(offset)).replace("ACTION", action))
    r = run_python(code, timeout=60)
    rid, addr = _parse(r.stdout)
    assert "SURVIVED" not in r.stdout
    if mode == "write":
        assert r.returncode == -signal.SIGSEGV, (r.returncode, r.stderr[-2000:])
        m = LINE_RE.search(r.stderr)
        assert m and int(m.group(2)) == rid and int(m.group(1), 16) == addr, r.stderr
    else:
        assert r.returncode == -signal.SIGBUS, (r.returncode, r.stderr[-2000:])
        assert ("frozenshare: read past the end of a mapped image file (truncated while "
                "loaded?) at %s (region #%d" % (hex(addr), rid)) in r.stderr, r.stderr
