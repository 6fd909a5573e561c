"""Client algorithms on a real 2-worker LocalCluster: SCAFFOLD and FedNova learn on digits,
SCAFFOLD's control variates travel with the tasks and live in the per-client store, and a
stopped-and-resumed SCAFFOLD run is bitwise the uninterrupted one (c and every c_i too)."""
import jax
import numpy as np
import pytest

from fedjax_grid.grid.dispatch import tree_nbytes
from fedjax_grid.runner import FederatedRun
from tests.grid.conftest import assert_same_state, stopped_and_resumed, tiny_config


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


# suite budget: SCAFFOLD runs in the default suite through its stop-and-resume test
@pytest.mark.parametrize("algorithm", [pytest.param("scaffold", marks=pytest.mark.slow), "fednova"])
def test_client_algorithm_learns_on_digits(grid, tmp_path, algorithm):
    cfg = tiny_config(**{"training.rounds": 3, "training.algorithm": algorithm})
    run = FederatedRun(cfg, out_dir=tmp_path / algorithm, grid=grid)
    records = run.run()
    run.close()
    rounds, tasks = records.rounds(), records.tasks()
    assert (tasks["status"] == "ok").all() and len(tasks) == 12
    assert rounds["global_accuracy"].iloc[-1] > 0.5  # 10 classes: chance is 0.1
    if algorithm == "fednova":
        assert run.state.algorithm is None and not run.clients.of("algorithm")
        return
    c = _leaves(run.state.algorithm["c"])
    assert len(c) == len(_leaves(run.state.params)) and any(np.abs(x).sum() > 0 for x in c)
    assert sorted(run.clients.of("algorithm")) == [0, 1, 2, 3]
    # each task carries c and c_i (two params-sized trees) and returns c_i
    params = tree_nbytes(run.state.params)
    plain = FederatedRun(tiny_config(**{"training.rounds": 1}), out_dir=tmp_path / "plain",
                         grid=grid).run().tasks()
    first = tasks[tasks["round"] == 1].sort_values("client")
    np.testing.assert_array_equal(first["bytes_in"].to_numpy() - plain.sort_values("client")[
        "bytes_in"].to_numpy(), 2 * params)
    assert (first["bytes_out"] - plain.sort_values("client")["bytes_out"].to_numpy()
            == params).all()


def test_scaffold_state_survives_stop_and_resume_bitwise(grid, tmp_path):
    cfg = tiny_config(**{"training.rounds": 3, "training.algorithm": "scaffold",
                         "partition.num_clients": 6, "training.clients_per_round": 3})
    full = FederatedRun(cfg, out_dir=tmp_path / "full", grid=grid)
    full.run()
    part, resumed = stopped_and_resumed(cfg, tmp_path / "part", grid, 2)
    assert sorted(resumed.clients.of("algorithm")) == sorted(part.clients.of("algorithm"))
    for k, state in part.clients.of("algorithm").items():  # every c_i restored exactly
        for x, y in zip(_leaves(state), _leaves(resumed.clients.of("algorithm")[k])):
            np.testing.assert_array_equal(x, y)
    for x, y in zip(_leaves(part.state.algorithm), _leaves(resumed.state.algorithm)):
        np.testing.assert_array_equal(x, y)
    resumed.run()
    assert_same_state(full, resumed)
    for x, y in zip(_leaves(full.state.algorithm), _leaves(resumed.state.algorithm)):
        np.testing.assert_array_equal(x, y)
    assert sorted(full.clients.of("algorithm")) == sorted(resumed.clients.of("algorithm"))
    for k, state in full.clients.of("algorithm").items():
        for x, y in zip(_leaves(state), _leaves(resumed.clients.of("algorithm")[k])):
            np.testing.assert_array_equal(x, y)


def test_scaffold_under_the_asynchronous_policy(grid, tmp_path):
    """Round policies and client algorithms are orthogonal: FedBuff folds SCAFFOLD's
    uploads per server update (|S| = the buffer's accepted deltas)."""
    cfg = tiny_config(**{"training.rounds": 2, "training.algorithm": "scaffold",
                         "server.mode": "async", "server.concurrency": 2,
                         "server.buffer_size": 2})
    run = FederatedRun(cfg, out_dir=tmp_path / "async", grid=grid)
    try:
        records = run.run()
    finally:
        run.close()
    ok = records.tasks()[records.tasks()["status"] == "ok"]
    assert list(records.rounds()["round"]) == [1, 2] and len(ok) == 4
    assert any(np.abs(x).sum() > 0 for x in _leaves(run.state.algorithm["c"]))
    assert set(run.clients.of("algorithm")) == set(ok["client"])
