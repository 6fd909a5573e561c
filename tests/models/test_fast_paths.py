"""Fast-path convs equal nn.Conv in outputs and gradients (same variables)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_grid.errors import UserError
from fedjax_grid.models import fast_paths


def _compare(stock: nn.Module, fast: nn.Module, x: jax.Array):
    """Init with stock, check the param shapes agree, compare outputs and grads."""
    variables = stock.init(jax.random.key(0), x)
    fast_shapes = jax.tree.map(jnp.shape, jax.eval_shape(fast.init, jax.random.key(0), x))
    assert jax.tree.map(jnp.shape, variables) == fast_shapes
    # non-zero bias so the bias path is exercised
    variables = jax.tree.map(lambda a: a + 0.1 * jnp.arange(a.size).reshape(a.shape)
                             / a.size, variables)
    ct = jax.random.normal(jax.random.key(3), jax.eval_shape(stock.apply, variables, x).shape)

    @jax.jit
    def outputs_and_grads(v, x):
        def run(m):
            y, vjp = jax.vjp(lambda v, x: m.apply(v, x), v, x)
            return y, vjp(ct)
        return run(stock), run(fast)

    (y_stock, g_stock), (y_fast, g_fast) = outputs_and_grads(variables, x)
    assert y_stock.shape == y_fast.shape
    np.testing.assert_allclose(y_fast, y_stock, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_stock)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
    return y_stock


@pytest.mark.parametrize("hw,stride,padding", [
    (2, 1, "SAME"), pytest.param(4, 1, ((1, 1), (1, 1)), marks=pytest.mark.slow), (5, 2, "SAME"),
    (6, 2, ((1, 1), (1, 1))), pytest.param(6, 2, "VALID", marks=pytest.mark.slow),
    pytest.param(3, 1, 1, marks=pytest.mark.slow)])  # default run: one per stride and padding kind
def test_patches_conv_matches_nn_conv(hw, stride, padding):
    x = jax.random.normal(jax.random.key(1), (2, hw, hw, 5))
    stock = nn.Conv(7, (3, 3), strides=stride, padding=padding)
    fast = fast_paths.Conv3x3Patches(7, (3, 3), strides=stride, padding=padding)
    _compare(stock, fast, x)


@pytest.mark.parametrize("k,hw,stride,padding", [
    (3, 5, 1, ((1, 1), (1, 1))), pytest.param(3, 6, 2, ((1, 1), (1, 1)), marks=pytest.mark.slow),
    (5, 7, 2, ((2, 2), (2, 2))), pytest.param(5, 8, 1, "SAME", marks=pytest.mark.slow),
    (3, 6, 2, "SAME"), pytest.param(3, 2, 1, "SAME", marks=pytest.mark.slow)])
def test_depthwise_matches_grouped_nn_conv(k, hw, stride, padding):
    c = 6
    x = jax.random.normal(jax.random.key(2), (2, hw, hw, c))
    stock = nn.Conv(c, (k, k), strides=stride, padding=padding, feature_group_count=c,
                    use_bias=False)
    fast = fast_paths.DepthwiseConvShifted(c, (k, k), strides=stride, padding=padding,
                                           use_bias=False)
    _compare(stock, fast, x)


def test_depthwise_channel_multiplier_and_bias():
    x = jax.random.normal(jax.random.key(2), (2, 5, 5, 3))
    stock = nn.Conv(6, (3, 3), padding="SAME", feature_group_count=3)
    fast = fast_paths.DepthwiseConvShifted(6, (3, 3), padding="SAME")
    _compare(stock, fast, x)


def test_torch_and_flax_padding_differ_at_stride_2():
    """Guards the reason the models pass explicit (k-1)//2 pads: 'SAME' differs."""
    x = jax.random.normal(jax.random.key(2), (1, 6, 6, 2))
    conv = nn.Conv(2, (3, 3), strides=2, padding="SAME")
    v = conv.init(jax.random.key(0), x)
    torch_like = nn.Conv(2, (3, 3), strides=2, padding=((1, 1), (1, 1)))
    assert not np.allclose(conv.apply(v, x), torch_like.apply(v, x))


def test_conv2d_selection():
    assert isinstance(fast_paths.conv2d(4, 3, fast=True, in_hw=(2, 2), name="c"),
                      fast_paths.Conv3x3Patches)
    assert isinstance(fast_paths.conv2d(4, 3, fast=True, in_hw=(16, 16), name="c"), nn.Conv)
    assert isinstance(fast_paths.conv2d(4, 3, fast=False, in_hw=(2, 2), name="c"), nn.Conv)
    assert isinstance(fast_paths.conv2d(4, 3, groups=4, in_features=4, fast=True,
                                        in_hw=(16, 16), name="c"),
                      fast_paths.DepthwiseConvShifted)


def test_resolve_fast_path():
    assert fast_paths.resolve_fast_path(None) == (jax.default_backend() == "cpu")
    assert fast_paths.resolve_fast_path(True) is True
    assert fast_paths.resolve_fast_path(False) is False
    with pytest.raises(UserError, match="fast_path"):
        fast_paths.resolve_fast_path("yes")
