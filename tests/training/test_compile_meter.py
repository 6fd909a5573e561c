"""training.compile_meter: compilation seconds per thread from JAX's own events."""
import threading
import time

import jax
import jax.numpy as jnp

from fedjax_grid.training.compile_meter import compile_seconds


def _fresh_fn(scale: float):
    """A jitted function no earlier test compiled (a new closure each call)."""
    inner = jax.jit(lambda y: jnp.tanh(y * scale) @ y.T)
    return jax.jit(lambda x: inner(x) + scale)


def test_first_call_compiles_second_does_not():
    f, x = _fresh_fn(1.5), jnp.ones((64, 64))
    c0, t0 = compile_seconds(), time.perf_counter()
    f(x).block_until_ready()
    first, wall = compile_seconds() - c0, time.perf_counter() - t0
    assert 0.0 < first <= wall          # nested jit spans count once: never more than the call
    c1 = compile_seconds()
    f(x).block_until_ready()
    assert compile_seconds() - c1 == 0.0


def test_other_threads_compile_is_not_counted_here():
    f, x = _fresh_fn(2.5), jnp.ones((32, 32))
    seen = {}

    def other():
        c = compile_seconds()
        f(x).block_until_ready()
        seen["other"] = compile_seconds() - c

    c0 = compile_seconds()
    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen["other"] > 0.0
    assert compile_seconds() - c0 == 0.0
