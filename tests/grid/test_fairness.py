"""server.max_lag: asynchronous runs that bound how far a client's participation may lag.

On a heterogeneous grid FedBuff folds the fast desktops' clients more often; a slow one
may contribute nothing (issue 23 item 3). With ``server.max_lag`` = L a client L or more
folded updates ahead of the least folded one gets no new task while a task is in flight.
"""
import pandas as pd
import pytest

from fedjax_grid.runner import FederatedRun
from fedjax_grid.runner.policies.asynchronous import fair_clients, next_client
from tests.grid.conftest import tiny_config


def test_clients_ahead_by_the_bound_wait_for_the_laggard_in_flight():
    folded = {0: 5, 1: 4, 2: 3, 3: 2}
    assert fair_clients([0, 1, 2], {3}, folded, 4, None) == [0, 1, 2]     # no bound
    assert fair_clients([0, 1, 2], {3}, folded, 4, 2) == [2]              # 5-2, 4-2 >= 2
    assert fair_clients([0, 1], {3}, folded, 4, 2) == []                  # wait for client 3
    assert fair_clients([0, 1], set(), folded, 4, 2) == [0, 1]            # nothing in flight
    assert fair_clients([0, 1, 2, 3], set(), {0: 9}, 4, 1) == [1, 2, 3]   # never-folded ones count
    cfg = tiny_config(**{"server.mode": "async", "partition.num_clients": 4, "server.max_lag": 2})
    assert next_client(cfg, 0, busy={3}, folded={0: 5, 1: 4, 2: 4, 3: 2}) is None
    assert {next_client(cfg, t, busy={3}, folded=folded) for t in range(20)} == {2}
    assert {next_client(cfg, t, busy=set(), folded={}) for t in range(40)} == {0, 1, 2, 3}


def test_config_refuses_a_bound_below_one():
    from fedjax_grid.errors import UserError
    with pytest.raises(UserError, match="max_lag"):
        tiny_config(**{"server.max_lag": 0})


def _spread(tasks: pd.DataFrame, clients: int) -> tuple[int, int]:
    folded = tasks[tasks["status"] == "ok"].groupby("client").size().reindex(range(clients),
                                                                          fill_value=0)
    return int(folded.min()), int(folded.max())


@pytest.mark.slow   # 30-230 s: the slow client's tasks are waited for (load 16-18)
def test_async_run_with_a_slow_client_keeps_every_client_within_the_bound(grid, tmp_path):
    # seed 2: client 0 trains 6.4x slower than client 1 (faults.max_slowdown=8)
    sets = {"server.mode": "async", "partition.num_clients": 4, "server.concurrency": 2,
            "server.buffer_size": 1, "training.rounds": 8, "faults.enabled": True,
            "faults.max_slowdown": 8.0, "seed": 2, "server.max_staleness": 20}
    run = FederatedRun(tiny_config(**sets, **{"server.max_lag": 1}), out_dir=tmp_path / "fair",
                       grid=grid)
    try:
        run.run()
    finally:
        run.close()
    low, high = _spread(run.records.tasks(), 4)
    assert high - low <= 1 and low >= 1, run.records.tasks()[["client", "status", "version"]]
    part = pd.read_csv(tmp_path / "fair" / "participation.csv")
    assert part["folded"].min() >= 1 and part["folded"].sum() == 8
