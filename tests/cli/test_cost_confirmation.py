"""``fedjax-grid run`` shows the run's cost first and asks before a long one: the estimate
line, --yes, the one-line refusal without a terminal (exit 2), an answer of no (exit 1)."""
import re

import pytest

from fedjax_grid.cli import main
from tests.cli.test_run_command import sets


@pytest.fixture
def low_threshold(monkeypatch):
    """Every run counts as long: the threshold is 0.001 s."""
    monkeypatch.setenv("FEDJAX_GRID_CONFIRM_ABOVE_S", "0.001")


def test_long_run_without_a_terminal_is_refused_in_one_line(tmp_path, monkeypatch, capsys,
                                                            low_threshold):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["run", *sets("training.rounds=2"), "--out", "r"]) == 2
    cap = capsys.readouterr()
    assert re.fullmatch(r"error: quickstart is estimated at \d+ (s|min) of wall time, above 0 s: "
                        r"not started without confirmation; pass --yes to start it, or make it "
                        r"smaller \(e\.g\. --set training\.rounds=N\)\n", cap.err), cap.err
    assert "estimate: " in cap.out                           # the estimate was shown first
    assert not (tmp_path / "r" / "checkpoints").exists()     # nothing started


@pytest.mark.slow
def test_answering_no_starts_nothing_and_yes_skips_the_question(tmp_path, monkeypatch, capsys,
                                                                low_threshold, grid):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    asked = []
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or "n")
    assert main(["run", *sets("training.rounds=2"), "--out", "r"]) == 1
    assert asked and asked[0].endswith("Start it? [y/N] ") and "estimated at" in asked[0]
    assert "not started" in capsys.readouterr().out
    assert not (tmp_path / "r" / "checkpoints").exists()
    asked.clear()
    addr = grid.client.scheduler.address
    assert main(["run", *sets("training.rounds=1"), "--out", "r", "--yes", "--quiet",
                 "--scheduler", addr]) == 0
    assert asked == [] and (tmp_path / "r" / "checkpoints").is_dir()
