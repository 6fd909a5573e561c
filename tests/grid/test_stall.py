"""A run that folds no update stops with one line naming the cause (issue 23 item 5).

Real LocalCluster workers whose every update is corrupted (``faults.error_prob=1``: a
NaN update, rejected by validation): no round applies an update, and the run stops after
``grid.max_rounds_without_update`` rounds (sync) or that many x K task outcomes (async)
with ``RunStalled`` -- records and checkpoint written first -- instead of ending "done"
at chance accuracy.
"""
import subprocess
import sys

import pandas as pd
import pytest

from fedjax_grid.errors import RunStalled
from fedjax_grid.runner.stall import stall_message, stalled_rounds
from tests.grid.conftest import tiny_config

BROKEN = {"faults.enabled": "true", "faults.error_prob": "1.0",
          "grid.max_rounds_without_update": "2", "training.rounds": "5"}


def test_stalled_rounds_counts_the_tail_only():
    rows = [{"quorum": q} for q in (True, False, False)]
    assert stalled_rounds(rows, 2) and not stalled_rounds(rows, 3) and not stalled_rounds(rows, 0)
    assert not stalled_rounds(rows + [{"quorum": True}], 2)


def test_stall_message_is_one_line_naming_the_cause_and_the_workers():
    rows = ([{"status": "late", "reason": "TaskTimeout: result not fetched in time: x",
              "worker_name": "desk0"}] * 5
            + [{"status": "failed", "reason": "WorkerLost: lost worker", "worker_name": "desk1"}])
    msg = stall_message(rows, n=3, unit="rounds in a row", done=3)
    assert "\n" not in msg
    assert "no update folded in 3 rounds in a row" in msg and "grid.max_rounds_without_update=3" in msg
    assert "1 failed, 5 late" in msg and "(5x) 'TaskTimeout: result not fetched in time: x' on desk0" in msg
    assert "--resume" in msg


def test_sync_run_that_folds_nothing_stops_after_n_rounds(grid, tmp_path):
    from fedjax_grid.runner import FederatedRun
    run = FederatedRun(tiny_config(**BROKEN), out_dir=tmp_path / "r", grid=grid)
    with pytest.raises(RunStalled) as e:
        run.run()
    run.close()
    assert "no update folded in 2 rounds in a row" in str(e.value) and "rejected" in str(e.value)
    rounds = pd.read_csv(tmp_path / "r" / "rounds.csv")
    assert list(rounds["round"]) == [1, 2] and not rounds["quorum"].any()
    assert (tmp_path / "r" / "checkpoints").is_dir()  # resumable once the cause is fixed


def test_async_run_that_folds_nothing_stops_after_n_times_k_outcomes(grid, tmp_path):
    from fedjax_grid.runner import FederatedRun
    cfg = tiny_config(**BROKEN, **{"server.mode": "async", "server.concurrency": "2"})
    run = FederatedRun(cfg, out_dir=tmp_path / "a", grid=grid)
    with pytest.raises(RunStalled) as e:
        run.run()
    run.close()
    assert "no update folded in 2 x 2 task outcomes in a row" in str(e.value)
    tasks = pd.read_csv(tmp_path / "a" / "tasks.csv")
    assert len(tasks) >= 4 and (tasks["status"] != "ok").all()  # recorded before stopping


@pytest.mark.slow
def test_cli_exits_3_with_one_line(tmp_path):
    sets = [a for k, v in BROKEN.items() for a in ("--set", f"{k}={v}")]
    r = subprocess.run([sys.executable, "-m", "fedjax_grid.cli", "run", "--preset", "quickstart",
                        "--out", str(tmp_path / "c"), "--quiet", "--no-plots", "--workers", "1",
                        "--set", "model.kwargs={width: 0.125, norm: batch, head: cifar}", *sets],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 3, r.stderr[-2000:]
    err = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "no update folded in 2 rounds in a row" in err[0], r.stderr[-2000:]
