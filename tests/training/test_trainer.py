"""local_train / evaluate / init_variables with real JAX compilation on tiny CNNs (16x16 images)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from training_models import PlainCNN, TinyCNN

from fedjax_grid.data.base import ArrayDataset, DatasetInfo
from fedjax_grid.errors import UserError
from fedjax_grid.training import (HParams, Standardize, compile_count, evaluate, init_variables,
                                  local_train, random_crop_flip)

SHAPE = (16, 16, 3)


def _data(n, seed=0, classes=10):
    rs = np.random.RandomState(seed)
    return rs.randint(0, 256, (n,) + SHAPE).astype(np.uint8), rs.randint(0, classes, n).astype(np.int32)


def _tree_equal(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture(scope="module")
def tiny():
    model = TinyCNN()
    return model, init_variables(model, SHAPE, 0)


def test_flax_modules_are_hashable_cache_keys():
    assert TinyCNN() == TinyCNN() and hash(TinyCNN()) == hash(TinyCNN())
    assert TinyCNN(features=4) != TinyCNN()


def test_init_variables_shapes_and_cache(tiny):
    model, variables = tiny
    assert set(variables) == {"params", "batch_stats"}
    assert variables["params"]["Dense_0"]["kernel"].shape == (8, 10)
    before = compile_count()
    again = init_variables(model, (1,) + SHAPE, 0)
    assert compile_count() == before
    assert _tree_equal(variables, again)
    with pytest.raises(UserError):
        init_variables(model, (16, 16), 0)


def test_second_client_compiles_nothing_new(tiny):
    model, variables = tiny
    hp = HParams(optimizer="momentum", learning_rate=0.05, batch_size=16, epochs=2)
    local_train(model, variables, _data(40, seed=1), hp, 1)  # 40 = 2*16 + 8
    evaluate(model, variables, _data(20, seed=1), 16)
    before = compile_count()
    # other data, another partial-batch length (37 = 2*16 + 5), another lr, epochs, mu, seed
    hp2 = HParams(optimizer="momentum", learning_rate=0.01, momentum=0.5, batch_size=16,
                  epochs=3, prox_mu=0.1, weight_decay=1e-4)
    new_vars, metrics = local_train(model, variables, _data(37, seed=2), hp2, 7)
    evaluate(model, new_vars, _data(9, seed=3), 16)
    assert compile_count() == before
    assert metrics["num_examples"] == 37 and metrics["num_steps"] == 9
    assert np.isfinite(metrics["loss"]) and 0.0 <= metrics["accuracy"] <= 1.0
    assert isinstance(metrics["loss"], float) and isinstance(metrics["num_steps"], int)


def test_same_seed_is_bitwise_deterministic(tiny):
    model, variables = tiny
    hp = HParams(optimizer="adam", learning_rate=1e-2, batch_size=8, epochs=2, augment=True)
    data = _data(21)
    a, ma = local_train(model, variables, data, hp, 3)
    b, mb = local_train(model, variables, data, hp, 3)
    c, _ = local_train(model, variables, data, hp, 4)
    assert _tree_equal(a, b) and ma == mb
    assert not _tree_equal(a, c)
    assert not _tree_equal(a["batch_stats"], variables["batch_stats"])  # BN stats were updated


def test_padding_rows_do_not_change_the_step():
    """One SGD step on 5 real rows padded to 16 equals one step on a batch of exactly 5."""
    model = PlainCNN()
    variables = init_variables(model, SHAPE, 0)
    data = _data(5, seed=5)
    padded, m1 = local_train(model, variables, data, HParams(learning_rate=0.5, batch_size=16), 0)
    exact, m2 = local_train(model, variables, data, HParams(learning_rate=0.5, batch_size=5), 0)
    for x, y in zip(jax.tree.leaves(padded), jax.tree.leaves(exact)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    assert m1["num_steps"] == m2["num_steps"] == 1
    np.testing.assert_allclose(m1["loss"], m2["loss"], rtol=1e-5)
    assert not _tree_equal(padded, variables)


def test_sgd_step_matches_hand_computed_gradient():
    model = PlainCNN()
    variables = init_variables(model, SHAPE, 1)
    images, labels = _data(6, seed=6)
    new, metrics = local_train(model, variables, (images, labels),
                               HParams(learning_rate=0.1, batch_size=8), 0)
    x = Standardize()(jnp.asarray(images))

    def loss(p):
        logits = model.apply({"params": p}, x, train=True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    value, grads = jax.value_and_grad(loss)(variables["params"])
    expected = jax.tree.map(lambda p, g: p - 0.1 * g, variables["params"], grads)
    for x_, y_ in zip(jax.tree.leaves(new["params"]), jax.tree.leaves(expected)):
        np.testing.assert_allclose(x_, y_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["loss"], float(value), rtol=1e-5)


def test_evaluate_matches_direct_apply(tiny):
    model, variables = tiny
    images, labels = _data(11, seed=8)
    result = evaluate(model, variables, (images, labels), 4)
    logits = model.apply(variables, Standardize()(jnp.asarray(images)), train=False)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    assert result["num_examples"] == 11
    np.testing.assert_allclose(result["loss"], float(ce.mean()), rtol=1e-5)
    np.testing.assert_allclose(result["accuracy"], float((logits.argmax(-1) == labels).mean()))


def test_dataset_with_indices_equals_array_subset(tiny):
    model, variables = tiny
    images, labels = _data(30, seed=9)
    info = DatasetInfo("toy", 10, tuple(map(str, range(10))), SHAPE, {"train": 30})
    ds = ArrayDataset(images, labels, info)
    idx = np.array([3, 17, 4, 29, 0, 11, 8, 21, 5, 2, 13])
    hp = HParams(batch_size=4, epochs=1)
    a, ma = local_train(model, variables, ds, hp, 0, indices=idx)
    b, mb = local_train(model, variables, (images[idx], labels[idx]), hp, 0)
    assert _tree_equal(a, b) and ma == mb
    assert evaluate(model, a, ds, 8, indices=idx) == evaluate(model, b, (images[idx], labels[idx]), 8)


def test_fedprox_keeps_params_near_anchor(tiny):
    model, variables = tiny
    data = _data(32, seed=10)
    hp = dict(optimizer="sgd", learning_rate=0.1, batch_size=8, epochs=2)

    def dist(p):
        return sum(float(jnp.sum((a - b) ** 2)) for a, b in
                   zip(jax.tree.leaves(p["params"]), jax.tree.leaves(variables["params"])))

    free, _ = local_train(model, variables, data, HParams(**hp), 0)
    prox, _ = local_train(model, variables, data, HParams(prox_mu=5.0, **hp), 0)
    assert dist(prox) < 0.7 * dist(free)
    # an explicit anchor equal to the start equals the default anchor
    same, _ = local_train(model, variables, data, HParams(prox_mu=5.0, **hp), 0,
                          anchor_params=variables["params"])
    assert _tree_equal(same, prox)
    with pytest.raises(UserError):
        local_train(model, variables, data, HParams(prox_mu=1.0, **hp), 0, anchor_params={"x": 1})


def test_float_images_and_empty_client(tiny):
    model, variables = tiny
    images, labels = _data(10)
    out, metrics = local_train(model, variables, (images.astype(np.float32) / 255.0, labels),
                               HParams(batch_size=4), 0)
    assert metrics["num_steps"] == 3 and np.isfinite(metrics["loss"])
    same, metrics = local_train(model, variables, (images[:0], labels[:0]), HParams(), 0)
    assert same is variables and metrics["num_examples"] == 0 and metrics["num_steps"] == 0
    assert evaluate(model, variables, (images[:0], labels[:0]), 4)["num_examples"] == 0


def test_bad_arguments(tiny):
    model, variables = tiny
    with pytest.raises(UserError):
        local_train(model, variables, _data(4), {"batch_size": 4}, 0)
    with pytest.raises(UserError):
        local_train(model, variables["params"], _data(4), HParams(), 0)
    with pytest.raises(UserError):
        evaluate(model, variables, _data(4), 0)


def test_random_crop_flip_moves_pixels_but_keeps_shape():
    x = jnp.arange(2 * 8 * 8 * 1, dtype=jnp.float32).reshape(2, 8, 8, 1) + 1
    outs = [random_crop_flip(jax.random.PRNGKey(i), x) for i in range(6)]
    assert all(o.shape == x.shape for o in outs)
    assert any(not np.array_equal(o, x) for o in outs)
    for o in outs:  # every output value is an input value of the same image, or zero padding
        for i in range(2):
            assert set(np.asarray(o[i]).ravel()) <= set(np.asarray(x[i]).ravel()) | {0.0}


def test_typed_and_raw_keys_are_accepted(tiny):
    model, variables = tiny
    data = _data(12, seed=11)
    hp = HParams(batch_size=8)
    a, _ = local_train(model, variables, data, hp, jax.random.key(3))
    b, _ = local_train(model, variables, data, hp, jax.random.key(3))
    c, _ = local_train(model, variables, data, hp, jax.random.PRNGKey(3))
    d, _ = local_train(model, variables, data, hp, 3)
    assert _tree_equal(a, b) and _tree_equal(c, d)


def test_aot_description_with_an_address_is_not_persisted():
    from fedjax_grid.training.compile_cache import AotFunction
    f = AotFunction(jax.jit(lambda x: x + 1), "model with <function f at 0x7f00>")
    assert f.description is None
    assert int(f(np.int32(1))) == 2
