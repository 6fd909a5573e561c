"""bf16 compute (models.precision): bf16 operands, float32 accumulation, f32 weights.

Reference for every bf16 kernel: the float32 computation on operands rounded to
bfloat16 -- equal up to float32 summation order (the products of two bf16 numbers are
exact in float32). Gradients that pass the output gradient through bf16 are compared
with a tolerance of a few bf16 ulps (2**-8 relative).
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from fedjax_grid.errors import UserError
from fedjax_grid.models import fast_paths, get_model
from fedjax_grid.models.precision import (
    PRECISIONS,
    bf16_conv,
    bf16_dot_general,
    check_precision,
    with_precision,
)

BF16_REL = 2.0 ** -7  # two bf16 ulps, relative to the largest magnitude


def _round(a):
    return a.astype(jnp.bfloat16).astype(jnp.float32)


def _rel(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


def _normal(key, shape):
    return jax.random.normal(jax.random.key(key), shape, jnp.float32)


def test_bf16_dot_general_forward_and_gradients():
    x, w, g = _normal(0, (3, 5, 64)), _normal(1, (64, 7)), _normal(2, (3, 5, 7))
    dims = (((2,), (0,)), ((), ()))
    y, vjp = jax.vjp(lambda x, w: bf16_dot_general(x, w, dims), x, w)
    assert y.dtype == jnp.float32 and y.shape == (3, 5, 7)
    np.testing.assert_allclose(y, _round(x) @ _round(w), rtol=1e-5, atol=1e-5)
    dx, dw = vjp(g)
    assert dx.dtype == dw.dtype == jnp.float32
    # the gradients are bf16-operand dots of the rounded output gradient
    np.testing.assert_allclose(dx, _round(g) @ _round(w).T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw, jnp.einsum("abk,abn->kn", _round(x), _round(g)),
                               rtol=1e-5, atol=1e-4)
    assert _rel(dx, g @ w.T) < BF16_REL


def test_bf16_dot_general_refuses_other_contractions():
    with pytest.raises(UserError, match="dimension_numbers"):
        bf16_dot_general(jnp.ones((4, 3)), jnp.ones((4, 2)), (((0,), (0,)), ((), ())))


@pytest.mark.parametrize("hw,cin,cout,k,pads", [
    (8, 16, 24, 3, ((1, 1), (1, 1))),   # VGG's 3x3 'same'
    # the default run keeps VGG's case and the cropped gradient; the rest: -m slow
    pytest.param(5, 8, 8, 3, ((0, 2), (1, 0)), marks=pytest.mark.slow),     # asymmetric
    pytest.param(6, 8, 4, 1, ((0, 0), (0, 0)), marks=pytest.mark.slow),     # 1x1
    pytest.param(7, 4, 4, 5, ((2, 2), (2, 2)), marks=pytest.mark.slow),     # 5x5 (MobileNet)
    (2, 4, 4, 3, ((3, 3), (3, 3))),     # padding beyond the kernel: the gradient crops
])
def test_bf16_conv_matches_f32_conv_on_rounded_operands(hw, cin, cout, k, pads):
    x, kernel = _normal(0, (2, hw, hw, cin)), _normal(1, (k, k, cin, cout))

    def ref(x, kernel):
        return lax.conv_general_dilated(x, kernel, (1, 1), pads,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    y, vjp = jax.vjp(lambda x, k: bf16_conv(x, k, pads), x, kernel)
    y_ref, vjp_ref = jax.vjp(ref, x, kernel)
    assert y.shape == y_ref.shape and y.dtype == jnp.float32
    np.testing.assert_allclose(y, ref(_round(x), _round(kernel)), rtol=1e-5, atol=1e-5)
    g = _normal(2, y.shape)
    (dx, dk), (dx_ref, dk_ref) = vjp(g), vjp_ref(g)
    # input gradient: the same bf16 conv of the output gradient (flipped kernel)
    np.testing.assert_allclose(dx, jax.vjp(lambda x: ref(x, _round(kernel)), x)[1](_round(g))[0],
                               rtol=1e-5, atol=1e-5)
    assert _rel(dx, dx_ref) < BF16_REL
    # kernel gradient: XLA's float32 one, exactly
    np.testing.assert_array_equal(dk, dk_ref)


def test_check_and_with_precision():
    assert PRECISIONS == ("f32", "bf16")
    assert check_precision("bf16") == "bf16"
    with pytest.raises(UserError, match="precision 'fp16' is not one of f32, bf16"):
        check_precision("fp16")
    model = get_model("vgg11", 10, width=0.25)
    assert with_precision(model, "f32") is model
    bf = with_precision(model, "bf16")
    assert bf.precision == "bf16" and bf.width == 0.25 and model.precision == "f32"
    assert hash(bf) == hash(with_precision(model, "bf16"))  # one compiled step per precision
    with pytest.raises(UserError, match="model Dense has no 'precision' field"):
        with_precision(nn.Dense(3), "bf16")
    assert with_precision(nn.Dense(3), "f32") == nn.Dense(3)


def test_fast_path_selection_in_bf16():
    conv = fast_paths.conv2d(4, 3, fast=True, in_hw=(8, 8), name="c", bf16=True)
    assert isinstance(conv, fast_paths.Conv3x3Patches) and conv.bf16
    assert isinstance(fast_paths.conv2d(4, 3, fast=True, in_hw=(8, 8), name="c"), nn.Conv)
    big = fast_paths.conv2d(4, 3, fast=True, in_hw=(32, 32), name="c", bf16=True)
    assert isinstance(big, nn.Conv) and big.dtype is None  # float32 on large maps
    one = fast_paths.conv2d(4, 1, fast=True, in_hw=(32, 32), name="c", bf16=True)
    assert isinstance(one, fast_paths.Conv3x3Patches) and one.bf16
    stock = fast_paths.conv2d(4, 3, fast=False, in_hw=(8, 8), name="c", dtype=jnp.bfloat16)
    assert isinstance(stock, nn.Conv) and stock.dtype == jnp.bfloat16


@pytest.mark.parametrize("fast", [True, pytest.param(False, marks=pytest.mark.slow)])  # stock: -m slow
@pytest.mark.parametrize("name,kw,hw", [
    ("vgg11", {"width": 0.25, "norm": "batch"}, 32),
    pytest.param("mobilenet_v3_small", {"width_multiplier": 0.5}, 32,
                 marks=pytest.mark.slow),  # ~3 min per path on 2 cores
])
def test_models_in_bf16_keep_f32_state_and_agree_with_f32(name, kw, hw, fast):
    model = get_model(name, 10, fast_path=fast, **kw)
    x = jax.random.uniform(jax.random.key(0), (4, hw, hw, 3))
    variables = jax.jit(lambda x: model.init({"params": jax.random.key(1),
                                              "dropout": jax.random.key(2)}, x, train=False))(x)
    bf = with_precision(model, "bf16")

    def loss(m, params):
        out, new = m.apply({**variables, "params": params}, x, train=True,
                           rngs={"dropout": jax.random.key(3)}, mutable=["batch_stats"])
        return jnp.mean(out.astype(jnp.float32) ** 2), (out, new)
    # jitted: op by op this compiled ~520 programs (50 s with a cold compilation cache)
    (l32, (y32, s32)), g32 = jax.jit(jax.value_and_grad(lambda p: loss(model, p),
                                                         has_aux=True))(variables["params"])
    (l16, (y16, s16)), g16 = jax.jit(jax.value_and_grad(lambda p: loss(bf, p),
                                                         has_aux=True))(variables["params"])
    assert {a.dtype for a in jax.tree.leaves((g16, s16))} == {jnp.dtype("float32")}
    # fast path: bf16 only in the dots; stock path: bf16 activations through every layer
    # (measured 0.057 on MobileNetV3-Small's 11 blocks)
    assert _rel(y16.astype(jnp.float32), y32) < (0.05 if fast else 0.1)
    for a, b in zip(jax.tree.leaves(s16), jax.tree.leaves(s32)):  # BN statistics
        np.testing.assert_allclose(a, b, rtol=0.05, atol=0.02)
    flat16, flat32 = jax.tree.leaves(g16), jax.tree.leaves(g32)
    cos = sum(float(jnp.vdot(a, b)) for a, b in zip(flat16, flat32)) / np.sqrt(
        sum(float(jnp.vdot(a, a)) for a in flat16) * sum(float(jnp.vdot(b, b)) for b in flat32))
    # stock path: bf16 activations through every layer (measured cos 0.928 on MobileNetV3-Small)
    assert cos > (0.99 if fast else 0.9), cos
    if fast:  # bf16 is a compute policy only: a bf16 model's variables are an f32 model's
        assert jax.tree.map(jnp.shape, jax.eval_shape(
            lambda: bf.init(jax.random.key(1), x, train=False))) == \
            jax.tree.map(jnp.shape, variables)


def test_emulated_bf16_warning_names_the_cpu_workers_without_a_native_bf16_matmul():
    from fedjax_grid.models.precision import emulated_bf16_warning
    native = {"backend": "cpu", "native_bf16": True}
    emulated = {"backend": "cpu", "native_bf16": False}
    gpu = {"backend": "gpu", "native_bf16": False}
    assert emulated_bf16_warning({}) is None
    assert emulated_bf16_warning({"tcp://a:1": native, "tcp://b:2": gpu}) is None
    # a worker that failed to answer (an exception object) is no evidence either way
    assert emulated_bf16_warning({"tcp://a:1": RuntimeError("lost")}) is None
    msg = emulated_bf16_warning({"tcp://c:3": emulated, "tcp://a:1": native,
                                 "tcp://b:2": dict(emulated)})
    assert msg.startswith("training.precision=bf16 on 2 of 3 workers ")
    assert "e.g. tcp://b:2" in msg and "\n" not in msg and "f32 is the faster choice" in msg
