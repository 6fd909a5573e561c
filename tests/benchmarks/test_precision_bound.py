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

    def fake_run(seed, p, rounds, out, data, fast_path):
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


def test_accuracy_tables_give_the_final_round_and_the_last_3_rounds_mean(monkeypatch, capsys):
    curves = {("f32", 0): [0.1, 0.2, 0.3, 0.4], ("bf16", 0): [0.1, 0.1, 0.2, 0.5],
              ("f32", 1): [0.2, 0.3, 0.4, 0.5], ("bf16", 1): [0.2, 0.3, 0.3, 0.4]}
    monkeypatch.setattr(precision, "accuracy_run",
                        lambda seed, p, rounds, out, data, fast_path: curves[(p, seed)][:rounds])
    assert precision.accuracy([0, 1], 4, "digits") == 0
    out = capsys.readouterr().out
    assert "| precision | final accuracy % (mean +- sd) | per seed |" in out
    assert "| bf16 - f32 (paired) | +0.00 +- 14.14 | +10.0, -10.0 |" in out
    # last 3: f32 30.0, 40.0; bf16 26.7, 33.3 -> paired -3.3, -6.7
    assert "| precision | mean of the last 3 rounds % (mean +- sd) | per seed |" in out
    assert "| f32 | 35.00 +- 7.07 | 30.0, 40.0 |" in out
    assert "| bf16 - f32 (paired) | -5.00 +- 2.36 | -3.3, -6.7 |" in out


def _fake_cli(calls):
    """A stand-in for `fedjax_grid.cli run`: records its arguments, writes rounds.csv up to
    training.rounds (accuracy 0.01 x round, 0.5 added for bf16) and a checkpoint."""
    def run(cmd, check, stdout):
        import pathlib
        out = pathlib.Path(cmd[cmd.index("--out") + 1])
        sets = dict(a.split("=", 1) for a in cmd[1:] if "=" in a and not a.startswith("-"))
        assert "--yes" in cmd    # the CLI's estimate gate asks nobody in a benchmark
        calls.append(("--resume" in cmd, sets))
        out.mkdir(parents=True, exist_ok=True)
        bf16 = 0.5 if "bf16" in out.name else 0.0
        rounds = int(sets["training.rounds"])
        rows = ["round,global_accuracy"] + [f"{r},{0.01 * r + bf16}" for r in range(1, rounds + 1)]
        (out / "rounds.csv").write_text("\n".join(rows) + "\n")
        (out / "checkpoints").mkdir(exist_ok=True)
        (out / "checkpoints" / f"ckpt-{rounds}").write_text("")
    return run


