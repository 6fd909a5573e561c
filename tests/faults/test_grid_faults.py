"""Fault suite on real processes (127.0.0.1 only): one `dask scheduler` and three
`dask worker` processes per module (see conftest), experiments driven through
``FederatedRun`` with ``grid.scheduler`` set, or through the CLI.

Faults: kill -9 of a worker mid-round, a worker joining mid-run, a worker hanging
past the deadline, the coordinator killed and resumed, the scheduler lost.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pandas as pd
import pytest

from fedjax_grid.hazards import faults as fault_sim
from fedjax_grid.grid.checkpoint import latest_checkpoint, load_checkpoint
from fedjax_grid.runner import FederatedRun
from tests.conftest import scaled
from tests.faults.conftest import (ExternalGrid, kill_cli_after_first_checkpoint, run_cli,
                                   run_while_killing, stop)
from tests.grid.conftest import tiny_config

TINY = ["model.kwargs={width: 0.125, norm: batch, head: cifar}", "data.max_test_examples=256",
        "training.local_epochs=1", "training.batch_size=32"]


def cfg_for(grid, **kw):
    return tiny_config(**{"grid.scheduler": grid.address, "grid.connect_timeout_s": 20, **kw})


@pytest.mark.slow
def test_worker_kill9_mid_round_is_recorded_and_retried(external_grid, tmp_path):
    """kill -9 of a busy worker: its task errs KilledWorker, is recorded, re-run elsewhere."""
    pids = external_grid.ensure(3)
    # 6 clients, each task sleeps >= 3 s first, so every worker is busy when we strike.
    cfg = cfg_for(external_grid, **{"training.rounds": 2, "partition.num_clients": 6,
                                    "faults.enabled": True, "faults.max_delay_s": 4.0,
                                    "grid.retries": 2, "grid.quorum": 0.5})
    victim_addr, victim_pid = sorted(pids.items())[0]
    run = FederatedRun(cfg, out_dir=tmp_path / "kill")
    run_while_killing(run, victim_addr, victim_pid)
    rounds, tasks = run.records.rounds(), run.records.tasks()
    assert len(rounds) == 2 and rounds["quorum"].all()
    lost = tasks[tasks["reason"].str.startswith("WorkerLost: ", na=False)]
    assert len(lost) >= 1, tasks[["round", "client", "attempt", "status", "reason"]]
    assert (lost["status"] == "failed").all()
    assert (lost["worker"] == victim_addr).all() and lost["reason"].str.contains(victim_addr).all()
    for _, row in lost.iterrows():
        # each lost task was re-submitted (attempt + 1, ...) until one attempt succeeded on
        # another worker; a retry sent while the scheduler still listed the dead worker
        # fails fast there and is retried again (seen under heavy load)
        later = tasks[(tasks["round"] == row["round"]) & (tasks["client"] == row["client"])
                      & (tasks["attempt"] > row["attempt"])]
        assert "ok" in set(later["status"]), \
            tasks[["round", "client", "attempt", "status", "worker", "reason"]].to_string()
        assert victim_addr not in set(later.loc[later["status"] == "ok", "worker"])
    # Nothing lost: every sampled client of every round ended ok.
    ok = tasks[tasks["status"] == "ok"].groupby("round")["client"].nunique()
    assert (ok == 6).all()
    assert victim_addr not in set(tasks.loc[tasks["round"] == 2, "worker"])


#: server.mode='async' (FedBuff): tasks of 0-1.5 s (simulated delays), so that the run
#: outlasts the newcomer's admission check (async versions take well under a second here).
JOIN_ASYNC = {"server.mode": "async", "partition.num_clients": 6, "server.concurrency": 3,
              "server.buffer_size": 2, "training.rounds": 8, "faults.enabled": True,
              "faults.max_delay_s": 1.5}


def _poll(condition, timeout_s: float) -> bool:
    end = time.time() + timeout_s
    while time.time() < end:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@pytest.mark.parametrize("mode", [
    pytest.param("sync-quick", marks=pytest.mark.slow), pytest.param("sync", marks=pytest.mark.slow),
    pytest.param("async", marks=pytest.mark.slow)])
def test_worker_joining_mid_run_gets_tasks(external_grid, tmp_path, mode):
    """A 4th worker started after round 1 receives tasks in the following rounds (the
    default run: the quick form, 2 synchronous rounds; -m slow: 3 rounds, and async)."""
    external_grid.ensure(3)
    over = {"sync-quick": {"training.rounds": 2, "partition.num_clients": 8},
            "sync": {"training.rounds": 3, "partition.num_clients": 8}, "async": JOIN_ASYNC}[mode]
    cfg = cfg_for(external_grid, **over)
    run = FederatedRun(cfg, out_dir=tmp_path / "join")
    run.start()
    try:
        before = set(run.grid.workers())
        run.step()
        newcomer = external_grid.start_worker(name="late-joiner")
        addrs = external_grid.wait_for(len(before) + 1)
        new_addr = next(a for a, pid in addrs.items() if pid == newcomer.pid)
        # admitted (set-up check) before the remaining rounds
        assert _poll(lambda: new_addr in run.healthy_workers(), 120)
        run.run()
    finally:
        run.close()
        external_grid.workers.remove(newcomer)
        stop([newcomer])
    tasks = run.records.tasks()
    assert new_addr not in set(tasks.loc[tasks["round"] == 1, "worker"])
    assert new_addr in set(tasks.loc[tasks["round"] >= 2, "worker"]), \
        tasks.groupby(["round", "worker"]).size()
    # (asynchronous: the tasks still in flight when the run ended are recorded late)
    ended = tasks["reason"].str.startswith("NotNeeded: still running when the run ended", na=False)
    assert (tasks.loc[~ended, "status"] == "ok").all(), \
        tasks.loc[tasks["status"] != "ok", ["round", "worker", "status", "reason"]].to_string()


@pytest.mark.slow
def test_hung_worker_past_deadline_is_discarded(external_grid, tmp_path):
    """A hung task: the round closes on time, its result is recorded late and never used."""
    external_grid.ensure(3)
    warm = cfg_for(external_grid, **{"training.rounds": 1, "partition.num_clients": 3})
    FederatedRun(warm, out_dir=tmp_path / "warm").run()  # compile on every worker first
    base = cfg_for(external_grid, **{"training.rounds": 2, "partition.num_clients": 3,
                                     "faults.enabled": True, "faults.hang_prob": 0.3,
                                     "faults.hang_s": 20.0, "grid.deadline_s": 10.0,
                                     "grid.quorum": 0.3, "grid.retries": 0})
    seed = next(s for s in range(500) if
                sum(fault_sim.fault_plan(base.faults, s, 0, k, 0).hang_s > 0 for k in range(3)) == 1
                and not any(fault_sim.fault_plan(base.faults, s, 1, k, 0).hang_s for k in range(3)))
    cfg = base.with_overrides([f"seed={seed}"])
    hung = next(k for k in range(3) if fault_sim.fault_plan(cfg.faults, seed, 0, k, 0).hang_s)
    run = FederatedRun(cfg, out_dir=tmp_path / "hang")
    try:
        run.start()
        t = time.time()
        run.step()
        round0_s = time.time() - t
        t = time.time()
        params_after_0 = [np.array(a) for a in jax.tree.leaves(run.state.params)]
        run.step()
        normal_round_s = time.time() - t  # round 2: no hang, the same machine now
    finally:
        run.close()
    # closed at the deadline (+ evaluation and checkpoint, at most a normal round's time),
    # not after the 20 s hang
    assert round0_s < 10.0 + max(8.0, normal_round_s), (round0_s, normal_round_s)
    tasks = run.records.tasks()
    r0, r1 = tasks[tasks["round"] == 1], tasks[tasks["round"] == 2]
    late = r0[r0["status"] == "late"]
    assert list(late["client"]) == [hung] and late["reason"].str.contains("deadline").all()
    assert sorted(r0.loc[r0["status"] == "ok", "client"]) == sorted(set(range(3)) - {hung})
    # Round 1 holds exactly one ok task per client, all of attempt 0 of round 1:
    # the discarded round-0 result of the hung client was never mixed in.
    assert sorted(r1["client"]) == [0, 1, 2] and (r1["status"] == "ok").all()
    rounds = run.records.rounds()
    assert list(rounds["clients_late"]) == [1, 0] and rounds["quorum"].all()
    assert all(np.isfinite(a).all() for a in params_after_0)


def _params_of(out_dir):
    tree, meta, _ = load_checkpoint(latest_checkpoint(out_dir / "checkpoints"))
    return meta["round"], jax.tree.leaves(tree.params if hasattr(tree, "params") else tree)


@pytest.mark.slow
def test_coordinator_sigkill_then_resume_equals_uninterrupted(external_grid, tmp_path):
    """SIGKILL the CLI coordinator after round 1; `--resume` reaches the same parameters."""
    external_grid.ensure(3)
    sets = [a for s in TINY + ["training.rounds=3", "partition.forming=hybrid"]
            for a in ("--set", s)]
    common = ["run", "--scheduler", external_grid.address, "--quiet", "--no-plots", *sets]
    full = tmp_path / "full"
    r = run_cli(*common, "--out", full)
    assert r.returncode == 0, r.stderr[-2000:]
    part = tmp_path / "part"
    kill_cli_after_first_checkpoint(common, part)  # mid-run: after round 0's checkpoint
    n_done, _ = _params_of(part)
    assert 1 <= n_done < 3
    r = run_cli(*common, "--out", part, "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    (ra, a), (rb, b) = _params_of(full), _params_of(part)
    assert ra == rb == 3
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)  # bitwise on CPU with fixed seeds
    rounds = pd.read_csv(part / "rounds.csv")
    assert list(rounds["round"]) == [1, 2, 3]


def _start_killing_scheduler_when_busy(grid: ExternalGrid, out) -> dict:
    """A thread that SIGKILLs ``grid``'s scheduler once the run in ``out`` has a checkpoint
    and the scheduler shows a task being processed (a round in flight); returns a dict
    that gets the kill's time under 't'."""
    import threading
    killed: dict = {}

    def busy():
        try:
            with grid.client(timeout=10) as c:
                return any(c.processing().values())
        except Exception:  # noqa: BLE001 - not up yet, or going away: not busy
            return False

    def strike():
        if _poll(lambda: latest_checkpoint(out / "checkpoints") is not None, 240) \
                and _poll(busy, 60):
            os.kill(grid.scheduler.pid, signal.SIGKILL)
            killed["t"] = time.time()

    threading.Thread(target=strike, daemon=True).start()
    return killed


