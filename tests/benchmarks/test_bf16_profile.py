"""benchmarks/bf16_profile.py's op inventory: which multiply-adds of a compiled program
run as bf16 x bf16 dots, read from XLA:CPU's optimised HLO."""
import jax
import jax.numpy as jnp
import pytest

from benchmarks import bf16_profile
from fedjax_grid.models import precision


def _compiled(fn, *args) -> str:
    return jax.jit(fn).lower(*args).compile().as_text()


def test_share_counts_the_bf16_dot_and_not_the_f32_one():
    """(64, 48) . (48, 16) with bf16 operands next to (64, 16) . (16, 8) in f32:
    64*48*16 of 64*48*16 + 64*16*8 multiply-adds are bf16 ones."""
    x = jnp.ones((64, 48), jnp.float32)
    w1 = jnp.ones((48, 16), jnp.float32)
    w2 = jnp.ones((16, 8), jnp.float32)

    def f(x, w1, w2):
        h = precision.bf16_dot_general(x, w1, (((1,), (0,)), ((), ())))
        return jnp.tanh(h) @ w2

    hlo = _compiled(f, x, w1, w2)
    rows = bf16_profile.summarize(bf16_profile.inventory(hlo), bf16_profile.top_level_ops(hlo),
                                  {}, steps=1)
    low, total = bf16_profile.bf16_mac_share(rows)
    assert low * 1e9 == pytest.approx(64 * 48 * 16)
    assert total * 1e9 == pytest.approx(64 * 48 * 16 + 64 * 16 * 8)


def test_share_of_an_f32_program_is_zero():
    x = jnp.ones((32, 24), jnp.float32)
    w = jnp.ones((24, 8), jnp.float32)
    hlo = _compiled(lambda x, w: x @ w, x, w)
    rows = bf16_profile.summarize(bf16_profile.inventory(hlo), bf16_profile.top_level_ops(hlo),
                                  {}, steps=1)
    low, total = bf16_profile.bf16_mac_share(rows)
    assert low == 0 and total * 1e9 == pytest.approx(32 * 24 * 8)


def test_share_from_rows_reads_fusions_by_what_they_hold():
    rows = {"fusion[dot bf16xbf16->f32]": {"gmac": 3.0}, "dot bf16xbf16->f32": {"gmac": 1.0},
            "fusion[conv f32xf32->f32]": {"gmac": 4.0}, "conv f32xf32->f32": {"gmac": 2.0},
            "fusion with converts": {"gmac": 0.0}, "copy": {"gmac": 0.0}}
    assert bf16_profile.bf16_mac_share(rows) == (4.0, 10.0)
