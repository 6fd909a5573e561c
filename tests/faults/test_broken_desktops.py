"""Broken desktops are quarantined for the run (real `dask worker` processes on 127.0.0.1).

A desktop with another fedjax_grid version, one without fedjax_grid at all, and one whose
every task fails (each made so by a sitecustomize.py on that worker's PYTHONPATH, see
``tests.faults.conftest.BROKEN_DESKTOPS``) join a scheduler beside one healthy desktop.
The run must quarantine each once (one console line, one row in workers.csv), send
them no further tasks, and finish with every round at quorum.
"""
from __future__ import annotations

import pandas as pd
import pytest

from tests.faults.conftest import ExternalGrid, broken_env, run_cli, stop
from tests.faults.test_grid_faults import TINY


def _sets(*extra):
    return [a for s in (*TINY, *extra) for a in ("--set", s)]


@pytest.fixture
def grid_with(tmp_path):
    """factory: a scheduler, one healthy worker and workers of the given broken kinds."""
    grids = []

    def make(*kinds):
        g = ExternalGrid(tmp_path)
        grids.append(g)
        g.start_scheduler()
        g.start_worker(name="healthy")
        for kind in kinds:
            g.start_worker(name=kind, env=broken_env(tmp_path, kind))
        g.wait_for(1 + len(kinds))
        return g

    yield make
    for g in grids:
        stop(g.workers + [g.scheduler], timeout=5)


def _quarantine_lines(stderr: str) -> list[str]:
    return [l for l in stderr.splitlines() if "quarantined" in l]


@pytest.mark.slow
def test_setup_check_quarantines_other_version_and_missing_package(grid_with, tmp_path):
    """Set-up check: another version and no package -> one warning each, no task, no crash."""
    g = grid_with("other-version", "no-package")
    out = tmp_path / "out"
    r = run_cli("run", "--scheduler", g.address, "--quiet", "--no-plots", "--out", out,
                *_sets("training.rounds=2", "partition.num_clients=4"), timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    lines = _quarantine_lines(r.stderr)
    assert len(lines) == 2, r.stderr
    assert any("(other-version)" in l and "0.0.9" in l for l in lines), lines
    assert any("(no-package)" in l and "cannot be imported" in l for l in lines), lines
    assert all(l.startswith("warning: worker tcp://127.0.0.1:") for l in lines), lines
    workers = pd.read_csv(out / "workers.csv")
    assert set(workers["name"]) == {"healthy", "other-version", "no-package"}
    bad = workers[workers["name"] != "healthy"]
    assert bad["quarantined"].all() and (bad["tasks_ok"] + bad["tasks_failed"] == 0).all()
    good = workers[workers["name"] == "healthy"].iloc[0]
    assert not good["quarantined"] and good["tasks_ok"] == 8  # 4 clients x 2 rounds
    assert (out / "workers.parquet").exists()
    tasks = pd.read_csv(out / "tasks.csv")
    assert set(tasks["worker"]) == {good["address"]} and (tasks["status"] == "ok").all()
    assert pd.read_csv(out / "rounds.csv")["quorum"].all()


@pytest.mark.slow
def test_failing_desktop_quarantined_after_n_failures_retries_elsewhere(grid_with, tmp_path):
    """Every task fails on one desktop: after grid.quarantine_after=2 in a row it gets none."""
    g = grid_with("failing-tasks")
    out = tmp_path / "out"
    r = run_cli("run", "--scheduler", g.address, "--quiet", "--no-plots", "--out", out,
                *_sets("training.rounds=3", "partition.num_clients=4", "grid.quarantine_after=2",
                       "grid.retries=2"), timeout=500)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = _quarantine_lines(r.stderr)
    assert len(lines) == 1 and "(failing-tasks)" in lines[0] and "2 tasks failed in a row" in lines[0]
    workers = pd.read_csv(out / "workers.csv").set_index("name")
    assert workers.loc["failing-tasks", "quarantined"]
    # 2 in a row quarantine it; tasks it had already been given may fail too.
    n_failed = workers.loc["failing-tasks", "tasks_failed"]
    assert 2 <= n_failed <= 4 and workers.loc["failing-tasks", "tasks_ok"] == 0
    assert workers.loc["healthy", "tasks_ok"] == 12  # every client, every round, in the end
    tasks = pd.read_csv(out / "tasks.csv")
    failed = tasks[tasks["status"] == "failed"]
    assert len(failed) == n_failed and failed["reason"].str.contains("this desktop is broken").all()
    assert set(failed["worker"]) == {workers.loc["failing-tasks", "address"]}
    # Quarantined at its 2nd failure in a row -- in round 1 or, when Dask placed only one
    # of round 1's tasks there, in round 2 (overlapped rounds launch round 2 before round
    # 1's records are written). From that moment it gets nothing: the tasks still queued
    # there were taken back (sent to the healthy desktop, same attempt, no row), and every
    # task that ran there was submitted before the quarantine.
    bad, healthy = workers.loc["failing-tasks", "address"], workers.loc["healthy", "address"]
    t_quarantine = failed.sort_values("end_s")["end_s"].iloc[1]
    assert (tasks.loc[tasks["worker"] == bad, "start_s"] <= t_quarantine).all(), tasks.to_string()
    assert set(tasks.loc[tasks["start_s"] > t_quarantine, "worker"]) <= {healthy}
    # Each failed attempt was retried on the healthy desktop and succeeded.
    for _, row in failed.iterrows():
        again = tasks[(tasks["round"] == row["round"]) & (tasks["client"] == row["client"])
                      & (tasks["attempt"] == row["attempt"] + 1)]
        assert list(again["status"]) == ["ok"]
        assert list(again["worker"]) == [workers.loc["healthy", "address"]]
    rounds = pd.read_csv(out / "rounds.csv")
    assert rounds["quorum"].all() and (rounds["clients_ok"] == 4).all()


@pytest.mark.slow
def test_tasks_queued_on_a_desktop_are_taken_back_when_it_is_quarantined(grid_with, tmp_path):
    """A desktop whose tasks fail after 3 s of work holds a queue of this round's tasks when
    its first failure quarantines it (grid.quarantine_after=1): those tasks are sent to the
    healthy desktop (same attempt, no row, no retry spent) instead of failing there one by
    one -- exactly one failed row, one retry, and the workers table says the same."""
    g = grid_with("slow-failing-tasks")
    out = tmp_path / "out"
    r = run_cli("run", "--scheduler", g.address, "--quiet", "--no-plots", "--out", out,
                *_sets("training.rounds=1", "partition.num_clients=6", "grid.quarantine_after=1",
                       "grid.retries=1"), timeout=500)
    assert r.returncode == 0, r.stderr[-3000:]
    workers = pd.read_csv(out / "workers.csv").set_index("name")
    tasks = pd.read_csv(out / "tasks.csv")
    shown = tasks[["client", "attempt", "status", "worker", "reason"]].to_string()
    bad, healthy = workers.loc["slow-failing-tasks", "address"], workers.loc["healthy", "address"]
    assert workers.loc["slow-failing-tasks", "quarantined"]
    assert workers.loc["slow-failing-tasks", "tasks_failed"] == 1, shown
    failed = tasks[tasks["status"] == "failed"]
    assert len(failed) == 1 and set(failed["worker"]) == {bad}, shown
    assert (tasks["attempt"] > 0).sum() == 1, shown  # the one retry, for the one failure
    ok = tasks[tasks["status"] == "ok"]
    assert sorted(ok["client"]) == list(range(6)) and set(ok["worker"]) == {healthy}, shown
    assert workers.loc["healthy", "tasks_ok"] == 6
