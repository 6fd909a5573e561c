"""Failure records tell the truth: kill -9 of a desktop mid-round, in both round modes.

Real processes on 127.0.0.1: a `dask scheduler` and three `dask worker`s under a nanny (as
`dask worker` runs by default: the nanny starts a new worker process, at a new address,
after the kill). Every row is checked:

- each ``failed`` row names its worker and its real cause (``WorkerLost`` naming the
  killed desktop here): no row whose reason is ``NoneType: None`` or whose worker is empty
  (tasks Dask cancelled because the global weights went with the killed desktop are sent
  again by the dispatch, not recorded as failures of their own);
- a retry (attempt a > 0) follows a failed attempt a - 1 of the same client: a retry is
  spent only on a real failure;
- the workers table agrees with the tasks table (ok / failed / late per address);
- asynchronous rounds: every task submitted has a row, those still in flight when the run
  ends too (``late``, ``NotNeeded``): one row with attempt 0 per task number.
"""
from __future__ import annotations

import pandas as pd
import pytest

from fedjax_grid.grid.cluster import keep_replicas
from fedjax_grid.runner import FederatedRun
from tests.faults.conftest import ExternalGrid, run_while_killing, stop
from tests.grid.conftest import tiny_config

KNOWN_KINDS = ("WorkerLost: ", "ResultLost: ", "StaleCopy: ", "SimulatedDropout: ",
               "InputLost: ", "TaskTimeout: ", "NotNeeded: ", "NoWorker: ")


@pytest.fixture
def nanny_grid(tmp_path):
    g = ExternalGrid(tmp_path)
    g.start_scheduler()
    for _ in range(3):
        g.start_worker(nanny=True)
    try:
        yield g, g.wait_for(3)  # address -> pid of the worker process (the nanny's child)
    finally:
        stop(g.workers + [g.scheduler], timeout=10)


def assert_workers_agree(tasks: pd.DataFrame, workers: pd.DataFrame) -> None:
    """Per address: tasks_failed / tasks_late = its failed / late rows; tasks_ok = its ok
    rows plus the updates it computed that were dropped as too stale; every address a
    task row names has a workers row."""
    named = tasks[tasks["worker"].fillna("") != ""]
    assert set(named["worker"]) <= set(workers["address"]), (set(named["worker"]), workers)
    for _, w in workers.iterrows():
        mine = named[named["worker"] == w["address"]]
        stale = mine[(mine["status"] == "dropped") & mine["staleness"].notna()]
        counts = (int(w["tasks_ok"]), int(w["tasks_failed"]), int(w["tasks_late"]))
        assert counts == ((mine["status"] == "ok").sum() + len(stale),
                          (mine["status"] == "failed").sum(), (mine["status"] == "late").sum()), \
            (w.to_dict(), mine[["round", "client", "attempt", "status", "reason"]].to_string())


def assert_failures_true(tasks: pd.DataFrame, victim: str) -> None:
    shown = tasks[["round", "client", "attempt", "status", "worker", "reason"]].to_string()
    bad = tasks[tasks["status"].isin(["failed", "late"])]
    assert bad["reason"].fillna("").str.startswith(KNOWN_KINDS).all(), shown
    assert not tasks["reason"].fillna("").str.contains("NoneType").any(), shown
    failed = tasks[tasks["status"] == "failed"]
    assert len(failed) >= 1, shown  # the kill cost at least the task it was running
    assert (failed["worker"].fillna("") != "").all(), shown
    # The only real failure here is the kill: each failed row names the killed desktop.
    assert (failed["worker"] == victim).all() and failed["reason"].str.startswith(
        "WorkerLost: lost worker " + victim).all(), shown
    # A retry is spent only on a failure: attempt a of a client follows its failed a - 1.
    for (k, a), n in tasks[tasks["attempt"] > 0].groupby(["client", "attempt"]).size().items():
        before = failed[(failed["client"] == k) & (failed["attempt"] == a - 1)]
        assert n <= len(before), (k, a, shown)


def test_the_scheduler_keeps_the_broadcast_weights(nanny_grid):
    """Connecting stops the scheduler's active memory manager (it would drop the copies of
    the global weights down to one, which a killed desktop then takes with it)."""
    g, _ = nanny_grid
    with g.client() as c:
        assert c.amm.running()  # Dask's default
        assert keep_replicas(c) is True
        assert not c.amm.running() and keep_replicas(c) is False


# suite budget: its own nanny grid (~45 s); a killed worker mid-round stays in the default run
# (tests/grid/test_engine.py::test_worker_killed_mid_round_run_completes)
@pytest.mark.parametrize("mode", [pytest.param("sync", marks=pytest.mark.slow),
                                  pytest.param("async", marks=pytest.mark.slow)])
def test_kill9_leaves_one_true_failure_row_per_lost_task(nanny_grid, tmp_path, mode):
    g, pids = nanny_grid
    over = {"sync": {"training.rounds": 2, "partition.num_clients": 6, "faults.max_delay_s": 4.0,
                     "grid.quorum": 0.5},
            "async": {"server.mode": "async", "partition.num_clients": 6, "server.concurrency": 3,
                      "server.buffer_size": 2, "training.rounds": 3,
                      "faults.max_delay_s": 3.0}}[mode]
    cfg = tiny_config(**{"grid.scheduler": g.address, "grid.connect_timeout_s": 20,
                         "faults.enabled": True, "grid.retries": 2, **over})
    victim, pid = sorted(pids.items())[0]
    run = FederatedRun(cfg, out_dir=tmp_path / mode)
    run_while_killing(run, victim, pid)
    tasks, workers = run.records.tasks(), run.records.workers()
    assert_failures_true(tasks, victim)
    assert_workers_agree(tasks, workers)
    # the files say the same as the run's tables
    assert_workers_agree(pd.read_csv(tmp_path / mode / "tasks.csv", dtype={"worker": str}),
                         pd.read_csv(tmp_path / mode / "workers.csv"))
    ok = tasks[tasks["status"] == "ok"]
    if mode == "sync":
        assert (ok.groupby("round")["client"].nunique() == 6).all()  # nothing lost
    else:
        # every task number has its first attempt recorded: none left without a row
        assert (tasks["attempt"] == 0).sum() == run.policy.task, tasks.to_string()
        assert len(tasks.loc[tasks["status"] == "ok"]) >= 2 * 3
        last = tasks[tasks["reason"].fillna("").str.startswith("NotNeeded: still running when "
                                                                  "the run ended")]
        assert (last["round"] == 3).all() and (last["status"] == "late").all()
