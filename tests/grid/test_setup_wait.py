"""Start-up at scale: a worker still importing JAX for the plugin is not a dead worker.

Unit level (fakes for the scheduler's view and the set-up check, no processes): the wait
for a first healthy worker goes on past ``grid.wait_for_workers_s`` while connected workers
answer "setting up", up to the stated bound (``wait_for_workers_s`` + ``SETUP_S_PER_WORKER``
x connected workers), then one line; workers that do not answer (frozen) do not extend it;
the check's time limit grows with the workers checked at once. The plugin's set-up imports
JAX in a thread, so the worker's event loop (heartbeats, the set-up check) keeps running.
Real: a LocalCluster of 3 workers whose set-up is slowed answers the check while setting up.
"""
import asyncio
import threading
import time

import pytest

from fedjax_grid import version
from fedjax_grid.grid import health, plugin
from fedjax_grid.grid.health import NoWorkersError, WorkerLedger, wait_for_healthy

V = version.__version__


def ready():
    return {"version": V, "configured": True, "setting_up": False, "setup_error": None}


def importing():
    return {"version": V, "configured": False, "setting_up": True, "setup_error": None}


def fake_grid(monkeypatch, n, answer, age_s=0.1):
    """n workers in the scheduler's view; ``answer(address, poll)`` is each one's set-up
    report (or exception) at the given poll; returns the calls' log."""
    view = {f"tcp://w{i}": {"name": f"w{i}", "age_s": age_s} for i in range(n)}
    log = {"polls": 0, "timeouts": []}

    def worker_view(client):
        log["polls"] += 1
        return view

    def each_worker(client, function, workers, timeout_s):
        log["timeouts"].append((len(list(workers)), timeout_s))
        return {a: answer(a, log["polls"]) for a in workers}
    monkeypatch.setattr(health, "worker_view", worker_view)
    monkeypatch.setattr(health, "each_worker", each_worker)
    return log


def test_wait_goes_on_while_workers_set_up_then_returns_the_ready_ones(monkeypatch):
    fake_grid(monkeypatch, 4, lambda a, poll: ready() if poll >= 6 and a == "tcp://w2"
              else importing())
    said = []
    t = time.time()
    healthy = wait_for_healthy(WorkerLedger(V), None, grace_s=0.1, t0=None, notify=said.append,
                               poll_s=0.05, setup_s_per_worker=10.0)
    assert healthy == ["tcp://w2"]
    assert time.time() - t > 0.2  # past grace_s: kept waiting for the workers setting up
    assert said[0].startswith("4 of 4 connected worker(s) still setting up (importing JAX); "
                              "waiting up to 40 s (grid.wait_for_workers_s=0.1 + 10 s x 4")
    assert said[-1].startswith("1 worker(s) ready after")


def test_setting_up_past_the_bound_is_one_line(monkeypatch):
    fake_grid(monkeypatch, 3, lambda a, poll: importing())
    t = time.time()
    with pytest.raises(NoWorkersError) as e:
        wait_for_healthy(WorkerLedger(V), None, grace_s=0.2, t0=None, notify=lambda m: None,
                         poll_s=0.05, setup_s_per_worker=0.1)
    waited = time.time() - t
    assert 0.5 - 0.05 <= waited < 3.0  # the bound: 0.2 + 0.1 x 3 workers
    line = str(e.value)
    assert "\n" not in line
    assert "3 of 3 connected still setting up (importing JAX) past the set-up bound of 0.5 s " \
           "(grid.wait_for_workers_s=0.2 + 0.1 s x 3 workers)" in line


def test_workers_that_do_not_answer_do_not_extend_the_wait(monkeypatch):
    fake_grid(monkeypatch, 2, lambda a, poll: asyncio.TimeoutError())
    said = []
    t = time.time()
    with pytest.raises(NoWorkersError, match=r"grid.wait_for_workers_s=0.3; 2 connected"):
        wait_for_healthy(WorkerLedger(V), None, grace_s=0.3, t0=None, notify=said.append,
                         poll_s=0.05, setup_s_per_worker=100.0)
    assert time.time() - t < 5.0
    assert said == ["no healthy worker connected (2 connected); waiting up to 0.3 s "
                    "(grid.wait_for_workers_s) for desktops to return"]


def test_stale_workers_setting_up_do_not_extend_the_wait(monkeypatch):
    """A worker that said "setting up" and then went silent (frozen) is not progress."""
    fake_grid(monkeypatch, 2, lambda a, poll: importing(), age_s=health.STALE_S + 1)
    ledger = WorkerLedger(V)
    ledger.setting_up = {"tcp://w0", "tcp://w1"}
    t = time.time()
    with pytest.raises(NoWorkersError, match="grid.wait_for_workers_s=0.2; 2 connected"):
        wait_for_healthy(ledger, None, grace_s=0.2, t0=None, notify=lambda m: None,
                         poll_s=0.05, setup_s_per_worker=100.0)
    assert time.time() - t < 5.0


