"""server.mode='async' (FedBuff) on a real 2-worker LocalCluster: one rounds-table row
per server update, tasks recorded with version and staleness, the final parameters a
bitwise replay of the recorded arrivals, and a resume that records lost tasks."""
import jax
import numpy as np

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
