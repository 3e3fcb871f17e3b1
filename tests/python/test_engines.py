"""Ray and Dask carry the image, not a pickled object graph (issue 13).

Real clusters, started here (never mocked): a two-node Ray cluster on this
machine (ray.cluster_utils.Cluster: a head node and a second node with a
custom resource, each with its own object store) and a Dask LocalCluster of
worker processes. Both engines pickle with protocol 5 and a buffer_callback,
so a proxy's image travels as one out-of-band buffer: Ray keeps it in its
object store and a task maps it in place (backing 'buffer': zero-copy over
the plasma buffer); Dask sends it as a frame.

What each test measures runs inside the task: the anonymous (private)
memory a task adds by getting the object and reading all of it, the frozen
image against the same data as plain objects (the engine's own path).

The engines are installed in one test venv (Python 3.13, scripts/setup.sh);
elsewhere these tests skip. Ray needs ~10 s to start: one cluster per module.
"""
import os

import pytest

import frozenshare as fs
from _fshelpers import UNDER_ASAN, readme_examples, run_python, run_script

if UNDER_ASAN:
    pytest.skip("Ray and Dask under ASan's preloaded runtime: not our code to sanitize",
                allow_module_level=True)
ray = pytest.importorskip("ray")
distributed = pytest.importorskip("distributed")

HERE = os.path.dirname(os.path.abspath(__file__))

N = 200_000


def records():
    return [{"id": i, "name": f"name-{i}", "tags": ["t%d" % (i % 50), "x"]} for i in range(N)]


def anon_kb():
    with open("/proc/self/smaps_rollup") as f:
        return sum(int(line.split()[1]) for line in f if line.startswith("Anonymous:"))


def get_and_read(boxed):
    """In a task: get the object (boxed in a list so the engine does not get
    it before we measure), read every record, report what it cost."""
    before = anon_kb()
    x = ray.get(boxed[0])
    total = sum(r["id"] + len(r["name"]) + len(r["tags"]) for r in x)
    grew = anon_kb() - before
    info = fs.info(x) if fs.is_frozen(x) else {}
    return {"grew_kb": grew, "total": total, "backing": info.get("backing"),
            "domain": info.get("hash_domain"), "node": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid()}


def test_readme_ray_example_runs_verbatim():
    """First in the module: it starts a cluster of its own, before the
    module's cluster exists."""
    examples = readme_examples("### Ray and Dask")
    if not examples:
        pytest.skip("README.md is not beside the tests")
    code = examples[0]
    r = run_python(code, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "[(7, 'buffer'), (-1, 'buffer')]"


def test_readme_dask_example_runs_verbatim(tmp_path):
    examples = readme_examples("### Ray and Dask")
    if len(examples) < 2:
        pytest.skip("README.md is not beside the tests")
    r = run_script(tmp_path, examples[1])      # worker processes re-import __main__
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "[(7, 'keyed'), (-1, 'keyed')]"


@pytest.fixture(scope="module")
def two_nodes():
    from ray.cluster_utils import Cluster
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1, resources={"far": 1})
    # workers import this module (the tasks' functions) whatever their cwd
    path = os.pathsep.join(p for p in [HERE, os.environ.get("PYTHONPATH", "")] if p)
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    cluster.wait_for_nodes()
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def expected_total():
    return sum(i + len(f"name-{i}") + 2 for i in range(N))


def test_ray_tasks_map_the_image_from_the_object_store(two_nodes):
    f = fs.freeze(records())
    image_kb = fs.info(f)["image_bytes"] // 1024
    ref = ray.put(f)
    task = ray.remote(num_cpus=1)(get_and_read)
    near = ray.get([task.remote([ref]) for _ in range(2)])
    # pinned to the second node: the image crosses Ray's object manager
    far = ray.get(task.options(resources={"far": 1}).remote([ref]))
    plain = ray.get(task.remote([ray.put(records())]))
    head = ray.get_runtime_context().get_node_id()
    print(f"image {image_kb} KiB; task growth: frozen {[r['grew_kb'] for r in near]} "
          f"(far node {far['grew_kb']}), plain {plain['grew_kb']} KiB")
    for r in near + [far]:
        assert (r["backing"], r["domain"], r["total"]) == ("buffer", "keyed", expected_total())
        assert r["grew_kb"] <= 0.05 * image_kb, (r, image_kb)
    assert far["node"] != head
    assert plain["total"] == expected_total() and plain["backing"] is None
    assert plain["grew_kb"] >= 0.5 * image_kb, (plain, image_kb)


def test_dask_scatter_moves_the_image_as_one_frame():
    from distributed import Client, LocalCluster
    from distributed.protocol import serialize

    f = fs.freeze(records())
    image = fs.info(f)["image_bytes"]
    header, frames = serialize(f)
    sizes = sorted(len(memoryview(fr)) for fr in frames)
    assert sizes[-1] == image and sum(sizes[:-1]) < 4096, sizes  # the image, and a small pickle

    def read(x):
        return (fs.info(x)["hash_domain"], sum(r["id"] for r in x), x[N - 1]["name"])

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        fut = client.scatter(f, broadcast=True)
        got = client.gather([client.submit(read, fut, pure=False, workers=[w])
                             for w in client.scheduler_info()["workers"]])
    assert got == [("keyed", sum(range(N)), f"name-{N - 1}")] * 2
