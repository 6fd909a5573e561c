"""FedNova's normalized averaging (Wang et al. 2020) through the server fold."""
import numpy as np
import pytest

from fedjax_grid.federated import make_algorithm
from fedjax_grid.federated.fednova import effective_steps
from fedjax_grid.federated.server import server_variables


def test_effective_steps():
    assert effective_steps({"steps": 7, "optimizer": "sgd", "momentum": 0.9}) == 7.0
    rho, tau = 0.9, 20
    want = (tau - rho * (1 - rho ** tau) / (1 - rho)) / (1 - rho)
    assert effective_steps({"steps": tau, "optimizer": "momentum", "momentum": rho}) == \
        pytest.approx(want)
    # momentum amplifies steps: a_i approaches tau / (1 - rho) for long runs
    assert effective_steps({"steps": 1000, "optimizer": "momentum", "momentum": rho}) == \
        pytest.approx(1000 / (1 - rho), rel=0.02)


def _round(algorithm, deltas, sizes, steps):
    from fedjax_grid.federated.client_algorithms import make_client_algorithm
    client = make_client_algorithm(algorithm)
    algo = make_algorithm("mean", "fedavg", client_algorithm=client)
    state = algo.init({"params": {"w": np.zeros(2, np.float32)}})
    fold = algo.begin(state)
    for i, (d, n, tau) in enumerate(zip(deltas, sizes, steps)):
        local = {"steps": tau, "optimizer": "sgd", "lr": 0.1, "momentum": 0.0}
        up = client.upload(None, None, {"w": d}, local)
        assert fold.add_delta({"w": d}, n, i, upload=up) is None
    return server_variables(fold.finish()[0])["params"]["w"]


def test_normalized_averaging_by_hand():
    deltas = [np.array([1.0, 2.0], np.float32), np.array([-3.0, 4.0], np.float32)]
    sizes, steps = [10, 30], [2, 6]
    p = np.array(sizes) / sum(sizes)
    tau_eff = float(p @ np.array(steps, float))
    want = tau_eff * (p[0] * deltas[0] / steps[0] + p[1] * deltas[1] / steps[1])
    np.testing.assert_allclose(_round("fednova", deltas, sizes, steps), want, rtol=1e-6)
    fedavg = p[0] * deltas[0] + p[1] * deltas[1]
    np.testing.assert_allclose(_round("fedavg", deltas, sizes, [None, None]), fedavg, rtol=1e-6)
    assert not np.allclose(want, fedavg)  # the two differ when local steps differ


def test_equal_steps_give_fedavg():
    deltas = [np.array([1.0, 2.0], np.float32), np.array([-3.0, 4.0], np.float32)]
    np.testing.assert_allclose(_round("fednova", deltas, [10, 30], [5, 5]),
                               _round("fedavg", deltas, [10, 30], [None, None]), rtol=1e-6)
