"""Model registry, parameter counts, shapes, collections, fast/stock equivalence."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_grid.errors import UserError
from fedjax_grid.models import get_model, list_models
from fedjax_grid.models.mobilenet_v3 import make_divisible
from fedjax_grid.models.vgg import adaptive_avg_pool


def _abstract_variables(model, hw):
    """Variable shapes without allocating or computing anything."""
    return jax.eval_shape(
        lambda: model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)},
                           jnp.zeros((1, hw, hw, 3), jnp.float32), train=False))


def _num_params(model, hw):
    return sum(int(np.prod(a.shape)) for a in
               jax.tree.leaves(_abstract_variables(model, hw)["params"]))


@pytest.mark.parametrize("name,kw,hw,classes,expected", [
    ("vgg16", {}, 32, 10, 14_719_818),
    ("vgg16", {"head": "imagenet"}, 224, 1000, 138_357_544),
    ("vgg16", {"head": "imagenet", "norm": "batch"}, 224, 1000, 138_365_992),
    ("vgg11", {"head": "imagenet"}, 224, 1000, 132_863_336),
    ("vgg19", {"head": "imagenet"}, 224, 1000, 143_667_240),
    ("mobilenet_v3_small", {}, 224, 1000, 2_542_856),
    ("mobilenet_v3_large", {}, 224, 1000, 5_483_032),
])
def test_parameter_counts(name, kw, hw, classes, expected):
    assert _num_params(get_model(name, classes, **kw), hw) == expected


def test_list_models():
    assert list_models() == ["vgg11", "vgg13", "vgg16", "vgg19",
                             "mobilenet_v3_large", "mobilenet_v3_small"]


@pytest.mark.parametrize("name,kw,bad", [
    ("resnet50", {}, "resnet50"),
    ("vgg16", {"norm": "layer"}, "layer"),
    ("vgg16", {"head": "tiny"}, "tiny"),
    ("vgg16", {"width": 0}, "width=0"),
    ("vgg16", {"dropout_rate": 1.5}, "1.5"),
    ("vgg16", {"width_multiplier": 0.5}, "width_multiplier"),
    ("mobilenet_v3_small", {"norm": "batch"}, "norm"),
    ("mobilenet_v3_small", {"width_multiplier": -1.0}, "-1.0"),
    ("mobilenet_v3_small", {"fast_path": "on"}, "on"),
])
def test_bad_name_or_option_raises_user_error(name, kw, bad):
    with pytest.raises(UserError, match=bad) as info:
        get_model(name, 10, **kw)
    assert "\n" not in str(info.value)


def test_bad_num_classes():
    with pytest.raises(UserError, match="num_classes"):
        get_model("vgg11", 0)


def test_make_divisible_matches_torchvision():
    assert [make_divisible(v) for v in (16, 72 * 0.75, 88 // 4, 576 // 4, 3.0)] == \
        [16, 56, 24, 144, 8]


def test_adaptive_avg_pool_matches_torch_bins():
    x = jnp.arange(2 * 5 * 5 * 1, dtype=jnp.float32).reshape(2, 5, 5, 1)
    y = adaptive_avg_pool(x, (3, 3))
    # torch bins for 5 -> 3: [0,2), [1,4), [3,5)
    assert y.shape == (2, 3, 3, 1)
    np.testing.assert_allclose(y[0, 1, 2, 0], x[0, 1:4, 3:5, 0].mean())
    assert adaptive_avg_pool(x, (5, 5)) is x
    assert adaptive_avg_pool(jnp.ones((1, 1, 1, 2)), (7, 7)).shape == (1, 7, 7, 2)


def _init(model, hw, batch=2):
    x = jax.random.normal(jax.random.key(5), (batch, hw, hw, 3))
    variables = jax.jit(lambda x: model.init(
        {"params": jax.random.key(0), "dropout": jax.random.key(1)}, x, train=False))(x)
    return variables, x


@pytest.mark.parametrize("name,kw,collections", [
    # without a norm: the batch-norm case's layers less its statistics (-m slow)
    pytest.param("vgg11", {"width": 0.25}, {"params"}, marks=pytest.mark.slow),
    ("vgg11", {"width": 0.25, "norm": "batch"}, {"params", "batch_stats"}),
    ("vgg11", {"width": 0.25, "norm": "group"}, {"params"}),
    ("vgg11", {"width": 0.125, "head": "imagenet"}, {"params"}),
])
def test_forward_shapes_and_collections(name, kw, collections):
    model = get_model(name, 10, **kw)
    variables, x = _init(model, 32)
    assert set(variables) == collections
    has_bn = "batch_stats" in variables
    mutable = ["batch_stats"] if has_bn else False

    @jax.jit
    def forward(variables, x):
        eval_logits = model.apply(variables, x, train=False)
        train_out = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)},
                                mutable=mutable)
        return eval_logits, train_out

    logits, out = forward(variables, x)
    assert logits.shape == (2, 10) and logits.dtype == jnp.float32
    assert np.all(np.isfinite(logits))
    if has_bn:
        logits_t, updates = out
        assert set(updates) == {"batch_stats"}
        # train=True moves the running variances (init 1) towards the batch variances
        for layer, stats in updates["batch_stats"].items():
            assert not np.allclose(stats["var"], variables["batch_stats"][layer]["var"]), layer
    else:
        logits_t = out
    assert logits_t.shape == (2, 10)


def test_imagenet_head_dropout_active_only_in_training():
    model = get_model("vgg11", 10, width=0.125, head="imagenet")
    variables, x = _init(model, 32)

    @jax.jit
    def forward(variables, x):
        train = [model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(k)})
                 for k in (1, 2)]
        return train, model.apply(variables, x, train=False)

    (a, b), c = forward(variables, x)
    assert not np.allclose(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("name,kw", [
    ("vgg11", {"width": 0.25, "norm": "batch"}),
    # MobileNet's stock grouped convs take ~20 s to compile: -m slow (its fast depthwise
    # path is checked against them layer by layer in test_fast_paths.py by default)
    pytest.param("mobilenet_v3_small", {"width_multiplier": 0.5}, marks=pytest.mark.slow),
    pytest.param("mobilenet_v3_large", {"width_multiplier": 0.35}, marks=pytest.mark.slow),
])
def test_fast_and_stock_models_agree(name, kw):
    fast = get_model(name, 10, fast_path=True, **kw)
    stock = get_model(name, 10, fast_path=False, **kw)
    variables, x = _init(stock, 32)
    assert (jax.tree.map(jnp.shape, variables)
            == jax.tree.map(jnp.shape, _abstract_variables(fast, 32)))

    @jax.jit
    def forward(variables, x):
        def run(m):
            return (m.apply(variables, x, train=False),
                    m.apply(variables, x, train=True, mutable=["batch_stats"],
                            rngs={"dropout": jax.random.key(4)}))
        return run(fast), run(stock)

    (y_f, (t_f, s_f)), (y_s, (t_s, s_s)) = forward(variables, x)
    assert set(variables) == {"params", "batch_stats"} and set(s_f) == {"batch_stats"}
    assert y_f.shape == t_f.shape == (2, 10)
    for layer, stats in s_f["batch_stats"].items():
        assert not np.allclose(stats["var"], variables["batch_stats"][layer]["var"]), layer
    np.testing.assert_allclose(y_f, y_s, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(t_f, t_s, rtol=1e-4, atol=1e-5)
    for a, b in zip(jax.tree.leaves(s_f), jax.tree.leaves(s_s)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
