"""FederatedAlgorithm over numpy toy trees: FedAvg, streaming, rejection, robust aggregation."""
import numpy as np
import pytest

from fedjax_grid.errors import UserError
from fedjax_grid.federated.algorithm import make_algorithm
from fedjax_grid.federated.validation import NormGuard, norm_history_values


def _vars(rng, scale=1.0):
    return {'params': {'dense': {'kernel': (scale * rng.standard_normal((4, 3))).astype(np.float32),
                                 'bias': (scale * rng.standard_normal(3)).astype(np.float32)}},
            'batch_stats': {'bn': {'mean': rng.standard_normal(3).astype(np.float32),
                                   'var': rng.uniform(0.5, 2, 3).astype(np.float32)}}}


def test_fedavg_round_is_weighted_mean_and_streams_a_generator():
    rng = np.random.default_rng(0)
    algo = make_algorithm('mean', 'fedavg')
    state = algo.init(_vars(rng))
    clients = [_vars(rng) for _ in range(6)]
    ns = [5, 20, 1, 7, 100, 3]
    consumed = []

    def stream():                       # a generator: apply may only iterate it once
        for i, (c, n) in enumerate(zip(clients, ns)):
            consumed.append(i)
            yield c, n, f'client-{i}'

    new, diag = algo.apply(state, stream())
    assert consumed == list(range(6))
    assert diag['accepted'] == [f'client-{i}' for i in range(6)] and diag['rejected'] == []
    assert diag['applied'] and diag['total_weight'] == sum(ns) and diag['round'] == 1
    W = float(sum(ns))
    wmean = lambda f: sum(n * f(c) for c, n in zip(clients, ns)) / W  # noqa: E731
    for coll, path in (('params', ('dense', 'kernel')), ('params', ('dense', 'bias')),
                       ('batch_stats', ('bn', 'mean'))):
        want = wmean(lambda c: c[coll][path[0]][path[1]].astype(np.float64))
        got = getattr(new, coll)[path[0]][path[1]]
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # default bn_mode 'pooled': the variance of the union, E[var + mean^2] - mean^2
    bn = lambda c: (c['batch_stats']['bn']['mean'].astype(np.float64),  # noqa: E731
                    c['batch_stats']['bn']['var'].astype(np.float64))
    mean = wmean(lambda c: bn(c)[0])
    want_var = wmean(lambda c: bn(c)[1] + bn(c)[0] ** 2) - mean ** 2
    np.testing.assert_allclose(new.batch_stats['bn']['var'], want_var, rtol=1e-5)
    assert new.round == 1 and state.round == 0


def test_bad_updates_are_rejected_with_reasons_and_excluded():
    rng = np.random.default_rng(1)
    algo = make_algorithm('mean', 'fedavg')
    state = algo.init(_vars(rng))
    good = _vars(rng)
    nan = _vars(rng)
    nan['params']['dense']['bias'][1] = np.nan
    wrong_shape = _vars(rng)
    wrong_shape['params']['dense']['kernel'] = np.zeros((4, 4), np.float32)
    wrong_dtype = _vars(rng)
    wrong_dtype['params']['dense']['kernel'] = wrong_dtype['params']['dense']['kernel'].astype(np.float16)
    missing = _vars(rng)
    del missing['batch_stats']
    results = [(good, 10, 'a'), (nan, 10, 'b'), (wrong_shape, 10, 'c'), (wrong_dtype, 10, 'd'),
               (missing, 10, 'e'), (_vars(rng), 0, 'f'), ('garbage',)]
    new, diag = algo.apply(state, iter(results))
    assert diag['accepted'] == ['a']
    reasons = dict(diag['rejected'])
    assert reasons['b'].startswith("non-finite values at ['params']['dense']['bias']")
    assert reasons['c'].startswith('shape mismatch')
    assert reasons['d'].startswith('dtype mismatch')
    assert reasons['e'].startswith("tree structure differs: missing ['batch_stats']")
    assert reasons['f'].startswith('num_examples=0')
    assert 'not a (variables, num_examples' in reasons[6]
    assert diag['num_reported'] == 7 and diag['num_rejected'] == 6
    np.testing.assert_allclose(new.params['dense']['kernel'], good['params']['dense']['kernel'], rtol=1e-6)
    assert np.isfinite(new.params['dense']['bias']).all()


def test_all_rejected_keeps_params_and_advances_round():
    rng = np.random.default_rng(2)
    algo = make_algorithm()
    state = algo.init(_vars(rng))
    new, diag = algo.apply(state, [])
    assert not diag['applied'] and new.round == 1
    np.testing.assert_array_equal(new.params['dense']['kernel'], state.params['dense']['kernel'])


