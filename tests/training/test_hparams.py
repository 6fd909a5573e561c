import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_grid.errors import UserError
from fedjax_grid.training import OPTIMIZERS, HParams, make_optimizer


@pytest.mark.parametrize("kw", [
    dict(optimizer="rmsprop"), dict(learning_rate=0.0), dict(learning_rate=-1.0),
    dict(learning_rate=float("nan")), dict(momentum=1.0), dict(weight_decay=-0.1),
    dict(batch_size=0), dict(batch_size=2.5), dict(epochs=0), dict(prox_mu=-1.0),
    dict(grad_clip=0.0), dict(augment="yes"), dict(batch_size=True),
])
def test_invalid_hparams_raise_user_error(kw):
    with pytest.raises(UserError) as err:
        HParams(**kw)
    assert "\n" not in str(err.value)
    assert list(kw)[0] in str(err.value)


def test_hparams_frozen_and_hashable():
    hp = HParams(optimizer="adam", learning_rate=1e-3)
    assert hash(hp) == hash(HParams(optimizer="adam", learning_rate=1e-3))
    with pytest.raises(dataclasses.FrozenInstanceError):
        hp.epochs = 3
    assert hp.to_dict()["optimizer"] == "adam"


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_minimises_a_quadratic(name):
    tx = make_optimizer(HParams(optimizer=name, learning_rate=0.1))
    params = {"w": jnp.array([3.0, -2.0])}
    state = tx.init(params)
    grad_fn = jax.grad(lambda p: jnp.sum(p["w"] ** 2))
    for _ in range(100):
        updates, state = tx.update(grad_fn(params), state, params)
        params = optax.apply_updates(params, updates)
    assert float(jnp.abs(params["w"]).max()) < 0.3


def test_learning_rate_lives_in_state():
    tx = make_optimizer(HParams(learning_rate=0.5))
    params = {"w": jnp.zeros(2)}
    state = tx.init(params)
    assert np.isclose(float(state.hyperparams["learning_rate"]), 0.5)
    updates, _ = tx.update({"w": jnp.ones(2)}, state, params)
    np.testing.assert_allclose(updates["w"], [-0.5, -0.5])


def test_weight_decay_and_grad_clip():
    params = {"w": jnp.array([2.0, 0.0])}
    tx = make_optimizer(HParams(learning_rate=1.0, weight_decay=0.1))
    updates, _ = tx.update({"w": jnp.zeros(2)}, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], [-0.2, 0.0], rtol=1e-6)
    tx = make_optimizer(HParams(learning_rate=1.0, grad_clip=1.0))
    updates, _ = tx.update({"w": jnp.array([30.0, 40.0])}, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], [-0.6, -0.8], rtol=1e-6)
