"""SCAFFOLD's pure functions (Karimireddy et al. 2020, option II) and its server fold."""
import numpy as np
import pytest

from fedjax_grid.errors import UserError
from fedjax_grid.federated import make_algorithm
from fedjax_grid.federated.client_algorithms import make_client_algorithm
from fedjax_grid.federated.server import server_variables

SGD = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.0}


def _local_sgd(x, b, payload, alg, steps, lr):
    """K corrected SGD steps on f_i(y) = 0.5 ||y - b||^2 from x; the gradients seen."""
    offset = alg.local_offset(payload)
    y, grads = {k: v.copy() for k, v in x.items()}, []
    for _ in range(steps):
        g = {k: y[k] - b[k] for k in y}
        grads.append(g)
        y = {k: y[k] - lr * (g[k] + offset[k]) for k in y}
    return y, grads


def test_the_new_control_variate_is_the_mean_gradient_along_the_path():
    alg = make_client_algorithm("scaffold", num_clients=3)
    rng = np.random.default_rng(0)
    x = {"w": rng.normal(size=(3, 2)).astype(np.float32), "b": rng.normal(size=2).astype(np.float32)}
    target = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in x.items()}
    c = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in x.items()}
    c_i = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in x.items()}
    payload = alg.client_payload({"c": c}, {"c_i": c_i})
    y, grads = _local_sgd(x, target, payload, alg, steps=5, lr=0.1)
    delta = {k: y[k] - x[k] for k in x}
    new = alg.client_finish(payload, delta, dict(SGD, steps=5))
    # option II: c_i+ = c_i - c + (x - y) / (K lr) = the mean of the local gradients
    for k in x:
        np.testing.assert_allclose(new["c_i"][k], np.mean([g[k] for g in grads], axis=0),
                                   rtol=1e-4, atol=1e-5)
    up = alg.upload({"c_i": c_i}, new, delta, dict(SGD, steps=5))
    for k in x:
        np.testing.assert_allclose(up[k], new["c_i"][k] - c_i[k], atol=1e-6)


def test_one_client_with_full_participation_is_local_sgd_from_round_two():
    """N = 1: after round 1 the server's c equals the client's c_i, so the correction
    c - c_i vanishes and SCAFFOLD is plain local SGD; its first update is plain too."""
    alg = make_client_algorithm("scaffold", num_clients=1)
    x = {"w": np.array([1.0, -2.0], np.float32)}
    b = {"w": np.array([3.0, 0.5], np.float32)}
    server = alg.server_init(x)
    client = None
    for r in range(3):
        payload = alg.client_payload(server, client)
        if r > 0:
            np.testing.assert_allclose(alg.local_offset(payload)["w"], 0.0, atol=1e-7)
        y, _ = _local_sgd(x, b, payload, alg, steps=4, lr=0.1)
        plain, _ = _local_sgd(x, b, {"c": server["c"], "c_i": server["c"]}, alg, steps=4, lr=0.1)
        np.testing.assert_allclose(y["w"], plain["w"], rtol=1e-6)
        delta = {"w": y["w"] - x["w"]}
        new = alg.client_finish(payload, delta, dict(SGD, steps=4))
        up = alg.upload(client, new, delta, dict(SGD, steps=4))
        server, applied = alg.server_update(server, delta, up, 1)
        client, x = new, {"w": x["w"] + applied["w"]}
        np.testing.assert_allclose(server["c"]["w"], client["c_i"]["w"], atol=1e-6)


def test_server_control_variate_moves_by_the_sampled_fraction_of_the_mean_upload():
    alg = make_client_algorithm("scaffold", num_clients=4)
    params = {"w": np.zeros(3, np.float32)}
    algo = make_algorithm("mean", "fedavg", client_algorithm=alg)
    state = algo.init({"params": params})
    np.testing.assert_array_equal(state.algorithm["c"]["w"], np.zeros(3, np.float32))
    fold = algo.begin(state)
    uploads = [np.array([1.0, 2.0, 3.0], np.float32), np.array([3.0, 0.0, -1.0], np.float32)]
    for i, (u, n) in enumerate(zip(uploads, (10, 30))):  # uniform mean: sizes do not matter
        assert fold.add_delta({"w": np.full(3, i, np.float32)}, n, i, upload={"w": u}) is None
    bad = {"w": np.array([np.nan, 0, 0], np.float32)}
    assert "non-finite" in fold.add_delta({"w": np.ones(3, np.float32)}, 5, 9, upload=bad)
    new, diag = fold.finish()
    np.testing.assert_allclose(new.algorithm["c"]["w"], 2 / 4 * (uploads[0] + uploads[1]) / 2)
    # the model step is FedAvg's: the example-weighted mean delta
    np.testing.assert_allclose(server_variables(new)["params"]["w"], np.full(3, 0.75), rtol=1e-6)
    assert diag["num_accepted"] == 2 and diag["num_rejected"] == 1


def test_effective_step_with_momentum_and_unsupported_optimizers():
    alg = make_client_algorithm("scaffold", num_clients=2)
    payload = alg.client_payload(alg.server_init({"w": np.zeros(1)}), None)
    delta = {"w": np.array([-1.0], np.float32)}
    new = alg.client_finish(payload, delta, {"optimizer": "momentum", "lr": 0.1, "momentum": 0.9,
                                             "steps": 10})
    np.testing.assert_allclose(new["c_i"]["w"], [1.0 / (10 * 0.1 / (1 - 0.9))], rtol=1e-6)
    unchanged = alg.client_finish(payload, delta, dict(SGD, steps=0))
    np.testing.assert_array_equal(unchanged["c_i"]["w"], payload["c_i"]["w"])
    with pytest.raises(UserError, match="allowed: sgd, momentum"):
        alg.client_finish(payload, delta, {"optimizer": "adam", "lr": 0.1, "momentum": 0.9,
                                           "steps": 3})
