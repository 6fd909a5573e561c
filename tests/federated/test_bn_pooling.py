"""Exact pooling of BatchNorm moments (pure numpy) and its use in the algorithm."""
import numpy as np

from fedjax_grid.federated import make_algorithm, server_variables
from fedjax_grid.federated.bn_pooling import (moments_from_stats, pool_moments,
                                              stats_from_moments)


def _moments(x):
    """Per-channel (E[x], E[x^2]) of activations x (n, H, W, C), as a batch_stats tree."""
    return {"bn": {"mean": x.mean(axis=(0, 1, 2)), "var": np.square(x).mean(axis=(0, 1, 2))}}


def test_pooled_moments_are_the_statistics_of_the_union():
    rng = np.random.default_rng(0)
    # three clients with different sizes and shifted distributions (label skew)
    parts = [rng.normal(loc, scale, size=(n, 4, 4, 3))
             for loc, scale, n in ((0.0, 1.0, 7), (2.0, 0.1, 30), (-1.0, 3.0, 13))]
    pooled, n = pool_moments([(_moments(x), len(x)) for x in parts])
    assert n == 50
    stats = stats_from_moments(pooled)
    union = np.concatenate(parts)
    np.testing.assert_allclose(stats["bn"]["mean"], union.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(stats["bn"]["var"], union.var(axis=(0, 1, 2)), rtol=1e-10)
    # averaging the clients' variances (the old 'aggregate' mode) misses the spread of means
    naive = sum(len(x) * x.var(axis=(0, 1, 2)) for x in parts) / 50
    assert np.all(naive < 0.8 * union.var(axis=(0, 1, 2)))


def test_moments_and_statistics_convert_both_ways():
    stats = {"a": {"b": {"mean": np.array([1.0, -2.0], np.float32),
                         "var": np.array([0.5, 3.0], np.float32)}}}
    moments = moments_from_stats(stats)
    np.testing.assert_allclose(moments["a"]["b"]["var"], [1.5, 7.0])
    back = stats_from_moments(moments, like=stats)
    assert back["a"]["b"]["var"].dtype == np.float32
    np.testing.assert_allclose(back["a"]["b"]["var"], stats["a"]["b"]["var"], rtol=1e-6)


def _variables(rng, mean, var):
    return {"params": {"w": rng.normal(size=(3,)).astype(np.float32)},
            "batch_stats": {"bn": {"mean": np.full(2, mean, np.float32),
                                   "var": np.full(2, var, np.float32)}}}


def test_algorithm_pools_client_moments_and_rejects_bad_ones():
    rng = np.random.default_rng(1)
    algo = make_algorithm(bn_mode="pooled")
    state = algo.init(_variables(rng, 0.0, 1.0))
    m1 = {"bn": {"mean": np.array([1.0, 1.0]), "var": np.array([2.0, 2.0])}}   # var 1
    m2 = {"bn": {"mean": np.array([3.0, 3.0]), "var": np.array([10.0, 10.0])}}  # var 1
    bad = {"bn": {"mean": np.array([np.nan, 0.0]), "var": np.array([1.0, 1.0])}}
    new, diag = algo.apply(state, iter([
        (_variables(rng, 9.0, 9.0), 10, 0, (m1, 10)),
        (_variables(rng, 9.0, 9.0), 30, 1, (m2, 30)),
        (_variables(rng, 9.0, 9.0), 30, 2, (bad, 30)),
    ]))
    assert diag["accepted"] == [0, 1] and diag["rejected"][0][0] == 2
    bs = server_variables(new)["batch_stats"]["bn"]
    # union: mean = (10*1 + 30*3) / 40 = 2.5; E[x^2] = (10*2 + 30*10) / 40 = 8; var = 1.75
    np.testing.assert_allclose(bs["mean"], [2.5, 2.5], rtol=1e-6)
    np.testing.assert_allclose(bs["var"], [1.75, 1.75], rtol=1e-6)
    assert bs["var"].dtype == np.float32
    # without moments a client's running statistics are read as moments
    new2, _ = algo.apply(state, iter([(_variables(rng, 1.0, 1.0), 10, 0),
                                      (_variables(rng, 3.0, 1.0), 30, 1)]))
    np.testing.assert_allclose(server_variables(new2)["batch_stats"]["bn"]["var"], [1.75, 1.75],
                               rtol=1e-6)
    # 'aggregate' keeps the old mean of running variances
    old = make_algorithm(bn_mode="aggregate")
    new3, _ = old.apply(old.init(_variables(rng, 0.0, 1.0)),
                        iter([(_variables(rng, 1.0, 1.0), 10, 0), (_variables(rng, 3.0, 1.0), 30, 1)]))
    np.testing.assert_allclose(server_variables(new3)["batch_stats"]["bn"]["var"], [1.0, 1.0])


def test_statistics_that_are_not_mean_and_var_are_averaged_as_they_are():
    rng = np.random.default_rng(2)
    v = lambda m: {"params": {"w": rng.normal(size=3).astype(np.float32)},  # noqa: E731
                   "batch_stats": {"custom": {"count": np.full(2, m, np.float32)}}}
    algo = make_algorithm(bn_mode="pooled")
    new, diag = algo.apply(algo.init(v(0.0)), iter([(v(1.0), 1, 0), (v(3.0), 3, 1)]))
    assert diag["num_accepted"] == 2
    np.testing.assert_allclose(new.batch_stats["custom"]["count"], [2.5, 2.5])
