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


@pytest.mark.parametrize("jobs", [1, 3])
def test_accuracy_table_pairs_each_seeds_runs_whatever_runs_at_once(monkeypatch, capsys, jobs):
    """Seeds run at once (``--jobs``, for a GPU host) give the same table as one at a time:
    each seed's final round in both precisions, the paired difference per seed."""
    final = {("f32", 0): 0.40, ("bf16", 0): 0.42, ("f32", 1): 0.50, ("bf16", 1): 0.45,
             ("f32", 2): 0.30, ("bf16", 2): 0.30}
    calls = []

    def fake_run(seed, p, rounds, out, data):
        calls.append((seed, p, rounds, data))
        return [0.1] * (rounds - 1) + [final[(p, seed)]]
    monkeypatch.setattr(precision, "accuracy_run", fake_run)
    assert precision.accuracy([0, 1, 2], 4, "digits", jobs=jobs) == 0
    assert sorted(calls) == sorted((s, p, 4, "digits") for p, s in final)
    for s in (0, 2):  # even positions start with f32, odd ones with bf16 (alternating)
        assert [p for seed, p, *_ in calls if seed == s] == ["f32", "bf16"]
    assert [p for seed, p, *_ in calls if seed == 1] == ["bf16", "f32"]
    out = capsys.readouterr().out
    assert f"{jobs} seed(s) at a time" in out
    assert "| f32 | 40.00 +- 10.00 | 40.0, 50.0, 30.0 |" in out
    assert "| bf16 - f32 (paired) | -1.00 +- 3.61 | +2.0, -5.0, +0.0 |" in out


def test_gpu_check_refuses_an_unknown_part_in_one_line(tmp_path):
    import pathlib
    import subprocess
    script = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"
    out = subprocess.run(["bash", str(script), "speed", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr == "error: part 'speed' is invalid: allowed are throughput, accuracy\n"
