"""Server optimizers: fedavg = weighted mean, adaptive ones descend a toy quadratic."""
import numpy as np
import pytest

from fedjax_grid.errors import UserError
from fedjax_grid.federated.aggregators import make_aggregator
from fedjax_grid.federated.server import (SERVER_OPTIMIZERS, ServerState, client_variables,
                                          make_server_optimizer, server_apply, server_init,
                                          server_variables, split_variables)
from fedjax_grid.federated.tree_math import np_tree_sub


def _vars(rng, bn=True):
    v = {'params': {'w': rng.standard_normal((3, 2)).astype(np.float32),
                    'b': rng.standard_normal(2).astype(np.float32)}}
    if bn:
        v['batch_stats'] = {'mean': rng.standard_normal(2).astype(np.float32)}
    return v


def test_fedavg_lr1_equals_weighted_mean_of_client_params():
    rng = np.random.default_rng(0)
    glob = _vars(rng)
    clients = [_vars(rng) for _ in range(5)]
    weights = [10, 3, 50, 7, 1]
    opt = make_server_optimizer('fedavg')
    state = server_init(glob, opt)
    agg = make_aggregator('mean')
    s = agg.init(state.params)
    for c, w in zip(clients, weights):
        s = agg.update(s, np_tree_sub(c['params'], state.params), w)
    new = server_apply(state, agg.result(s), opt)
    W = sum(weights)
    for k in ('w', 'b'):
        want = sum(w * c['params'][k].astype(np.float64) for c, w in zip(clients, weights)) / W
        np.testing.assert_allclose(new.params[k], want, rtol=1e-6, atol=1e-6)
        assert new.params[k].dtype == np.float32 and isinstance(new.params[k], np.ndarray)
    assert new.round == 1 and state.round == 0
    np.testing.assert_array_equal(new.batch_stats['mean'], glob['batch_stats']['mean'])  # kept


def _quadratic_run(name, rounds=30, **kw):
    """Clients take one local GD step (lr 0.1) on f(w) = 0.5 ||w - w*||^2 from the global w."""
    target = np.array([3.0, -2.0, 1.0], np.float32)
    opt = make_server_optimizer(name, **kw)
    state = server_init({'params': {'w': np.zeros(3, np.float32)}}, opt)
    dists = [float(np.linalg.norm(state.params['w'] - target))]
    first_step = None
    for _ in range(rounds):
        w = state.params['w']
        delta = {'w': (-0.1 * (w - target)).astype(np.float32)}
        new = server_apply(state, delta, opt)
        if first_step is None:
            first_step = new.params['w'] - w
        state = new
        dists.append(float(np.linalg.norm(state.params['w'] - target)))
    return first_step, dists


@pytest.mark.parametrize('name,kw', [('fedavg', {}), ('fedavgm', {}), ('fedadam', {'lr': 0.1}),
                                     ('fedyogi', {'lr': 0.1}), ('fedadagrad', {'lr': 0.5})])
def test_server_optimizers_move_toward_the_optimum(name, kw):
    first_step, dists = _quadratic_run(name, **kw)
    direction = np.array([3.0, -2.0, 1.0])
    assert float(np.dot(first_step, direction)) > 0          # the right direction
    assert dists[-1] < 0.5 * dists[0], dists


def test_momentum_accelerates_fedavg():
    _, plain = _quadratic_run('fedavg', rounds=10)
    _, heavy = _quadratic_run('fedavgm', rounds=10, momentum=0.5)
    assert heavy[-1] < plain[-1]


def test_mean_batch_stats_replace_server_stats_and_local_mode_helper():
    rng = np.random.default_rng(1)
    opt = make_server_optimizer('fedavg')
    state = server_init(_vars(rng), opt)
    zero = {'w': np.zeros((3, 2), np.float32), 'b': np.zeros(2, np.float32)}
    bs = {'mean': np.array([7.0, 8.0], np.float32)}
    new = server_apply(state, zero, opt, bs)
    np.testing.assert_array_equal(new.batch_stats['mean'], [7.0, 8.0])
    np.testing.assert_array_equal(new.params['w'], state.params['w'])
    own = {'mean': np.array([1.0, 2.0], np.float32)}
    assert client_variables(new, 'aggregate', own)['batch_stats'] is new.batch_stats
    assert client_variables(new, 'local', own)['batch_stats'] is own
    assert client_variables(new, 'local', None)['batch_stats'] is new.batch_stats
    assert client_variables(new)['params'] is new.params
    assert client_variables(new, 'pooled', own)['batch_stats'] is new.batch_stats
    with pytest.raises(UserError, match="'global'.*recalibrate, pooled, local, aggregate"):
        client_variables(new, 'global')


def test_models_without_batchnorm():
    rng = np.random.default_rng(2)
    state = server_init(_vars(rng, bn=False), make_server_optimizer('fedadam'))
    assert state.batch_stats is None
    assert set(server_variables(state)) == {'params'}


def test_split_variables_errors():
    with pytest.raises(UserError, match="no 'params'"):
        split_variables({'weights': 1})
    with pytest.raises(UserError, match="unsupported collections \\['cache'\\]"):
        split_variables({'params': {}, 'cache': {}})


@pytest.mark.parametrize('kw,match', [
    ({'name': 'fedsgd'}, "'fedsgd'.*allowed: " + ', '.join(SERVER_OPTIMIZERS)),
    ({'name': 'fedavg', 'lr': 0}, 'lr=0.*> 0'),
    ({'name': 'fedavgm', 'momentum': 1.0}, 'momentum=1.0'),
    ({'name': 'fedadam', 'b2': -0.1}, 'b2=-0.1'),
    ({'name': 'fedyogi', 'eps': 0}, 'eps=0'),
    ({'name': 'fedadam', 'lr': 'fast'}, "lr='fast'"),
])
def test_bad_server_optimizer(kw, match):
    with pytest.raises(UserError, match=match):
        make_server_optimizer(**kw)


def test_server_state_is_a_namedtuple_pytree():
    assert ServerState._fields[:4] == ('params', 'batch_stats', 'opt_state', 'round')
