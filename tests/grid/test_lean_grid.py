"""CPU the grid's machinery takes from the rounds: the coordinator's XLA pool
(``grid.coordinator_xla_threads``) and an embedded LocalCluster's Dask settings
(``grid.dask_profiler``, the monitors' polling)."""
import json
import os
import subprocess
import sys

import pytest

from tests.grid.conftest import tiny_config

_POOL_CHILD = r"""
import json, os, sys
from fedjax_grid.grid.plugin import size_own_xla_pool
n = None if sys.argv[1] == "none" else int(sys.argv[1])
first = size_own_xla_pool(n)
env_after = os.environ.get("PJRT_NPROC")
import jax, jax.numpy as jnp
x = jnp.ones((512, 512)); (x @ x).block_until_ready()
names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
print(json.dumps({"first": first, "again": size_own_xla_pool(1), "env_after": env_after,
                  "xla_threads": sum("XLAEigen" in s for s in names),
                  "async_dispatch": jax.config.read("jax_cpu_enable_async_dispatch")}))
"""


def _pool_child(arg: str, cpus: str = "0-1") -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PJRT_NPROC", "NPROC")}
    out = subprocess.run(["taskset", "-c", cpus, sys.executable, "-c", _POOL_CHILD, arg],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not os.path.isdir("/proc/self/task") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux /proc and 2 cores")
def test_coordinator_pool_is_sized_before_jax_starts_and_leaves_the_environment():
    one = _pool_child("1")
    # the backend started with one XLA thread; PJRT_NPROC is not left for spawned workers
    # and runs its computations inline (no asynchronous dispatch)
    assert one == {"first": True, "again": False, "env_after": None, "xla_threads": 1,
                   "async_dispatch": False}
    own = _pool_child("none")  # null: XLA's own choice, the process's 2 cores
    assert own["first"] is False and own["env_after"] is None and own["xla_threads"] == 2
    assert own["async_dispatch"] is True


def test_local_cluster_runs_without_the_worker_profiler_and_with_slower_monitors(grid):
    def callbacks(dask_worker):
        pcs = dask_worker.periodic_callbacks
        return sorted(pcs), pcs["monitor"].callback_time, pcs["tick"].callback_time
    seen = grid.client.run(callbacks)
    assert len(seen) == 2
    for names, monitor_ms, tick_ms in seen.values():
        assert "profile" not in names and "heartbeat" in names
        assert monitor_ms == 2000  # the system monitor polls every 2 s (Dask: 0.5 s)
        assert tick_ms == 500  # the event loop's tick (Dask: every 20 ms)
    assert grid.cluster.scheduler.periodic_callbacks["tick"].callback_time == 500
    nanny_ms = [n.periodic_callbacks["memory_monitor"].callback_time
                for n in grid.cluster.workers.values()]
    assert nanny_ms == [500, 500]


def test_the_worker_profiler_comes_back_when_asked(tmp_path):
    from fedjax_grid.grid.cluster import open_cluster
    cfg = tiny_config(**{"grid.dask_profiler": "true", "grid.workers": 1})
    handle = open_cluster(cfg.grid, local_directory=str(tmp_path / "dask"))
    try:
        seen = handle.client.run(lambda dask_worker: sorted(dask_worker.periodic_callbacks))
    finally:
        handle.close()
    assert [("profile" in names) for names in seen.values()] == [True]


@pytest.mark.parametrize("bad", ["0", "-1", "many"])
def test_bad_coordinator_threads_are_refused_in_one_line(bad):
    from fedjax_grid.errors import UserError
    with pytest.raises(UserError) as e:
        tiny_config(**{"grid.coordinator_xla_threads": bad})
    assert "grid.coordinator_xla_threads" in str(e.value) and "\n" not in str(e.value)


def test_local_cluster_workers_yield_the_cores_to_the_coordinator(grid):
    def niceness():
        tids = [int(t) for t in os.listdir("/proc/self/task")]
        return sorted({os.getpriority(os.PRIO_PROCESS, t) for t in tids})

    base = os.getpriority(os.PRIO_PROCESS, 0)
    seen = grid.client.run(niceness)
    # every thread of both workers (XLA's pool and the task thread included) is 5 nicer
    assert list(seen.values()) == [[min(19, base + 5)]] * 2
    assert tiny_config().grid.worker_nice == 5


def test_lower_priority_by_zero_changes_nothing():
    from fedjax_grid.grid.plugin import lower_priority
    assert lower_priority(0) == os.getpriority(os.PRIO_PROCESS, 0)


def test_setting_a_worker_up_again_does_not_lower_it_further(grid):
    from fedjax_grid import version
    from fedjax_grid.grid.cluster import register_plugin
    from fedjax_grid.grid.plugin import JaxWorkerPlugin
    base = os.getpriority(os.PRIO_PROCESS, 0)
    plugin = JaxWorkerPlugin(version.__version__, xla_threads=1, nice=5)
    assert not register_plugin(grid.client, plugin, timeout_s=60)
    seen = grid.client.run(lambda: os.getpriority(os.PRIO_PROCESS, 0))
    assert list(seen.values()) == [min(19, base + 5)] * 2


def test_closing_an_embedded_cluster_first_quiets_its_workers_heartbeat_errors(tmp_path):
    """Dask retires the workers and terminates the scheduler at once: a worker's heartbeat
    meeting the gone scheduler would print an ERROR and a traceback into the run's output.
    ``close`` first raises those loggers to CRITICAL on every worker (a real cluster)."""
    import logging

    from fedjax_grid.grid.cluster import SHUTDOWN_QUIET, open_cluster
    handle = open_cluster(tiny_config().grid, local_directory=str(tmp_path))
    levels = lambda: handle.client.run(  # noqa: E731
        lambda: [logging.getLogger(n).getEffectiveLevel() for n in SHUTDOWN_QUIET])
    assert all(lv < logging.CRITICAL for v in levels().values() for lv in v)
    calls, run = [], handle.client.run

    def spy(fn, *a, **kw):
        out = run(fn, *a, **kw)
        calls.append((fn.__name__, out))
        return out
    handle.client.run = spy
    handle.close()
    assert [name for name, _ in calls] == ["quiet_shutdown"]
    assert sorted(calls[0][1].values()) == [logging.CRITICAL] * 2  # both workers, before closing
    assert handle.closed


def test_processes_sharing_a_gpu_allocate_on_demand_unless_the_user_said_otherwise():
    from fedjax_grid.accelerator import share_accelerator_memory
    env = {}
    assert share_accelerator_memory(env) == {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    assert env == {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    mine = {"XLA_PYTHON_CLIENT_PREALLOCATE": "true"}
    assert share_accelerator_memory(mine) == {}
    assert mine == {"XLA_PYTHON_CLIENT_PREALLOCATE": "true"}


def test_importing_the_toolkit_lets_a_process_share_the_gpu_before_jax_starts():
    env = {k: v for k, v in os.environ.items() if k != "XLA_PYTHON_CLIENT_PREALLOCATE"}
    code = "import os, fedjax_grid; print(os.environ.get('XLA_PYTHON_CLIENT_PREALLOCATE'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.stdout.strip() == "false", out.stderr[-2000:]
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "true"  # the user's choice stays
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.stdout.strip() == "true", out.stderr[-2000:]


def test_local_cluster_workers_and_coordinator_share_the_accelerator(grid):
    # the coordinator set it (on import) before starting the workers; their set-up keeps it
    want = os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"]
    seen = grid.client.run(lambda: os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE"))
    assert list(seen.values()) == [want] * 2


def test_a_local_cluster_without_dashboard_leaves_port_8787(tmp_path):
    import urllib.request
    import warnings

    from fedjax_grid.grid.cluster import open_cluster
    cfg = tiny_config().with_overrides(["grid.dashboard_address=null", "grid.workers=1"])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        handle = open_cluster(cfg.grid, local_directory=str(tmp_path / "dask"))
    try:
        # with 8787 taken (by another cluster) Dask would warn and move; free, it would take it
        assert not [w for w in seen if "8787" in str(w.message)]
        sched = handle.cluster.scheduler
        ports = [s.getsockname()[1] for s in sched.http_server._sockets.values()]
        assert ports and 8787 not in ports  # Dask's default HTTP port is left to others
        base = f"http://127.0.0.1:{ports[0]}"
        assert urllib.request.urlopen(base + "/health", timeout=10).status == 200
    finally:
        handle.close()
