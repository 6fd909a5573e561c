"""The per-call key of ``AotFunction``: one program per argument signature, as jit has."""
import jax
import jax.numpy as jnp
import numpy as np

from fedjax_grid.training.compile_cache import AotFunction, call_signature, signature


def test_call_signature_tells_apart_what_jit_tells_apart():
    base = ({"w": np.zeros((2, 3), np.float32)}, jnp.zeros(4, jnp.int32))
    same = ({"w": jnp.ones((2, 3), jnp.float32)}, np.arange(4, dtype=np.int32))
    assert call_signature(base) == call_signature(same)
    assert hash(call_signature(base)) == hash(call_signature(same))
    others = [
        ({"w": np.zeros((3, 2), np.float32)}, jnp.zeros(4, jnp.int32)),      # shape
        ({"w": np.zeros((2, 3), np.float64)}, jnp.zeros(4, jnp.int32)),      # dtype
        ({"v": np.zeros((2, 3), np.float32)}, jnp.zeros(4, jnp.int32)),      # tree
        ({"w": np.zeros((2, 3), np.float32)}, jnp.zeros(4, jnp.int32), 1),   # arity
    ]
    keys = {call_signature(base)} | {call_signature(o) for o in others}
    assert len(keys) == 1 + len(others)
    weak, strong = jnp.asarray(1.0), jnp.asarray(1.0, jnp.float32)
    assert weak.weak_type and not strong.weak_type
    assert call_signature((weak,)) != call_signature((strong,))
    # the text signature (the key of a stored program) tells apart the same cases
    texts = {signature(base)} | {signature(o) for o in others}
    assert len(texts) == len(keys) and signature(base) == signature(same)


def test_one_program_per_signature_and_results_of_jit():
    f = AotFunction(jax.jit(lambda x, y: x * 2 + y), None)
    a = f(np.ones(3, np.float32), np.float32(1))
    b = f(jnp.full(3, 2.0, jnp.float32), np.float32(0))
    c = f(np.ones(4, np.float32), np.float32(1))
    assert len(f._programs) == 2
    np.testing.assert_array_equal(a, [3, 3, 3])
    np.testing.assert_array_equal(b, [4, 4, 4])
    assert c.shape == (4,)


def test_the_stored_programs_key_text_keeps_its_form():
    """Programs on disk are named by this text: a change of form would orphan every cache."""
    assert signature(({"w": np.zeros((2, 3), np.float32)}, jnp.asarray(1.0), 3)) == (
        "PyTreeDef(({'w': *}, *, *))",
        (((2, 3), "float32", False), ((), "float32", True), ((), "int64", False)))
