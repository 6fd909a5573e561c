"""Benchmarks refuse bad options in one line with exit code 2 (before running anything)."""
import pytest

from benchmarks import cpu_bound, round_profile


@pytest.mark.parametrize("module, argv, words", [
    (cpu_bound, ["--clients", "four"], "--clients 'four' is invalid"),
    (cpu_bound, ["--short", "8", "--long", "2"], "1 <= short < long required"),
    (round_profile, ["--overlap", "maybe"], "--overlap 'maybe' is invalid: on, off or on,off"),
    (round_profile, ["--clients", "4,x"], "--clients '4,x' is invalid"),
])
def test_bad_option_one_line_exit_2(module, argv, words, capsys):
    assert module.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1
