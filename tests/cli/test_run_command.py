"""``fedjax-grid run`` on a real LocalCluster (reached with --scheduler): resume, per-run
folders, start-up stages, Ctrl-C, the summary, file permissions."""
import os
import re

import pandas as pd
import pytest

from fedjax_grid.cli import main
from fedjax_grid.grid import run_dirs
from fedjax_grid.runner import engine

TINY = ["model.kwargs={width: 0.125, norm: batch, head: cifar}", "data.max_test_examples=256",
        "grid.workers=2"]


def sets(*extra):
    return [a for s in (*TINY, *extra) for a in ("--set", s)]


@pytest.fixture
def addr(grid):
    return grid.client.scheduler.address


def _interrupt_on_call(monkeypatch, n):
    """FederatedRun.step raises KeyboardInterrupt (as Ctrl-C would) on its n-th call."""
    real, calls = engine.FederatedRun.step, []

    def step(self, **kw):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(self, **kw)
    monkeypatch.setattr(engine.FederatedRun, "step", step)


@pytest.mark.slow
def test_ctrl_c_then_resume_uses_the_runs_own_config(addr, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _interrupt_on_call(monkeypatch, 2)
    assert main(["run", *sets("training.rounds=3"), "--scheduler", addr, "--out", "r"]) == 130
    cap = capsys.readouterr()
    err, log = cap.err, cap.out
    # The start-up stages (stdout), each with its time, before the bar; the first round compiles.
    for stage in (r"loading and partitioning digits \(4 clients, iid\) \.\.\. \d+\.\d s",
                  r"building vgg11 and the server state \.\.\. \d+\.\d s",
                  r"connecting to the Dask scheduler tcp://127\.0\.0\.1:\d+ \.\.\. \d+\.\d s \(2 workers\)",
                  r"round 1/3: compiling the model on the workers and training \.\.\. \d+\.\d s"):
        assert re.search(stage, log), log
    assert log.index("round 1/3: compiling") < len(log) and "round 1/3" in err  # then the bar
    # Before the grid: a training step measured, the estimate printed (below the threshold).
    assert re.search(r"measuring a training step of vgg11 to estimate the run \.\.\. \d+\.\d s "
                     r"\(\d+\.\d ms per step\)", log), log
    assert re.search(r"estimate: \d+ (s|min) wall time \(\d+ (s|min) compile \+ 3 rounds x ", log), log
    assert log.index("estimate:") < log.index("connecting to the Dask scheduler")
    assert "\ninterrupted after round 1 of 3; continue with: fedjax-grid run --resume --out r\n" in err
    # Ctrl-C writes the figures of the rounds done too.
    assert (tmp_path / "r" / "global_accuracy.png").stat().st_size > 5000
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)

    # What the message says works, although the run is not the quickstart preset's model.
    assert main(["run", "--resume", "--out", "r", "--scheduler", addr, "--quiet", "--no-plots"]) == 0
    assert list(pd.read_csv(tmp_path / "r" / "rounds.csv")["round"]) == [1, 2, 3]
    out = capsys.readouterr().out
    assert "round 3/3, final global accuracy" in out and "%" in out

    # A conflicting --preset / --config / --set is refused in one line, exit 2.
    for extra in (["--preset", "quickstart"], ["--set", "partition.num_clients=5"],
                  ["--config", str(tmp_path / "r" / "config.json"), "--set", "training.lr=0.5"]):
        assert main(["run", "--resume", "--out", "r", *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "conflicts" in err, err
    # ... while more rounds (not part of the experiment's fingerprint) are allowed.
    assert main(["run", "--resume", "--out", "r", "--set", "training.rounds=4",
                 "--scheduler", addr, "--quiet", "--no-plots"]) == 0
    assert list(pd.read_csv(tmp_path / "r" / "rounds.csv")["round"]) == [1, 2, 3, 4]
    capsys.readouterr()
    # Resuming the finished run says so and what it reached; it starts nothing (no grid).
    assert main(["run", "--resume", "--out", "r", "--scheduler", "tcp://127.0.0.1:9"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"is finished: 4/4 rounds, final global accuracy \d+\.\d % \(best \d+\.\d %\); "
                     r"nothing to resume in r -- to continue it, raise training\.rounds", out), out
    assert "connecting to the Dask scheduler" not in out


@pytest.mark.slow
def test_same_command_twice_two_folders_latest_and_summary(addr, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    old = os.umask(0o022)
    try:
        argv = ["run", *sets("training.rounds=1"), "--scheduler", addr, "--quiet"]
        assert main(argv) == 0
        first = capsys.readouterr().out
        assert main(argv) == 0
        second = capsys.readouterr().out
    finally:
        os.umask(old)
    runs = sorted(p for p in (tmp_path / "runs" / "quickstart").iterdir() if p.name != "latest")
    assert len(runs) == 2 and all(re.fullmatch(r"\d{8}-\d{6}(-\d+)?", p.name) for p in runs)
    latest = run_dirs.latest_run_dir("quickstart", tmp_path / "runs")
    assert latest is not None and latest.resolve() == runs[-1].resolve()
    for text, folder in ((first, runs[0]), (second, runs[1])):
        assert f"output folder: {folder.resolve()}\n" in text  # absolute
        assert re.search(r"records: +config\.json participation\.csv profile\.csv rounds\.csv "
                         r"rounds\.parquet tasks\.csv tasks\.parquet tuning\.csv workers\.csv "
                         r"workers\.parquet\n", text), text
        assert re.search(r"plots: +global_accuracy\.png local_loss\.png", text), text
        assert "checkpoints/ckpt-000001.npz" in text
    # PNGs and CSVs get the same permissions (0666 minus the umask), not mkstemp's 0600.
    modes = {p.name: p.stat().st_mode & 0o777 for p in runs[1].iterdir() if p.is_file()}
    assert modes["global_accuracy.png"] == modes["rounds.csv"] == 0o644, modes

    # --resume without --out continues runs/quickstart/latest.
    assert main(["run", "--resume", *sets("training.rounds=2"), "--scheduler", addr,
                 "--quiet", "--no-plots"]) == 0
    assert list(pd.read_csv(runs[1] / "rounds.csv")["round"]) == [1, 2]
    assert list(pd.read_csv(runs[0] / "rounds.csv")["round"]) == [1]
