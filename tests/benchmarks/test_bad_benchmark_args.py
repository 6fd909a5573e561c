"""Benchmarks refuse bad options in one line with exit code 2 (before running anything)."""
import pytest

from benchmarks import (client_tasks, cpu_bound, first_round, grid_idle_cpu, precision,
                        round_profile, thread_cpu, throughput)


@pytest.mark.parametrize("module, argv, words", [
    (cpu_bound, ["--clients", "four"], "--clients 'four' is invalid"),
    (cpu_bound, ["--short", "8", "--long", "2"], "1 <= short < long required"),
    (round_profile, ["--overlap", "maybe"], "--overlap 'maybe' is invalid: on, off or on,off"),
    (round_profile, ["--clients", "4,x"], "--clients '4,x' is invalid"),
    (precision, ["--models", "vgg17"], "--models 'vgg17' is invalid: allowed are vgg16"),
    (precision, ["--steps", "0"], "--steps and --batch must be integers >= 1"),
    (precision, ["--accuracy", "--seeds", "a"], "--seeds 'a' / --rounds 10 / --jobs 1 is invalid"),
    (precision, ["--accuracy", "--jobs", "0"], "--seeds '0,1,2' / --rounds 10 / --jobs 0 is invalid"),
    (client_tasks, ["--clients", "4,x"], "--clients '4,x'"),
    (client_tasks, ["--configs", "seq 3t/1c"], "configs among seq 1t/1c"),
    (first_round, ["--rounds", "2"], "--rounds 2 is invalid"),
    (thread_cpu, ["--clients", "four"], "--clients 'four' --rounds '14' is invalid"),
    (thread_cpu, ["--rounds", "3"], "--clients '20' --rounds '3' is invalid"),
    (grid_idle_cpu, ["--reps", "0"], "--reps '0' --seconds '20' is invalid"),
    (grid_idle_cpu, ["--seconds", "x"], "--reps '3' --seconds 'x' is invalid"),
    (throughput, ["--patches-max", "4,x"], "--patches-max '4,x' is invalid"),
    (throughput, ["--patches-max", "0"], "--patches-max '0' is invalid"),
    (throughput, ["--paths", "slow"], "--paths 'slow' is invalid"),
    (throughput, ["--models", "vgg17"], "--models 'vgg17' / --steps 5 / --batch 32 is invalid"),
])
def test_bad_option_one_line_exit_2(module, argv, words, capsys):
    assert module.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1



def test_output_folders_are_made_before_any_run(tmp_path):
    """The measurements of an 11-minute run were lost once to a --json folder that did not
    exist: every output's folder is now made before the runs."""
    from benchmarks import vs_flower
    target = tmp_path / "a" / "b" / "raw.json"
    args = vs_flower.parse_args(["--json", str(target), "--clients", "4", "--reps", "1"])
    assert args.json == str(target) and target.parent.is_dir()


@pytest.mark.parametrize("script, flag", [("client_algorithms", "--json"),
                                          ("client_algorithms", "--rows-file"),
                                          ("grid_tuning", "--csv"), ("grid_tuning", "--png"),
                                          ("modelled_vs_emulated", "--csv")])
def test_an_output_that_cannot_be_written_is_refused_before_any_run(script, flag, tmp_path,
                                                                    capsys):
    import importlib
    module = importlib.import_module(f"benchmarks.{script}")
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where the output's folder would be
    assert module.main([flag, str(blocker / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {flag} ") and "cannot be made" in err and err.count("\n") == 1


def test_vs_flower_refuses_an_unwritable_json(tmp_path, capsys):
    from benchmarks import vs_flower
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SystemExit) as e:
        vs_flower.parse_args(["--json", str(blocker / "raw.json")])
    assert e.value.code == 2 and "--json" in capsys.readouterr().err

