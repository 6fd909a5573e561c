"""Every task row names the worker its task ran on, in both round policies and for every
outcome (ok, rejected, failed, late, dropped), on a real 2-worker LocalCluster.

The only rows without a worker are those whose task never reached one: an ``offline``
client (no task is sent) and a task no worker took the weights for (its reason says so).
"""
import numpy as np
import pandas as pd
import pytest

from fedjax_grid.hazards import faults as fault_sim
from fedjax_grid.runner import FederatedRun
from tests.grid.conftest import tiny_config

NO_WORKER_REASON = "NoWorker: no responsive worker took the global weights"


def _check_workers(tasks, grid, statuses):
    names = {a: str(i["name"]) for a, i in grid.workers().items()}
    assert set(statuses) <= set(tasks["status"]), set(tasks["status"])
    for _, t in tasks.iterrows():
        reached = t["status"] != "offline" and not str(t["reason"]).startswith(NO_WORKER_REASON)
        if not reached:
            assert pd.isna(t["worker"]), dict(t)
            continue
        assert t["worker"] in names, dict(t)  # the address of a worker of this cluster
        assert t["worker_name"] == names[t["worker"]], dict(t)


def test_sync_rows_name_their_worker_for_every_outcome(grid, tmp_path):
    cfg = tiny_config(**{"training.rounds": 2, "partition.num_clients": 6,
                         "training.clients_per_round": 3, "grid.overcommit": 3,
                         "grid.retries": 1, "grid.quorum": 0.25, "faults.enabled": True,
                         "faults.offline_prob": 0.2, "faults.dropout_prob": 0.2,
                         "faults.error_prob": 0.2, "grid.quarantine_after": 0})
    seed = next(s for s in range(300)
                if sum(fault_sim.is_offline(cfg.faults, s, 0, k) for k in range(6)) == 1
                and sum(fault_sim.fault_plan(cfg.faults, s, 0, k).dropout for k in range(6)) >= 1
                and sum(fault_sim.fault_plan(cfg.faults, s, 0, k).corrupt for k in range(6)) >= 1)
    run = FederatedRun(cfg.with_overrides([f"seed={seed}"]), out_dir=tmp_path / "sync", grid=grid)
    run.run()
    run.close()
    tasks = run.records.tasks()
    # failed (drop-out), rejected (NaN), late (overcommit: not needed), offline, ok
    _check_workers(tasks, grid, {"ok", "failed", "late", "offline"})
    assert np.isfinite(run.records.rounds()["global_accuracy"]).all()


ASYNC = {"server.mode": "async", "partition.num_clients": 6, "server.concurrency": 3,
         "server.buffer_size": 2, "server.max_staleness": 0, "grid.retries": 1,
         "faults.enabled": True, "faults.dropout_prob": 0.2, "faults.hang_prob": 0.2,
         "faults.hang_s": 40.0, "grid.deadline_s": 8.0,
         "grid.quarantine_after": 0}


def _first_tasks(cfg, seed, n=3):
    """Plans of the first ``n`` asynchronous tasks (their clients do not depend on timing:
    task t is drawn while tasks 0..t-1 are in flight)."""
    from fedjax_grid.runner.policies.asynchronous import next_client
    cfg, busy, plans = cfg.with_overrides([f"seed={seed}"]), set(), []
    for t in range(n):
        k = next_client(cfg, t, busy)
        busy.add(k)
        plans.append(fault_sim.fault_plan(cfg.faults, seed, t, k, 0))
    return plans


@pytest.mark.slow
def test_async_rows_name_their_worker_for_every_outcome_and_after_a_resume(grid, tmp_path):
    # warm the workers' compiled steps, so the 8 s per-task deadline measures training
    FederatedRun(tiny_config(**{"training.rounds": 1}), out_dir=tmp_path / "warm", grid=grid).run()
    cfg = tiny_config(**ASYNC, **{"training.rounds": 4})
    seed = next(s for s in range(300) if [(p.hang_s > 0, p.dropout) for p in _first_tasks(cfg, s)]
                == [(True, False), (False, True), (False, False)])
    cfg = cfg.with_overrides([f"seed={seed}"])
    first = FederatedRun(cfg, out_dir=tmp_path / "async", grid=grid)
    try:
        first.step()
        first.step()
        in_flight = first.policy.in_flight()
    finally:
        first.close()
    assert in_flight and all(w for *_, w in in_flight)  # the checkpoint knows their workers
    resumed = FederatedRun(cfg, out_dir=tmp_path / "async", grid=grid, resume=True)
    try:
        resumed.run()
    finally:
        resumed.close()
    tasks = resumed.records.tasks()
    lost = tasks[tasks["reason"].str.contains("in flight when the coordinator stopped", na=False)]
    assert len(lost) == len(in_flight) and (lost["status"] == "dropped").all()
    # failed (drop-out), late (past grid.deadline_s), dropped (stale, and lost by the resume)
    _check_workers(tasks, grid, {"ok", "failed", "late", "dropped"})
