"""The init program is compiled at XLA's optimization level 2 (``INIT_COMPILER_OPTIONS``),
which draws the same weights, bitwise, as XLA:CPU's default level 3: a run's first weights
do not depend on it. Every registered model (slow: level 3's compile of an init takes
10-30 s here) and, in the default run, a small model of the same initializers."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_grid.models import get_model, list_models
from fedjax_grid.training import init_variables
from fedjax_grid.training.trainer import INIT_COMPILER_OPTIONS


def _init_at(model, shape, options):
    def init(rng):
        p_rng, d_rng = jax.random.split(rng)
        return model.init({"params": p_rng, "dropout": d_rng}, jnp.zeros(shape), train=False)
    compiled = jax.jit(init).lower(jax.random.key(3)).compile(options)
    return compiled(jax.random.key(3))


def _assert_bitwise(a, b):
    la, lb = jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    unequal = [jax.tree_util.keystr(p) for (p, x), y in zip(la, lb)
               if not np.array_equal(np.asarray(x), np.asarray(y))]
    assert not unequal, unequal


class _Small(nn.Module):
    """The registered models' initializers: He-normal (truncated) convolutions, BatchNorm,
    a Dense head with its default LeCun-normal kernel and zero bias."""
    @nn.compact
    def __call__(self, x, train: bool):
        init = nn.initializers.variance_scaling(2.0, "fan_out", "truncated_normal")
        x = nn.Conv(8, (3, 3), kernel_init=init)(x)  # one layer: level 3 compiles it in 2 s
        x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
        x = nn.Dropout(0.5, deterministic=not train)(jnp.mean(x, axis=(1, 2)))
        return nn.Dense(10)(x)


def test_the_init_level_draws_the_default_levels_weights_bitwise():
    shape = (1, 16, 16, 3)
    _assert_bitwise(_init_at(_Small(), shape, INIT_COMPILER_OPTIONS),
                    _init_at(_Small(), shape, None))


@pytest.mark.parametrize("persisted,hw", [(True, 16), (False, 12)])
def test_init_variables_compiles_with_the_init_options(persisted, hw, monkeypatch, tmp_path):
    """init_variables' program is compiled with INIT_COMPILER_OPTIONS, stored as a whole
    program (an empty cache folder) or not (FEDJAX_GRID_AOT=0), and gives what a plain
    jit of the same init gives."""
    from fedjax_grid.training.compile_cache import default_cache_dir, enable_persistent_cache
    seen = []
    compile_ = jax.stages.Lowered.compile
    monkeypatch.setattr(jax.stages.Lowered, "compile",
                        lambda self, *a, **k: seen.append((a, k)) or compile_(self, *a, **k))
    if persisted:
        enable_persistent_cache(tmp_path / "cache")
    else:
        monkeypatch.setenv("FEDJAX_GRID_AOT", "0")
    try:
        got = init_variables(_Small(), (hw, hw, 3), 3)
    finally:
        enable_persistent_cache(default_cache_dir())
    assert seen and all(INIT_COMPILER_OPTIONS in (*a, *k.values()) for a, k in seen), seen
    assert bool(list((tmp_path / "cache").rglob("*.pkl"))) == persisted
    _assert_bitwise(got, _init_at(_Small(), (1, hw, hw, 3), None))


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_draws_the_same_weights_at_the_init_level(name):
    kw = {"width": 0.125, "norm": "batch"} if name.startswith("vgg") else \
        {"width_multiplier": 0.5}
    model = get_model(name, 10, **kw)
    shape = (1, 32, 32, 3)
    _assert_bitwise(_init_at(model, shape, INIT_COMPILER_OPTIONS), _init_at(model, shape, None))
