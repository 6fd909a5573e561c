"""server.mode='async' (FedBuff) on a real 2-worker LocalCluster: one rounds-table row
per server update, tasks recorded with version and staleness, the final parameters a
bitwise replay of the recorded arrivals, and a resume that records lost tasks."""
import jax
import numpy as np
import pytest

from fedjax_grid.federated.fedbuff import replay
from fedjax_grid.runner import FederatedRun
from fedjax_grid.runner.policies.asynchronous import buffer_size, concurrency, next_client
from tests.grid.conftest import tiny_config

ASYNC = {"server.mode": "async", "partition.num_clients": 6, "server.concurrency": 4,
         "server.buffer_size": 2, "faults.enabled": True, "faults.max_slowdown": 4.0,
         "server.max_staleness": 1}


def _leaves(state):
    return [np.asarray(x) for x in jax.tree.leaves(state.params)]


def test_policy_defaults_and_client_draws():
    cfg = tiny_config(**{"server.mode": "async", "partition.num_clients": 5})
    assert concurrency(cfg) == 5 and buffer_size(cfg) == 2
    draws = [next_client(cfg, t, busy={0, 1}) for t in range(40)]
    assert set(draws) == {2, 3, 4}  # never a busy client, every free one in time
    assert draws == [next_client(cfg, t, busy={0, 1}) for t in range(40)]  # seeded
    assert next_client(cfg, 0, busy=set(range(5))) is None


@pytest.mark.slow   # suite budget (~12 s); async rounds stay in the default run (test_compression_wiring.py)
def test_async_run_records_versions_and_replays_bitwise(grid, tmp_path):
    cfg = tiny_config(**ASYNC, **{"training.rounds": 4})
    run = FederatedRun(cfg, out_dir=tmp_path / "async", grid=grid)
    initial = run.state
    policy = run.policy
    policy.keep_arrivals = True
    try:
        run.run()
    finally:
        run.close()
    rounds, tasks = run.records.rounds(), run.records.tasks()
    assert list(rounds["round"]) == [1, 2, 3, 4] and run.state.round == 4
    assert rounds["global_accuracy"].notna().all()
    ok = tasks[tasks["status"] == "ok"]
    assert ok.groupby("round").size().tolist() == [2, 2, 2, 2]  # M deltas per server update
    # staleness = the server's version when the delta arrived - the version it trained from
    assert ((ok["round"] - 1 - ok["version"]) == ok["staleness"]).all()
    assert ok["staleness"].max() <= 1
    dropped = tasks[tasks["status"] == "dropped"]
    assert (dropped["staleness"] > 1).all() and dropped["reason"].str.contains("max_staleness").all()
    assert len(policy.arrivals) == len(ok) + len(dropped)
    again = replay(run.algorithm, initial, policy.arrivals, buffer_size=2,
                   staleness=cfg.server.staleness, max_staleness=1, on_flush=run.recalibrated)
    assert again.version == 4
    for a, b in zip(_leaves(again.state), _leaves(run.state)):
        assert np.array_equal(a, b)


@pytest.mark.slow  # suite budget (~17 s): async rounds stay in the default run in
# test_compression_wiring.py (delta broadcast with versions in flight)
def test_async_resume_records_the_tasks_in_flight_as_dropped(grid, tmp_path):
    cfg = tiny_config(**ASYNC, **{"training.rounds": 3})
    out = tmp_path / "resume"
    first = FederatedRun(cfg, out_dir=out, grid=grid)
    try:
        first.step()
        first.step()
        first.save_records()
        in_flight = first.policy.in_flight()
    finally:
        first.close()
    assert in_flight  # K = 4 tasks were in flight when the coordinator stopped
    second = FederatedRun(cfg, out_dir=out, grid=grid, resume=True)
    try:
        assert second.round == 2
        second.run()
    finally:
        second.close()
    tasks = second.records.tasks()
    lost = tasks[tasks["reason"].str.contains("in flight when the coordinator stopped", na=False)]
    assert len(lost) == len(in_flight) and (lost["status"] == "dropped").all()
    assert (lost["round"] == 3).all()
    assert list(second.records.rounds()["round"]) == [1, 2, 3]


@pytest.mark.slow
def test_the_arrival_log_replays_bitwise_across_a_resume_and_from_the_cli(grid, tmp_path):
    """Every arrival is logged in the run folder before it is folded; the checkpoint counts
    them; a resume drops the arrivals of the buffer the stopped coordinator never flushed;
    `fedjax-grid replay RUN` re-folds the log from the initial state and finds the last
    checkpoint's state bit for bit (exit 0), and a log out of order is not (exit 1), a log
    with an arrival missing is one line (exit 2)."""
    import shutil
    import subprocess
    import sys

    from fedjax_grid.runner.arrivals import ArrivalLog
    from fedjax_grid.runner.replay import replay_run
    cfg = tiny_config(**{**ASYNC, "training.rounds": 3, "server.max_staleness": 3})
    out = tmp_path / "async"
    first = FederatedRun(cfg, out_dir=out, grid=grid)
    try:
        first.step()
        first.step()
        held = first.policy.log.count
        first.policy.log.write(next(ArrivalLog(out).read(1)))  # one past the checkpoint
    finally:
        first.close()
    resumed = FederatedRun(cfg, out_dir=out, grid=grid, resume=True)
    try:
        resumed.run()
    finally:
        resumed.close()
    n = resumed.policy.log.count
    assert n >= held + 2 and len(list((out / "arrivals").glob("*.msgpack"))) == n
    r = replay_run(out)
    assert r["equal"] and r["arrivals"] == n and r["version"] == 3, r
    cli = [sys.executable, "-m", "fedjax_grid.cli", "replay", str(out)]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "bitwise equal to the last checkpoint" in done.stdout, \
        done.stdout + done.stderr[-2000:]
    # the first arrival swapped with one trained from a later version: another history
    # (two arrivals of one buffer could swap unseen: their float64 sum commutes)
    log = ArrivalLog(out)
    arrivals = list(log.read(n))
    i = max(i for i in range(n) if arrivals[i].base_version > 0)
    a, b = log.path(0), log.path(i)
    shutil.move(a, tmp_path / "x")
    shutil.move(b, a)
    shutil.move(tmp_path / "x", b)
    done = subprocess.run(cli, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1 and "DIFFERENT" in done.stdout, done.stdout + done.stderr[-2000:]
    b.unlink()
    done = subprocess.run(cli, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "is missing" in done.stderr, \
        done.stderr


def test_replay_of_a_synchronous_run_is_one_line(tmp_path):
    import subprocess
    import sys
    out = tmp_path / "sync"
    out.mkdir()
    tiny_config(**{"training.rounds": 1}).save(out / "config.json")
    done = subprocess.run([sys.executable, "-m", "fedjax_grid.cli", "replay", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "server.mode=sync" in done.stderr and "running its config again" in done.stderr