def test_without_the_setup_allowance_the_grace_is_the_bound(monkeypatch):
    """Inside a round (deadline) the wait is not extended by workers setting up."""
    fake_grid(monkeypatch, 2, lambda a, poll: importing())
    with pytest.raises(NoWorkersError, match="grid.wait_for_workers_s=0.2; 2 connected"):
        wait_for_healthy(WorkerLedger(V), None, grace_s=0.2, t0=None, notify=lambda m: None,
                         poll_s=0.05)


def test_probe_time_limit_grows_with_the_workers_checked(monkeypatch):
    log = fake_grid(monkeypatch, 32, lambda a, poll: ready())
    assert len(wait_for_healthy(WorkerLedger(V), None, grace_s=1.0, t0=None,
                                notify=lambda m: None)) == 32
    assert log["timeouts"] == [(32, health.PROBE_TIMEOUT_S + 32 * health.PROBE_S_PER_WORKER)]
    assert health.probe_timeout_s(1) < health.probe_timeout_s(32)


def test_a_worker_whose_plugin_has_not_run_is_not_offered_work(monkeypatch):
    """Not configured and no error: its JAX would start unconfigured (other numbers)."""
    fake_grid(monkeypatch, 1, lambda a, poll: {"version": V, "configured": False,
                                               "setting_up": False, "setup_error": None})
    ledger = WorkerLedger(V)
    with pytest.raises(NoWorkersError):
        wait_for_healthy(ledger, None, grace_s=0.1, t0=None, notify=lambda m: None, poll_s=0.05)
    assert ledger.rows["tcp://w0"]["quarantined"] is False  # checked again later, not refused


def test_plugin_setup_imports_jax_off_the_event_loop(monkeypatch, tmp_path):
    """While the import runs the event loop keeps ticking and the state says setting_up."""
    threads, seen = [], []

    def slow_import(directory):
        threads.append(threading.current_thread())
        time.sleep(0.5)
    monkeypatch.setattr(plugin, "enable_compile_cache", slow_import)
    monkeypatch.setattr(plugin, "WORKER_STATE", dict(plugin.WORKER_STATE, configured=False))

    class Worker:
        address, name = "inproc://w", "w"

    async def main():
        ticks = 0
        task = asyncio.ensure_future(plugin.JaxWorkerPlugin(V, str(tmp_path)).setup(Worker()))
        while not task.done():
            await asyncio.sleep(0.05)
            ticks += 1
            seen.append((plugin.WORKER_STATE["setting_up"], plugin.WORKER_STATE["configured"]))
        await task
        return ticks
    ticks = asyncio.run(main())
    assert ticks >= 5  # the loop ran during the 0.5 s import
    assert threads and threads[0] is not threading.main_thread()
    assert seen[0] == (True, False)
    assert plugin.WORKER_STATE["configured"] and not plugin.WORKER_STATE["setting_up"]


SLOW_S = health.STALE_S + 1.0


class SlowImportPlugin(plugin.JaxWorkerPlugin):
    """The real plugin whose JAX import takes ``SLOW_S`` longer (as on a crowded machine)."""

    def import_jax(self):
        time.sleep(SLOW_S)
        super().import_jax()


@pytest.mark.slow  # 3 worker processes importing JAX: ~15-45 s on 2 shared cores
def test_real_workers_setting_up_answer_and_keep_heartbeating(tmp_path):
    """3 real worker processes: while the plugin imports JAX (longer than STALE_S), each
    answers the set-up check and heartbeats, so a 0.5 s grace is extended, not exhausted."""
    import sys

    import cloudpickle
    import distributed

    from fedjax_grid.grid.cluster import register_plugin
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cluster = distributed.LocalCluster(
        n_workers=3, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address="127.0.0.1:0", local_directory=str(tmp_path / "dask"),
        silence_logs=40)
    client = distributed.Client(cluster)
    try:
        errors = {}
        job = threading.Thread(target=lambda: errors.update(register_plugin(
            client, SlowImportPlugin(V, compile_cache_dir=str(tmp_path / "jax")), 120.0)))
        job.start()
        said, t = [], time.time()
        first = wait_for_healthy(WorkerLedger(V), client, grace_s=0.5, t0=None,
                                 notify=said.append, poll_s=0.2, setup_s_per_worker=30.0)
        waited = time.time() - t
        job.join(120)
        assert first and waited >= SLOW_S - 1.0, (first, waited)
        assert said[0].startswith("3 of 3 connected worker(s) still setting up"), said
        assert said[-1].startswith(f"{len(first)} worker(s) ready after"), said
        assert errors == {}
        assert len(wait_for_healthy(WorkerLedger(V), client, grace_s=5.0, t0=None,
                                    notify=lambda m: None)) == 3
    finally:
        client.close()
        cluster.close()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
