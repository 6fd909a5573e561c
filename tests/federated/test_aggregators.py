"""Aggregators: exact weighted mean, streaming, robust statistics, factory errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_grid.errors import UserError
from fedjax_grid.federated import aggregators as agg_mod
from fedjax_grid.federated.aggregators import make_aggregator


def _tree(rng, scale=1.0, offset=0.0):
    return {'params': {'w': (offset + scale * rng.standard_normal((5, 3))).astype(np.float32),
                       'b': (offset + scale * rng.standard_normal((3,))).astype(np.float32)},
            'count': np.array(0, np.int32)}


def _run(agg, trees, weights):
    state = agg.init(trees[0])
    for t, w in zip(trees, weights):
        state = agg.update(state, t, w)
    return agg.result(state)


def _exact_mean(trees, weights):
    w = np.asarray(weights, np.float64)
    return jax.tree_util.tree_map(
        lambda *xs: np.tensordot(w, np.stack([np.asarray(x, np.float64) for x in xs]), 1) / w.sum(),
        *trees)


def test_mean_equals_exact_weighted_mean_many_clients():
    rng = np.random.default_rng(0)
    # 2000 clients, values with a large common offset: naive float32 summation would lose digits
    trees = [_tree(rng, scale=1e-3, offset=100.0) for _ in range(2000)]
    weights = rng.integers(1, 500, size=len(trees))
    exact = _exact_mean(trees, weights)
    for accumulate in ('exact', 'float64', 'float32'):
        agg = make_aggregator('mean', accumulate=accumulate)
        res = _run(agg, trees, weights)
        for got, want in zip(jax.tree_util.tree_leaves(res['params']),
                             jax.tree_util.tree_leaves(exact['params'])):
            np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-6)
    res64 = _run(make_aggregator('mean'), trees, weights)
    assert res64['params']['w'].dtype == np.float32 and res64['count'].dtype == np.int32


def test_float32_mean_is_jittable_and_kahan_beats_naive():
    # one large report, then many small ones: each small addend is below half an ulp of
    # the float32 running sum, so naive float32 summation drops them all.
    trees = [{'w': np.full(4, 1e6, np.float32)}] + [{'w': np.full(4, 0.01, np.float32)}] * 3000
    weights = np.ones(len(trees))
    agg = make_aggregator('mean', accumulate='float32')
    update = jax.jit(agg.update)
    add = jax.jit(lambda a, b: a + b)
    state = agg.init(trees[0])
    naive = jnp.zeros(4, jnp.float32)
    for t, w in zip(trees, weights):
        state = update(state, t, w)
        naive = add(naive, t['w'])
    exact = _exact_mean(trees, weights)['w']
    got = np.asarray(jax.jit(agg.result)(state)['w'], np.float64)
    np.testing.assert_allclose(got, exact, rtol=1e-6)
    exact_sum = 1e6 + 3000 * np.float64(np.float32(0.01))
    assert abs(float(state.total['w'][0]) - exact_sum) < 0.07          # <= ~1 ulp (0.0625)
    assert abs(float(naive[0]) - exact_sum) > 25.0                     # naive lost the small ones


def test_exact_mean_is_correctly_rounded_and_order_independent():
    import math
    rng = np.random.default_rng(7)
    k, n = 60, 3000
    xs = (rng.standard_normal((k, n)) * np.exp(rng.uniform(-8, 8, (k, n)))).astype(np.float32)
    ws = rng.integers(1, 5000, size=k)
    agg = make_aggregator('mean')          # accumulate='exact'
    results = []
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(k)
        results.append(_run(agg, [{'w': xs[i]} for i in order], ws[order])['w'])
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])
    W = float(ws.sum())
    want = np.array([math.fsum(float(w) * float(x) for w, x in zip(ws, xs[:, j])) / W
                     for j in range(n)]).astype(np.float32)
    np.testing.assert_array_equal(results[0], want)


def test_exact_mean_survives_cancellation_where_plain_float64_does_not():
    import math
    rng = np.random.default_rng(8)
    n = 500
    big = (rng.standard_normal(n) * 1e12).astype(np.float32)
    small = rng.standard_normal((20, n)).astype(np.float32)
    trees = [{'w': big}] + [{'w': x} for x in small] + [{'w': -big}]
    ws = [4099] + list(rng.integers(1, 5000, 20)) + [4099]
    want = np.array([math.fsum(float(w) * float(t['w'][j]) for w, t in zip(ws, trees)) / float(sum(ws))
                     for j in range(n)]).astype(np.float32)
    np.testing.assert_array_equal(_run(make_aggregator('mean'), trees, ws)['w'], want)
    plain = _run(make_aggregator('mean', accumulate='float64'), trees, ws)['w']
    assert (plain != want).sum() > n // 2


def test_mean_is_pure_and_streaming():
    rng = np.random.default_rng(2)
    agg = make_aggregator('mean')
    t1, t2 = _tree(rng), _tree(rng)
    s0 = agg.init(t1)
    s1 = agg.update(s0, t1, 3)
    s2 = agg.update(s1, t2, 1)
    assert s0.count == 0 and s1.count == 1 and s0.weight == 0.0   # old states untouched
    np.testing.assert_allclose(agg.result(s1)['params']['w'], t1['params']['w'], rtol=1e-7)
    np.testing.assert_allclose(agg.result(s2)['params']['b'],
                               (3 * t1['params']['b'].astype(np.float64) + t2['params']['b']) / 4,
                               rtol=1e-6)
    # the state holds one float64 sum per leaf, however many clients reported
    assert len(jax.tree_util.tree_leaves(s2.total)) == len(jax.tree_util.tree_leaves(t1))


def test_mean_rejects_bad_weights_and_empty():
    agg = make_aggregator('mean')
    s = agg.init({'w': np.zeros(2, np.float32)})
    for w in (0, -1, float('nan'), float('inf')):
        with pytest.raises(UserError, match='weight'):
            agg.update(s, {'w': np.ones(2, np.float32)}, w)
    with pytest.raises(UserError, match='zero updates'):
        agg.result(s)


def test_median_and_trimmed_mean_resist_outliers():
    rng = np.random.default_rng(3)
    clean = [{'w': (1.0 + 0.01 * rng.standard_normal(10)).astype(np.float32)} for _ in range(8)]
    bad = [{'w': np.full(10, 1e6, np.float32)}, {'w': np.full(10, 5e5, np.float32)}]
    trees = clean + bad
    weights = [10] * 8 + [10_000, 10_000]   # attackers also claim huge sample counts
    med = _run(make_aggregator('median'), trees, weights)['w']
    tm = _run(make_aggregator('trimmed_mean', trim_fraction=0.2), trees, weights)['w']
    mean = _run(make_aggregator('mean'), trees, weights)['w']
    np.testing.assert_allclose(med, 1.0, atol=0.05)
    np.testing.assert_allclose(tm, 1.0, atol=0.05)
    assert np.abs(mean - 1.0).min() > 1e5      # the plain weighted mean is ruined


def test_median_exact_values():
    trees = [{'w': np.array([1.0, 10.0], np.float32)},
             {'w': np.array([2.0, 30.0], np.float32)},
             {'w': np.array([9.0, 20.0], np.float32)},
             {'w': np.array([4.0, 40.0], np.float32)}]
    np.testing.assert_array_equal(_run(make_aggregator('median'), trees, [1] * 4)['w'], [3.0, 25.0])
    # k=4, trim 0.25 -> drop 1 each side per coordinate
    np.testing.assert_array_equal(
        _run(make_aggregator('trimmed_mean', trim_fraction=0.25), trees, [1] * 4)['w'], [3.0, 25.0])
    np.testing.assert_array_equal(
        _run(make_aggregator('trimmed_mean', trim_fraction=0.0), trees, [1] * 4)['w'], [4.0, 25.0])


def test_clipped_mean_bounds_each_update():
    big = {'w': np.array([30.0, 40.0], np.float32)}          # norm 50 -> scaled to norm 1
    small = {'w': np.array([0.3, 0.4], np.float32)}          # norm 0.5 -> unchanged
    res = _run(make_aggregator('clipped_mean', max_norm=1.0), [big, small], [1, 1])['w']
    np.testing.assert_allclose(res, [(0.6 + 0.3) / 2, (0.8 + 0.4) / 2], rtol=1e-6)
    state = make_aggregator('clipped_mean', max_norm=1.0).init(big)
    assert isinstance(state, agg_mod.MeanState)   # O(model): no buffer


@pytest.mark.parametrize('name,kw,match', [
    ('avg', {}, "'avg'.*allowed: mean, median, trimmed_mean, clipped_mean"),
    ('mean', {'accumulate': 'float16'}, "float16.*allowed"),
    ('mean', {'trim_fraction': 0.1}, "trim_fraction.*allowed: accumulate"),
    ('trimmed_mean', {'trim_fraction': 0.5}, r"0.5.*in \[0, 0.5\)"),
    ('trimmed_mean', {'trim_fraction': -0.1}, "-0.1"),
    ('clipped_mean', {'max_norm': 0}, "max_norm=0"),
    ('clipped_mean', {'max_norm': 'x'}, "max_norm"),
    ('median', {'k': 3}, "unknown parameter.*k.*allowed: none"),
])
def test_factory_errors(name, kw, match):
    with pytest.raises(UserError, match=match) as e:
        make_aggregator(name, **kw)
    assert '\n' not in str(e.value)


def test_exact_mean_on_leaves_larger_than_one_block():
    rng = np.random.default_rng(9)
    trees = [{'k': rng.standard_normal((3, 3, 64, 130)).astype(np.float32)} for _ in range(3)]  # 74880 > 2**15
    ws = [5, 7, 11]
    got = _run(make_aggregator('mean'), trees, ws)['k']
    assert got.shape == (3, 3, 64, 130) and got.dtype == np.float32
    np.testing.assert_array_equal(got, _exact_mean(trees, ws)['k'].astype(np.float32))
