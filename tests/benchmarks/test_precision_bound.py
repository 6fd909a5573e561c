"""benchmarks/precision.py's bound: a matmul alone in bf16 vs f32 on this CPU."""
import pytest

from benchmarks import precision


def test_matmul_bound_times_each_shape_in_both_precisions(monkeypatch, capsys):
    monkeypatch.setattr(precision, "MATMUL_SHAPES", ((64, 32, 16), (128, 64, 8)))
    rows = precision.matmul_bound(repeats=2)
    assert [r["shape"] for r in rows] == [(64, 32, 16), (128, 64, 8)]
    for r in rows:
        assert min(r["f32_gflops"], r["bf16_gflops"], r["kernel_gflops"]) > 0
        assert r["ratio"] == pytest.approx(r["bf16_gflops"] / r["f32_gflops"])
        assert r["kernel_ratio"] == pytest.approx(r["kernel_gflops"] / r["f32_gflops"])
    precision.print_matmul_bound(rows)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| 64 x 32 x 16 |")]
    assert len(lines) == 1 and lines[0].endswith(f"| {rows[0]['kernel_ratio']:.2f}x |")


def test_the_bf16_matmul_is_close_to_the_f32_one():
    """bf16 operands with f32 accumulation: the f32 product of the rounded operands."""
    import jax
    import jax.numpy as jnp
    a = jax.random.normal(jax.random.PRNGKey(0), (32, 48))
    b = jax.random.normal(jax.random.PRNGKey(1), (48, 8))
    out = precision._dot(a, b, True)
    assert out.dtype == jnp.float32
    rounded = jnp.dot(a.astype(jnp.bfloat16).astype(jnp.float32),
                      b.astype(jnp.bfloat16).astype(jnp.float32))
    assert jnp.allclose(out, rounded, atol=1e-4)
    assert not jnp.allclose(out, jnp.dot(a, b), atol=1e-6)
