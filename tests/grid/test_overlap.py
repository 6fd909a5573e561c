"""grid.overlap_rounds: the next round's tasks run while the coordinator re-estimates
BatchNorm, evaluates and checkpoints -- with bitwise the same results as without."""
import numpy as np
import pandas as pd
import pytest

from fedjax_grid.runner import FederatedRun
from tests.grid.conftest import assert_same_state, tiny_config


@pytest.mark.slow
def test_overlapped_rounds_are_bitwise_the_sequential_ones_and_start_early(grid, tmp_path):
    runs = {}
    for overlap in (False, True):
        cfg = tiny_config(**{"training.rounds": 3, "grid.overlap_rounds": overlap,
                             "partition.forming": "dynamic"})
        run = FederatedRun(cfg, out_dir=tmp_path / f"overlap-{overlap}", grid=grid)
        run.run()
        run.close()
        runs[overlap] = run
    seq, ovl = runs[False], runs[True]
    assert_same_state(seq, ovl, batch_stats=True)
    cols = ["round", "global_loss", "global_accuracy", "clients_ok"]
    pd.testing.assert_frame_equal(seq.records.rounds()[cols], ovl.records.rounds()[cols])
    t_seq, t_ovl = seq.records.tasks(), ovl.records.tasks()
    np.testing.assert_array_equal(t_seq.sort_values(["round", "client"])["local_loss"],
                                  t_ovl.sort_values(["round", "client"])["local_loss"])
    # overlapped: round r+1's first task starts before round r ends (its evaluation and
    # checkpoint); sequential: only after it
    for run, early in ((ovl, True), (seq, False)):
        ends = run.records.rounds()["elapsed_s"].to_numpy()
        tasks = run.records.tasks()
        starts = tasks.groupby("round")["start_s"].min().to_numpy()
        assert ((starts[1:] < ends[:-1]).all() if early else (starts[1:] >= ends[:-1]).all())
    prof = pd.read_csv(tmp_path / "overlap-True" / "profile.csv")
    assert (prof["launch"].iloc[:-1] > 0).all() and prof["launch"].iloc[-1] == 0


@pytest.mark.slow
def test_a_run_stopped_early_leaves_no_round_in_flight_and_resumes_bitwise(grid, tmp_path):
    cfg = tiny_config(**{"training.rounds": 3})
    full = FederatedRun(cfg, out_dir=tmp_path / "full", grid=grid)
    full.run()
    full.close()
    part = FederatedRun(cfg, out_dir=tmp_path / "part", grid=grid)
    calls = []
    part.run(should_stop=lambda: len(calls) >= 2, callback=calls.append)
    assert part.round == 2 and part.policy.ahead is None   # round 3 was launched, then dropped
    part.close()
    resumed = FederatedRun(cfg, out_dir=tmp_path / "part", grid=grid, resume=True)
    resumed.run()
    resumed.close()
    assert_same_state(full, resumed)
