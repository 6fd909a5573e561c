"""local_train_many: several clients per compiled (vmapped) step, against local_train."""
import jax
import numpy as np
import pytest

from fedjax_grid.errors import UserError
from fedjax_grid.models import get_model
from fedjax_grid.training import HParams, compile_count, init_variables, local_train
from fedjax_grid.training.batched import local_train_many

#: Batched kernels add in another order than per-client ones: parameters agree to float32
#: rounding amplified by the steps, not bitwise (measured: max |difference| 1.6e-4 on a
#: parameter of 0.21 after 6 momentum steps with lr 0.05).
ATOL, RTOL = 5e-4, 2e-3


def _data(n, seed):
    rs = np.random.RandomState(seed)
    return rs.randint(0, 256, (n, 32, 32, 3)).astype(np.uint8), rs.randint(0, 10, n).astype(np.int32)


@pytest.fixture(scope="module")
def setup():
    model = get_model("vgg11", 10, width=0.125, norm="batch")
    return model, init_variables(model, (32, 32, 3), 0)


def _close(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=RTOL, atol=ATOL)


@pytest.mark.slow
def test_each_client_as_local_train_would(setup):
    model, variables = setup
    hp = HParams(optimizer="momentum", learning_rate=0.05, batch_size=16, epochs=2,
                 augment=True)
    # 40, 37, 33 examples: 3 batches an epoch each (one group); 12: 1 batch; 0: no data
    sizes = [40, 12, 37, 0, 33]
    data = [_data(n, seed) for seed, n in enumerate(sizes)]
    rngs = [jax.random.PRNGKey(10 + i) for i in range(len(sizes))]
    many = local_train_many(model, variables, data, hp, rngs)
    for (v, m), d, rng, n in zip(many, data, rngs, sizes):
        ref_v, ref_m = local_train(model, variables, d, hp, rng)
        assert m["num_examples"] == ref_m["num_examples"] == n
        assert m["num_steps"] == ref_m["num_steps"]
        if n == 0:
            assert v is variables and np.isnan(m["loss"])
            continue
        _close(v, ref_v)
        assert abs(m["loss"] - ref_m["loss"]) < 1e-4 and m["accuracy"] == ref_m["accuracy"]


def test_groups_are_padded_to_max_group_and_compile_once(setup):
    model, variables = setup
    hp = HParams(optimizer="sgd", learning_rate=0.05, batch_size=16)
    data = [_data(20, s) for s in range(3)]
    rngs = [jax.random.PRNGKey(s) for s in range(3)]
    first = local_train_many(model, variables, data[:3], hp, rngs, max_group=2)
    before = compile_count()
    again = local_train_many(model, [variables] * 1, data[:1], hp, rngs[:1], max_group=2)
    assert compile_count() == before  # a group of 1 runs the program compiled for 2
    for x, y in zip(jax.tree.leaves(first[0][0]), jax.tree.leaves(again[0][0])):
        np.testing.assert_array_equal(x, y)


def test_bad_arguments_are_one_line_errors(setup):
    model, variables = setup
    with pytest.raises(UserError, match="same clients"):
        local_train_many(model, variables, [_data(4, 0)], HParams(), [0, 1])
    with pytest.raises(UserError, match="max_group"):
        local_train_many(model, variables, [_data(4, 0)], HParams(), [0], max_group=0)
