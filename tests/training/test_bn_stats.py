"""Exact BatchNorm moments (precise BN) and the evaluation's collapse check, on real models."""
import jax
import numpy as np
import pytest

from fedjax_grid.data import load_source
from fedjax_grid.federated.bn_pooling import pool_moments, stats_from_moments
from fedjax_grid.models import get_model
from fedjax_grid.training import init_variables
from fedjax_grid.training.bn_stats import bn_moments, logit_spread


@pytest.fixture(scope="module")
def setup():
    ds = load_source("digits", "train", image_size=32)
    batch = ds.__getitems__(np.arange(104))
    model = get_model("vgg11", 10, width=0.0625, norm="batch", head="cifar")
    variables = init_variables(model, (1, 32, 32, 3), 0)
    return model, jax.tree.map(np.asarray, variables), batch["image"], batch["label"]


def _close(a, b, rtol=1e-5, atol=1e-6):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def test_client_moments_pool_to_the_moments_of_the_union(setup):
    model, variables, images, labels = setup
    a, b = (images[:64], labels[:64]), (images[64:], labels[64:])   # 64 and 40 examples
    ma, na = bn_moments(model, variables, a, 32)
    mb, nb = bn_moments(model, variables, b, 32)
    union, n = bn_moments(model, variables, (images, labels), 32)  # batches align with a | b
    assert (na, nb, n) == (64, 40, 104)
    pooled, count = pool_moments([(ma, na), (mb, nb)])
    assert count == n
    _close(pooled, union)
    stats = stats_from_moments(pooled, like=variables["batch_stats"])
    variances = [v for path, v in jax.tree_util.tree_leaves_with_path(stats)
                 if path[-1].key == "var"]
    assert len(variances) == 8 and all(np.all(v >= 0) for v in variances)


def test_padded_rows_do_not_count(setup):
    model, variables, images, labels = setup
    data = (images[:40], labels[:40])   # one full batch of 32 and one of 8 real + 24 padded
    whole, n = bn_moments(model, variables, data, 32)
    full, _ = bn_moments(model, variables, (images[:32], labels[:32]), 32)
    rest, _ = bn_moments(model, variables, (images[32:40], labels[32:40]), 8)  # no padding
    pooled, _ = pool_moments([(full, 32), (rest, 8)])
    assert n == 40
    _close(whole, pooled)
    # the first layer's mean is the plain per-channel mean of its pre-activations: non-trivial
    assert any(np.abs(v).max() > 1e-3 for v in jax.tree.leaves(whole))


def test_logit_spread_flags_collapsed_statistics(setup):
    model, variables, images, _ = setup
    moments, _ = bn_moments(model, variables, (images, np.zeros(len(images), np.int32)), 32)
    good = dict(variables, batch_stats=stats_from_moments(moments, like=variables["batch_stats"]))
    ok = logit_spread(model, good, images[:64])
    assert not ok["collapsed"] and ok["eval"] > 0.1 * ok["train"] > 0
    # running variances far above the true ones shrink the signal layer by layer
    huge = jax.tree_util.tree_map_with_path(
        lambda p, v: np.full_like(v, 1e8) if p[-1].key == "var" else v, good["batch_stats"])
    bad = logit_spread(model, dict(good, batch_stats=huge), images[:64])
    assert bad["collapsed"] and bad["eval"] < 1e-2 * bad["train"]
    assert bad["train"] == pytest.approx(ok["train"], rel=1e-5)  # training mode is unaffected
