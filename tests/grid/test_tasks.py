"""The client task's fault simulation helpers (no cluster needed)."""
import numpy as np
import pytest

from fedjax_grid.federated.tree_math import np_tree_l2_norm, np_tree_sub
from fedjax_grid.grid.tasks import attack_params


def _trees():
    rng = np.random.default_rng(0)
    g = {'dense': {'kernel': rng.standard_normal((4, 3)).astype(np.float32),
                   'bias': np.zeros(3, np.float32)}}
    w = {'dense': {'kernel': g['dense']['kernel'] + 0.1, 'bias': g['dense']['bias'] - 0.2}}
    return w, g


@pytest.mark.parametrize("kind, sign", [("scale", 1.0), ("signflip", -1.0)])
def test_scaled_attacks(kind, sign):
    w, g = _trees()
    out = attack_params(kind, 3.0, w, g)
    delta, honest = np_tree_sub(out, g), np_tree_sub(w, g)
    np.testing.assert_allclose(delta['dense']['kernel'], sign * 3.0 * honest['dense']['kernel'],
                               rtol=1e-5)
    assert out['dense']['bias'].dtype == np.float32


def test_random_attack_has_the_scaled_norm_and_is_seeded():
    w, g = _trees()
    out = attack_params("random", 5.0, w, g, seed=(0, 1, 2))
    norm = np_tree_l2_norm(np_tree_sub(out, g))
    assert norm == pytest.approx(5.0 * np_tree_l2_norm(np_tree_sub(w, g)), rel=1e-5)
    again = attack_params("random", 5.0, w, g, seed=(0, 1, 2))
    np.testing.assert_array_equal(out['dense']['kernel'], again['dense']['kernel'])
