"""The fault suite's faults with server.mode='async' (FedBuff), on real processes on
127.0.0.1 (a `dask scheduler` and `dask worker`s, see conftest): kill -9 of a busy
worker, a hung task past the per-task deadline, and the CLI coordinator SIGKILLed then
resumed (a worker joining mid-run: test_grid_faults, parametrized over the mode)."""
from __future__ import annotations

import time

import pandas as pd
import pytest

from fedjax_grid.hazards import faults as fault_sim
from fedjax_grid.runner import FederatedRun
from fedjax_grid.runner.policies.asynchronous import next_client
from tests.conftest import scaled, slowdown
from tests.faults.conftest import kill_cli_after_first_checkpoint, run_cli, run_while_killing
from tests.grid.conftest import tiny_config

ASYNC = {"server.mode": "async", "partition.num_clients": 6, "server.concurrency": 3,
         "server.buffer_size": 2, "grid.connect_timeout_s": 20}


def cfg_for(grid, **kw):
    return tiny_config(**{"grid.scheduler": grid.address, **ASYNC, **kw})


@pytest.mark.slow
def test_async_worker_kill9_is_recorded_and_the_run_goes_on(external_grid, tmp_path):
    pids = external_grid.ensure(3)
    cfg = cfg_for(external_grid, **{"training.rounds": 3, "faults.enabled": True,
                                    "faults.max_delay_s": 3.0, "grid.retries": 2})
    victim_addr, victim_pid = sorted(pids.items())[0]
    run = FederatedRun(cfg, out_dir=tmp_path / "kill")
    run_while_killing(run, victim_addr, victim_pid)
    rounds, tasks = run.records.rounds(), run.records.tasks()
    assert list(rounds["round"]) == [1, 2, 3]
    lost = tasks[tasks["reason"].str.startswith("WorkerLost: ", na=False)]
    assert len(lost) >= 1 and (lost["status"] == "failed").all()
    assert (lost["worker"] == victim_addr).all()
    ok = tasks[tasks["status"] == "ok"]
    assert victim_addr not in set(ok.loc[ok["round"] == 3, "worker"])
    assert ok.groupby("round").size().tolist() == [2, 2, 2]


@pytest.mark.slow
def test_async_coordinator_sigkill_then_resume(external_grid, tmp_path):
    external_grid.ensure(3)
    sets = [a for k, v in {**ASYNC, "training.rounds": 4}.items() if k != "grid.connect_timeout_s"
            for a in ("--set", f"{k}={v}")]
    sets += [a for s in ["model.kwargs={width: 0.125, norm: batch, head: cifar}",
                         "data.max_test_examples=256"] for a in ("--set", s)]
    common = ["run", "--scheduler", external_grid.address, "--quiet", "--no-plots", *sets]
    out = tmp_path / "part"
    kill_cli_after_first_checkpoint(common, out)  # after a server update, tasks in flight
    r = run_cli(*common, "--out", out, "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    rounds = pd.read_csv(out / "rounds.csv")
    tasks = pd.read_csv(out / "tasks.csv")
    assert list(rounds["round"]) == [1, 2, 3, 4]
    lost = tasks[tasks["reason"].fillna("").str.contains("in flight when the coordinator stopped")]
    assert len(lost) >= 1 and (lost["status"] == "dropped").all()
    assert (tasks.loc[tasks["status"] == "ok"].groupby("round").size() == 2).all()


@pytest.mark.slow
def test_async_hung_task_quick_form(external_grid, tmp_path):
    """Default form of the per-task deadline: one task in flight (K = M = 1), and the first
    one (seed chosen so) hangs 30 s: it is cut at grid.deadline_s (4 s on an idle machine,
    stretched by the measured load) and recorded late, its slot refilled, and the 2
    versions complete without it."""
    external_grid.ensure(3)
    FederatedRun(cfg_for(external_grid, **{"training.rounds": 1}),  # compiled on every worker
                 out_dir=tmp_path / "warm").run()
    deadline = round(min(12.0, 4.0 * slowdown()), 1)
    base = cfg_for(external_grid, **{"training.rounds": 2, "faults.enabled": True,
                                     "server.concurrency": 1, "server.buffer_size": 1,
                                     "faults.hang_prob": 0.3, "faults.hang_s": 30.0,
                                     "grid.deadline_s": deadline, "grid.retries": 0})

    def hangs(cfg, task):
        k = next_client(cfg, task, set())
        return fault_sim.fault_plan(cfg.faults, cfg.seed, task, k, 0).hang_s > 0

    def only_the_first_hangs(seed):
        cfg = base.with_overrides([f"seed={seed}"])
        return hangs(cfg, 0) and not any(hangs(cfg, t) for t in range(1, 4))
    seed = next(s for s in range(500) if only_the_first_hangs(s))
    run = FederatedRun(base.with_overrides([f"seed={seed}"]), out_dir=tmp_path / "hang")
    t = time.time()
    try:
        run.run()
    finally:
        run.close()
    total_s = time.time() - t
    tasks = run.records.tasks()
    late = tasks[tasks["reason"].str.startswith("TaskTimeout: ", na=False)]
    assert len(late) >= 1 and late["reason"].str.contains(f"deadline_s={deadline:g}").all(), tasks
    assert list(run.records.rounds()["round"]) == [1, 2]
    assert (tasks.loc[tasks["status"] == "ok"].groupby("round").size() == 1).all()
    assert total_s < 30.0, total_s  # no version waited for the 30 s hang
    assert (late["duration_s"] < deadline + scaled(6.0)).all(), late["duration_s"]


@pytest.mark.slow
def test_async_hung_task_is_cut_at_its_deadline_without_holding_the_others(external_grid,
                                                                             tmp_path):
    external_grid.ensure(3)
    # Most tasks hang for 30 s: with 3 in flight, versions stall until the hung ones are
    # cut at their 2 s deadline and replaced.
    cfg = cfg_for(external_grid, **{"training.rounds": 6, "faults.enabled": True,
                                    "faults.hang_prob": 0.7, "faults.hang_s": 30.0,
                                    "grid.deadline_s": 2.0, "grid.retries": 0})
    run = FederatedRun(cfg, out_dir=tmp_path / "hang")
    t = time.time()
    try:
        run.run()
    finally:
        run.close()
    tasks = run.records.tasks()
    late = tasks[tasks["reason"].str.startswith("TaskTimeout: ", na=False)]
    assert len(late) >= 1 and late["reason"].str.contains("deadline_s").all()
    assert time.time() - t < 30.0 + scaled(20.0)  # no version waited for a 30 s hang
    assert list(run.records.rounds()["round"]) == [1, 2, 3, 4, 5, 6]
    assert (late["duration_s"] < 2.0 + scaled(6.0)).all()
