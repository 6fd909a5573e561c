"""Desktops that sleep or all leave (real `dask worker` processes on 127.0.0.1).

- a worker frozen with SIGSTOP (a closed laptop lid): no round outlasts
  ``grid.deadline_s`` + ``SLACK_S``; the frozen worker's clients are ``late``; the
  healthy workers' clients make the quorum;
- all workers killed: the coordinator waits ``grid.wait_for_workers_s``, says so, and
  continues when new workers join; without any it stops with one line, exit 2, and a
  resumable checkpoint.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

from fedjax_grid.grid.checkpoint import latest_checkpoint
from fedjax_grid.runner import FederatedRun
from tests.conftest import scaled, slowdown
from tests.faults.conftest import ExternalGrid, signal_when_busy, stop
from tests.faults.test_grid_faults import TINY, cfg_for

#: Seconds a round may exceed its deadline on an idle machine: evaluation of the global
#: model (256 test images), the checkpoint, and at most one bounded result fetch / cancel
#: round trip. On a loaded machine the slack is a whole normal round measured in the same
#: run (which does all of that and trains as well) when that is longer.
SLACK_S = 4.0


@pytest.mark.slow
def test_frozen_worker_round_keeps_its_deadline(external_grid, tmp_path):
    """SIGSTOP of a busy worker in round 2: round 2 ends by its deadline + the slack (at
    least the time of round 3, a normal round on the remaining workers), with quorum."""
    pids = external_grid.ensure(3)
    # every worker compiles first, without a deadline (a compile outlasting the deadline
    # would keep a worker busy into the next round)
    FederatedRun(cfg_for(external_grid, **{"training.rounds": 1, "partition.num_clients": 6}),
                 out_dir=tmp_path / "warm", notify=lambda m: None).run()
    # 8 s on an idle machine (time enough for the healthy workers' tasks), stretched by
    # the load measured now: a loaded machine must not make the healthy clients late too
    deadline = round(8.0 * slowdown(), 1)
    cfg = cfg_for(external_grid, **{"training.rounds": 3, "partition.num_clients": 6,
                                    "grid.deadline_s": deadline, "grid.quorum": 0.5,
                                    "grid.retries": 0})
    victim_addr, victim_pid = sorted(pids.items())[-1]
    run = FederatedRun(cfg, out_dir=tmp_path / "frozen", notify=lambda m: None)
    run.start()
    stopped = threading.Event()
    times = []
    try:
        run.step()  # round 1: a normal round

        freezer = signal_when_busy(run, victim_addr, victim_pid, signal.SIGSTOP, settle_s=0.0,
                                   within_s=30.0, poll_s=0.02)
        stopped = freezer.done
        for _ in range(2):
            t = time.time()
            run.step()
            times.append(time.time() - t)
        freezer.join(timeout=5)
    finally:
        if stopped.is_set():
            os.kill(victim_pid, signal.SIGCONT)
        run.close()
    assert stopped.is_set()
    frozen_round_s, normal_round_s = times
    assert frozen_round_s < deadline + max(SLACK_S, normal_round_s), times
    tasks, rounds = run.records.tasks(), run.records.rounds()
    r1, r2 = tasks[tasks["round"] == 2], tasks[tasks["round"] == 3]  # rounds count from 1
    late1 = r1[r1["status"] == "late"]
    assert len(late1) >= 1 and (late1["worker"].isin([victim_addr, ""])).all(), r1
    assert victim_addr not in set(r1.loc[r1["status"] == "ok", "worker"])
    assert victim_addr not in set(r2["worker"])  # frozen (stale heartbeat): not offered work
    assert (r2["status"] == "ok").all() and len(r2) == 6
    assert list(rounds["quorum"]) == [True, True, True]


def _cli(out, address, *extra):
    sets = [a for s in (*TINY, *extra) for a in ("--set", s)]
    return [sys.executable, "-m", "fedjax_grid.cli", "run", "--scheduler", address, "--quiet",
            "--no-plots", "--out", str(out), *sets]


def _wait_checkpoint(proc, out, timeout=240):
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        if latest_checkpoint(out / "checkpoints") is not None:
            return
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


@pytest.mark.slow
def test_all_workers_gone_then_back_within_grace(tmp_path):
    """kill -9 of every worker after round 1; new ones join 4 s later; the run finishes."""
    g = ExternalGrid(tmp_path)
    g.start_scheduler()
    g.start_worker()
    g.start_worker()
    out = tmp_path / "out"
    try:
        g.wait_for(2)
        proc = subprocess.Popen(_cli(out, g.address, "training.rounds=3",
                                     "grid.wait_for_workers_s=60", "faults.enabled=true",
                                     "faults.max_delay_s=2"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_checkpoint(proc, out)
        for p in g.alive_workers():
            p.kill()
        t_gone = time.time()
        time.sleep(4.0)
        g.start_worker(name="back-again")
        stdout, stderr = proc.communicate(timeout=300)
        total_s = time.time() - t_gone
    finally:
        stop(g.workers + [g.scheduler], timeout=5)
    assert proc.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    waiting = [l for l in stderr.splitlines() if "waiting up to 60 s" in l]
    assert len(waiting) >= 1 and waiting[0].startswith("warning: no healthy worker"), stderr
    assert any("available again" in l for l in stderr.splitlines()), stderr
    rounds = pd.read_csv(out / "rounds.csv")
    assert list(rounds["round"]) == [1, 2, 3]  # rounds count from 1
    assert rounds["quorum"].iloc[-1]
    assert total_s < 4 + scaled(120)


@pytest.mark.slow
def test_all_workers_gone_past_grace_exits_2_resumable(tmp_path):
    """No worker returns within grid.wait_for_workers_s=3: one line, exit 2, resumable."""
    g = ExternalGrid(tmp_path)
    g.start_scheduler()
    g.start_worker()
    out = tmp_path / "out"
    try:
        g.wait_for(1)
        proc = subprocess.Popen(_cli(out, g.address, "training.rounds=3",
                                     "grid.wait_for_workers_s=3", "faults.enabled=true",
                                     "faults.max_delay_s=2"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_checkpoint(proc, out)
        g.workers[0].kill()
        t_gone = time.time()
        stdout, stderr = proc.communicate(timeout=120)
        stop_s = time.time() - t_gone
    finally:
        stop(g.workers + [g.scheduler], timeout=5)
    assert proc.returncode == 2, stderr[-3000:]
    lines = [l for l in stderr.splitlines() if l.strip()]
    assert "Traceback" not in stderr
    errors = [l for l in lines if l.startswith("error: ")]
    assert len(errors) == 1 and "no healthy worker" in errors[0] and "--resume" in errors[0], lines
    assert all(l.startswith(("warning: ", "error: ")) for l in lines), lines
    assert stop_s < 3 + scaled(30), stop_s  # the 3 s grace, not the default 60 s
    assert latest_checkpoint(out / "checkpoints") is not None
