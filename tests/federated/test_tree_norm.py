"""``np_tree_l2_norm``: the global L2 norm in float64, in blocks (no full-size copies)."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_grid.federated import tree_math
from fedjax_grid.federated.tree_math import np_tree_l2_norm


def _reference(tree_leaves) -> float:
    return math.sqrt(math.fsum(float(v) ** 2 for x in tree_leaves
                               for v in np.asarray(x, np.float64).ravel()))


def test_norm_over_blocks_equals_the_exact_norm():
    rng = np.random.default_rng(0)
    n = 3 * tree_math._NORM_CHUNK + 17   # several blocks and a short last one
    tree = {"a": rng.standard_normal(n).astype(np.float32).reshape(-1, 1),
            "b": {"c": rng.standard_normal((5, 7)), "d": jnp.arange(6, dtype=jnp.int32)},
            "e": 2.5}
    leaves = [tree["a"], tree["b"]["c"], tree["b"]["d"], tree["e"]]
    assert np_tree_l2_norm(tree) == pytest.approx(_reference(leaves), rel=1e-12)
    assert np_tree_l2_norm({"x": np.float32([3.0, 4.0])}) == 5.0
    assert np_tree_l2_norm({}) == 0.0


def test_non_finite_leaves_give_nan_or_inf():
    big = np.zeros(tree_math._NORM_CHUNK + 3, np.float32)
    big[-1] = np.nan
    assert math.isnan(np_tree_l2_norm({"w": big}))
    assert math.isinf(np_tree_l2_norm({"w": np.float32([1.0, np.inf])}))