def test_kept_runs_are_read_resumed_or_extended_never_repeated(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(precision.subprocess, "run", _fake_cli(calls))
    run_dir = tmp_path / "cifar10-f32-s0"
    assert precision.accuracy_run(0, "f32", 2, run_dir) == [0.01, 0.02]
    assert calls[-1][0] is False and calls[-1][1]["seed"] == "0"        # a fresh run
    assert calls[-1][1]["training.precision"] == "f32"
    assert precision.accuracy_run(0, "f32", 2, run_dir) == [0.01, 0.02]  # read, not re-run
    assert precision.accuracy_run(0, "f32", 1, run_dir) == [0.01]        # its first round
    assert len(calls) == 1
    assert precision.accuracy_run(0, "f32", 4, run_dir) == [0.01, 0.02, 0.03, 0.04]
    assert calls[-1] == (True, {"training.rounds": "4"})                 # extended by resume
    # a folder left by a start that reached no checkpoint starts afresh
    broken = tmp_path / "cifar10-bf16-s1"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    assert precision.accuracy_run(1, "bf16", 1, broken) == [0.51]
    assert calls[-1][0] is False and calls[-1][1]["seed"] == "1"


def test_out_that_is_a_file_is_refused_in_one_line(tmp_path, capsys):
    bad = tmp_path / "f"
    bad.write_text("x")
    assert precision.main(["--accuracy", "--out", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--out {str(bad)!r} is invalid" in err


@pytest.mark.slow  # two real CLI runs of the quickstart preset (~1 min)
def test_a_kept_run_extended_by_resume_keeps_its_first_rounds(tmp_path):
    """The real CLI: 1 round, then extended to 2 by --resume; round 1 is the same number
    and a second call with 2 rounds re-runs nothing."""
    run_dir = tmp_path / "digits-f32-s0"
    first = precision.accuracy_run(0, "f32", 1, run_dir, "digits")
    both = precision.accuracy_run(0, "f32", 2, run_dir, "digits")
    assert len(first) == 1 and len(both) == 2 and both[0] == first[0]
    mtime = (run_dir / "rounds.csv").stat().st_mtime
    assert precision.accuracy_run(0, "f32", 2, run_dir, "digits") == both
    assert (run_dir / "rounds.csv").stat().st_mtime == mtime


def test_stock_bf16_runs_are_kept_apart_and_set_flax_s_policy(monkeypatch, tmp_path, capsys):
    calls = []
    monkeypatch.setattr(precision.subprocess, "run", _fake_cli(calls))
    assert precision.accuracy([0], 3, "cifar10", out=tmp_path, bf16_path="stock") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar10-bf16-stock-s0", "cifar10-f32-s0"]
    bf16 = [sets for _, sets in calls if sets["training.precision"] == "bf16"]
    f32 = [sets for _, sets in calls if sets["training.precision"] == "f32"]
    assert bf16[0]["model.kwargs.fast_path"] == "false" and "model.kwargs.fast_path" not in f32[0]
    assert "bf16 on the stock path" in capsys.readouterr().out


def test_a_kept_folder_holding_another_run_is_refused_in_one_line(tmp_path, capsys):
    import json
    run = tmp_path / "cifar10-f32-s0"
    run.mkdir()
    (run / "rounds.csv").write_text("round,global_accuracy\n1,0.5\n")
    (run / "config.json").write_text(json.dumps({"seed": 1, "training": {"precision": "f32"},
                                                 "model": {"kwargs": {}}}))
    assert precision.main(["--accuracy", "--seeds", "0", "--rounds", "1", "--out",
                           str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds another run" in err and "(1, 'f32', None)" in err


def test_the_control_arm_runs_f32_on_the_stock_path_and_prints_its_own_tables(monkeypatch,
                                                                                tmp_path, capsys):
    """--control: a third run per seed (f32, fast_path false, its own folder), alternating
    with the others, and f32-stock - f32 paired tables below the bf16 ones."""
    final = {"f32": {3: 0.50, 4: 0.40}, "bf16": {3: 0.49, 4: 0.41}, "f32-stock": {3: 0.47, 4: 0.42}}
    calls = []

    def fake_run(seed, p, rounds, out, data, fast_path):
        calls.append((seed, out.name, p, fast_path))
        label = "f32-stock" if out.name.startswith("cifar10-f32-stock") else p
        return [0.1] * (rounds - 1) + [final[label][seed]]
    monkeypatch.setattr(precision, "accuracy_run", fake_run)
    assert precision.accuracy([3, 4], 3, "cifar10", out=tmp_path, control=True) == 0
    assert [c for c in calls if c[0] == 3] == [(3, "cifar10-f32-s3", "f32", None),
                                               (3, "cifar10-bf16-s3", "bf16", None),
                                               (3, "cifar10-f32-stock-s3", "f32", False)]
    assert [c[1] for c in calls if c[0] == 4] == ["cifar10-f32-stock-s4", "cifar10-bf16-s4",
                                                  "cifar10-f32-s4"]
    out = capsys.readouterr().out
    assert "seed 3 f32-stock: 10.0 10.0 47.0 (" in out
    assert "| bf16 - f32 (paired) | +0.00 +- 1.41 | -1.0, +1.0 |" in out
    floor = out[out.index(precision.CONTROL_NOTE):]
    assert "| f32-stock | 44.50 +- 3.54 | 47.0, 42.0 |" in floor
    assert "| f32-stock - f32 (paired) | -0.50 +- 3.54 | -3.0, +2.0 |" in floor
    assert floor.count("(paired)") == 2          # final round and the last 3 rounds


def test_without_control_there_is_no_control_table(monkeypatch, capsys):
    monkeypatch.setattr(precision, "accuracy_run",
                        lambda seed, p, rounds, out, data, fast_path: [0.5] * rounds)
    assert precision.accuracy([0], 2, "digits") == 0
    out = capsys.readouterr().out
    assert precision.CONTROL_NOTE not in out and "f32-stock" not in out