def test_norm_guard_uses_previous_rounds_and_persists_history():
    rng = np.random.default_rng(3)
    algo = make_algorithm('mean', 'fedavg', norm_guard=NormGuard(max_norm_ratio=5.0, min_history=3))
    state = algo.init(_vars(rng))

    def near(s, eps):
        v = _vars(rng)
        v['params'] = {'dense': {k: (x + eps * rng.standard_normal(x.shape)).astype(np.float32)
                                 for k, x in s.params['dense'].items()}}
        return v

    state, diag = algo.apply(state, [(near(state, 0.01), 1, i) for i in range(4)])
    assert diag['num_accepted'] == 4 and len(norm_history_values(state.norm_history)) == 4
    assert state.norm_history.shape == (50,)
    attack = near(state, 0.01)
    attack['params']['dense']['kernel'] = attack['params']['dense']['kernel'] * 1000
    state2, diag = algo.apply(state, [(near(state, 0.01), 1, 'honest'), (attack, 1000, 'attacker')])
    assert diag['accepted'] == ['honest']
    assert 'x the median' in dict(diag['rejected'])['attacker']
    assert len(norm_history_values(state2.norm_history)) == 5


@pytest.mark.parametrize('agg,kw', [('median', {}), ('trimmed_mean', {'trim_fraction': 0.25}),
                                    ('clipped_mean', {'max_norm': 1.0})])
def test_robust_aggregators_limit_a_scaled_attack(agg, kw):
    rng = np.random.default_rng(4)
    base = _vars(rng)
    target = {k: (x + 0.1).astype(np.float32) for k, x in base['params']['dense'].items()}

    def client(attack=False):
        v = _vars(rng)
        v['params'] = {'dense': {k: (x + 0.001 * rng.standard_normal(x.shape)).astype(np.float32)
                                 for k, x in target.items()}}
        if attack:   # scaled update: 100x the honest delta, claiming many examples
            v['params'] = {'dense': {k: (base['params']['dense'][k] + 100 * (x - base['params']['dense'][k]))
                                     .astype(np.float32) for k, x in v['params']['dense'].items()}}
        return v

    results = [(client(), 10) for _ in range(8)] + [(client(True), 500) for _ in range(2)]
    errs = {}
    for name, akw in (('mean', {}), (agg, kw)):
        algo = make_algorithm(name, 'fedavg', aggregator_kw=akw)
        new, _ = algo.apply(algo.init(base), iter(results))
        errs[name] = max(float(np.abs(new.params['dense'][k] - target[k]).max()) for k in target)
    assert errs['mean'] > 5.0                 # plain FedAvg is dragged far away
    assert errs[agg] < 0.2, errs              # robust one stays near the honest target


def test_local_bn_mode_and_bad_settings():
    rng = np.random.default_rng(5)
    algo = make_algorithm(bn_mode='local')
    state = algo.init(_vars(rng))
    c = _vars(rng)
    new, _ = algo.apply(state, [(c, 3)])
    np.testing.assert_allclose(new.batch_stats['bn']['mean'], c['batch_stats']['bn']['mean'])
    with pytest.raises(UserError, match="bn_mode 'shared'"):
        make_algorithm(bn_mode='shared')
    with pytest.raises(UserError, match="unknown aggregator 'avg'"):
        make_algorithm('avg')
    with pytest.raises(UserError, match="unknown server optimizer 'sgd'"):
        make_algorithm('mean', 'sgd')


def test_round_fold_gives_each_verdict_at_once_and_equals_apply():
    rng = np.random.default_rng(7)
    algo = make_algorithm('mean', 'fedavgm', norm_guard=NormGuard(max_norm_ratio=5.0, min_history=1))
    state = algo.init(_vars(rng))
    warm = [(_vars(rng, 0.5), 3, k) for k in range(3)]
    state, _ = algo.apply(state, warm)                       # some norm history to guard with
    clients = [(_vars(rng, 0.5), n, k) for k, n in zip((4, 1, 3, 0), (2, 9, 4, 6))]
    bad = _vars(rng)
    bad['params']['dense']['bias'][0] = np.inf
    fold = algo.begin(state)
    verdicts = [fold.add(v, n, k) for v, n, k in clients[:2]]
    assert verdicts == [None, None] and fold.accepted == [4, 1]
    assert 'non-finite' in fold.add(bad, 5, 'bad') and fold.accepted == [4, 1]
    for v, n, k in clients[2:]:
        assert fold.add(v, n, k) is None
    via_fold, diag = fold.finish()
    via_apply, diag2 = algo.apply(state, clients + [(bad, 5, 'bad')])
    for a, b in zip(jax_leaves(via_fold), jax_leaves(via_apply)):
        np.testing.assert_array_equal(a, b)
    assert diag['accepted'] == diag2['accepted'] and diag['num_rejected'] == 1
    # the guard's history enters in client-id order, whatever order clients reported in
    shuffled, _ = algo.apply(state, clients[::-1])
    np.testing.assert_array_equal(shuffled.norm_history, via_apply.norm_history)
    in_order = sorted(diag['update_norms'].items())
    np.testing.assert_allclose(norm_history_values(via_apply.norm_history)[-4:],
                               [n for _, n in in_order])


def jax_leaves(state):
    import jax
    return jax.tree.leaves((state.params, state.batch_stats, state.opt_state))
