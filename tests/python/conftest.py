"""pytest configuration for the frozenshare suites.

* a hypothesis profile: bounded, derandomized, no example database, caches
  in the temp dir (nothing is written into the source tree);
* an autouse fixture: after each test (and gc.collect), fs.stats()['live_regions']
  must be back to its value before the test -- every suite is also a leak test;
* fixtures making subinterpreters and channels that are always destroyed.
"""
import os
import sys
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

# hypothesis caches (unicode tables, ...) go to a temp dir, not into the tree
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "frozenshare-hypothesis"))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import frozenshare as fs  # noqa: E402  (fails loudly if the module did not build)
from _fshelpers import Channel, Interp, wait_live, wait_stable  # noqa: E402

settings.register_profile(
    "frozenshare",
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("frozenshare")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(autouse=True)
def no_region_leak(request):
    """live_regions returns to its starting value after each test."""
    # pytest keeps the previous failure's traceback (hence its frames and
    # proxies) in sys.last_* until the *call* phase of the next test: drop it
    # now, or a failure would shift the count of the test after it.
    for attr in ("last_type", "last_value", "last_traceback", "last_exc"):
        if hasattr(sys, attr):
            delattr(sys, attr)
    start = wait_stable()
    yield start
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        return  # the failure's traceback keeps proxies alive: don't double-report
    wait_live(start, timeout=10.0)


@pytest.fixture
def interps():
    """interps(n) -> list of n new own-GIL subinterpreters, destroyed at teardown."""
    made = []

    def make(n=1):
        new = [Interp() for _ in range(n)]
        made.extend(new)
        return new

    yield make
    for it in made:
        it.destroy()


@pytest.fixture
def channels():
    """channels(n) -> list of n new queues/channels, destroyed at teardown."""
    made = []

    def make(n=1):
        new = [Channel() for _ in range(n)]
        made.extend(new)
        return new

    yield make
    for ch in made:
        ch.destroy()


@pytest.fixture
def names():
    """Registry names unique to the test; unpublished at teardown."""
    used = []

    def make(base):
        name = f"test:{os.getpid()}:{base}:{len(used)}"
        used.append(name)
        return name

    yield make
    for n in used:
        try:
            fs.unpublish(n)
        except (KeyError, ValueError):   # not published / a name it refused
            pass