@pytest.mark.slow
def test_scheduler_lost_quick_form_is_one_line_and_resumable(tmp_path):
    """Default form of the scheduler loss: 2 rounds on 1 worker, the scheduler SIGKILLed
    while round 2 runs: exit 2 with one stderr line, round 1 checkpointed (the resume on a
    new scheduler: the slow form below, and the coordinator resume tests)."""
    g = ExternalGrid(tmp_path)
    g.start_scheduler()
    g.start_worker()
    out = tmp_path / "out"
    sets = [a for s in TINY + ["training.rounds=2", "partition.num_clients=2",
                               "grid.connect_timeout_s=5", "faults.enabled=true",
                               "faults.max_delay_s=3"] for a in ("--set", s)]
    try:
        g.wait_for(1)
        killed = _start_killing_scheduler_when_busy(g, out)
        r = run_cli("run", "--scheduler", g.address, "--quiet", "--no-plots", *sets,
                    "--out", out, timeout=300)
        stop_s = time.time() - killed.get("t", time.time())
    finally:
        g.stop()
    assert "t" in killed, r.stderr[-3000:]
    assert r.returncode == 2, r.stderr[-3000:]
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: lost the Dask cluster"), lines
    assert "--resume" in lines[0] and "Traceback" not in r.stderr
    assert stop_s < scaled(60), stop_s
    assert _params_of(out)[0] == 1


