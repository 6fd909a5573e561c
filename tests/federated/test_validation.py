"""validate_update: one test per rejection reason, and the norm guard."""
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_grid.errors import UserError
from fedjax_grid.federated.validation import NormGuard, validate_update


def _template():
    return {'params': {'Dense_0': {'kernel': np.zeros((4, 3), np.float32),
                                   'bias': np.zeros((3,), np.float32)}},
            'batch_stats': {'BatchNorm_0': {'mean': np.zeros((3,), np.float32)}}}


def test_good_update_passes_numpy_and_jax():
    t = _template()
    assert validate_update(t, t) is None
    jax_tree = {'params': {'Dense_0': {'kernel': jnp.ones((4, 3)), 'bias': jnp.ones(3)}},
                'batch_stats': {'BatchNorm_0': {'mean': jnp.ones(3)}}}
    assert validate_update(jax_tree, t) is None


def test_missing_and_extra_keys():
    t = _template()
    u = _template()
    del u['params']['Dense_0']['bias']
    u['params']['Dense_1'] = {'kernel': np.zeros((3, 3), np.float32)}
    reason = validate_update(u, t)
    assert reason.startswith('tree structure differs')
    assert "missing ['params']['Dense_0']['bias']" in reason
    assert "unexpected ['params']['Dense_1']['kernel']" in reason


def test_container_type_differs():
    t = {'a': [np.zeros(2, np.float32)]}
    u = {'a': (np.zeros(2, np.float32),)}
    assert validate_update(u, t) == 'tree structure differs: same leaf paths but different container types'


def test_not_a_tree():
    assert validate_update(None, _template()).startswith('tree structure differs')


def test_shape_mismatch():
    u = _template()
    u['params']['Dense_0']['kernel'] = np.zeros((4, 4), np.float32)
    assert validate_update(u, _template()) == \
        "shape mismatch at ['params']['Dense_0']['kernel']: (4, 4) != expected (4, 3)"


def test_dtype_mismatch():
    u = _template()
    u['batch_stats']['BatchNorm_0']['mean'] = np.zeros((3,), np.float64)
    assert validate_update(u, _template()) == \
        "dtype mismatch at ['batch_stats']['BatchNorm_0']['mean']: float64 != expected float32"


@pytest.mark.parametrize('bad,counts', [(np.nan, '1 NaN, 0 Inf'), (np.inf, '0 NaN, 1 Inf'),
                                        (-np.inf, '0 NaN, 1 Inf')])
def test_non_finite(bad, counts):
    u = _template()
    u['params']['Dense_0']['bias'] = np.array([0.0, bad, 1.0], np.float32)
    assert validate_update(u, _template()) == f"non-finite values at ['params']['Dense_0']['bias']: {counts}"


def test_norm_guard_rejects_outlier_after_history():
    g = NormGuard(max_norm_ratio=5.0, window=4, min_history=3).validate()
    s = g.init()
    delta = {'w': np.full(4, 0.5, np.float32)}                     # norm 1
    huge = {'w': np.full(4, 50.0, np.float32)}                     # norm 100
    assert validate_update(huge, delta, guard=g, guard_state=s) is None   # no history yet: accepted
    for n in (1.0, 1.2, 0.8):
        s = g.add(s, n)
    reason = validate_update(huge, delta, guard=g, guard_state=s)
    assert reason == ("update norm 100 is 100.0x the median 1 of recent accepted updates; "
                      "allowed: <= 5x")
    assert validate_update(delta, delta, guard=g, guard_state=s) is None
    for n in (2.0, 3.0, 4.0):
        s = g.add(s, n)
    assert s.tolist() == [0.8, 2.0, 3.0, 4.0]                         # sliding window
    assert g.init().shape == (4,) and np.isnan(g.init()).all()       # fixed shape for checkpoints
    assert g.add(np.array([5.0, 6.0]), 7.0).tolist()[1:] == [5.0, 6.0, 7.0]   # other window: refit
    assert g.check(s, float('nan')) == 'update norm nan is not finite'


@pytest.mark.parametrize('kw,match', [({'max_norm_ratio': 1.0}, 'max_norm_ratio=1.0'),
                                      ({'window': 0}, 'window=0'),
                                      ({'window': 3, 'min_history': 5}, 'min_history=5')])
def test_norm_guard_bad_settings(kw, match):
    with pytest.raises(UserError, match=match):
        NormGuard(**kw).validate()