@pytest.mark.slow
def test_scheduler_lost_one_line_error_then_resume(tmp_path):
    """Scheduler killed mid-run: exit 2, one line, resumable checkpoint; resume on a new one."""
    g = ExternalGrid(tmp_path)
    g.start_scheduler()
    g.start_worker()
    g.start_worker()
    out = tmp_path / "out"
    sets = [a for s in TINY + ["training.rounds=3", "grid.connect_timeout_s=5",
                               "faults.enabled=true", "faults.max_delay_s=3"]
            for a in ("--set", s)]
    try:
        g.wait_for(2)
        killed = _start_killing_scheduler_when_busy(g, out)
        proc = subprocess.Popen([sys.executable, "-m", "fedjax_grid.cli", "run", "--scheduler",
                                 g.address, "--quiet", "--no-plots", *sets, "--out", str(out)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stdout, stderr = proc.communicate(timeout=360)
        stop_s = time.time() - killed.get("t", time.time())
    finally:
        g.stop()
    assert "t" in killed, stderr[-3000:]
    assert proc.returncode == 2, stderr[-3000:]
    lines = [l for l in stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: lost the Dask cluster"), stderr[-3000:]
    assert "--resume" in lines[0] and "Traceback" not in stderr
    assert stop_s < scaled(60)
    n_done, _ = _params_of(out)
    assert 1 <= n_done < 3
    # A new scheduler and workers: the run resumes and finishes.
    g2 = ExternalGrid(tmp_path)
    g2.start_scheduler()
    g2.start_worker()
    try:
        g2.wait_for(1)
        r = run_cli("run", "--scheduler", g2.address, "--quiet", "--no-plots", *sets,
                    "--out", out, "--resume")
    finally:
        g2.stop()
    assert r.returncode == 0, r.stderr[-2000:]
    assert list(pd.read_csv(out / "rounds.csv")["round"]) == [1, 2, 3]
