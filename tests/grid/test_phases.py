"""The coordinator's per-phase timing of synchronous rounds (profile.csv)."""
import pandas as pd

from fedjax_grid.grid.phases import PHASES, PhaseClock
from fedjax_grid.runner import FederatedRun
from tests.grid.conftest import tiny_config


def test_phase_clock_charges_laps_and_moves():
    clock = PhaseClock()
    clock.lap("wait")
    clock.seconds["wait"] = 2.0
    clock.move(0.5, "wait", "fold")
    assert clock.seconds["wait"] == 1.5 and clock.seconds["fold"] == 0.5
    assert list(clock.seconds) == list(PHASES)


def test_rounds_are_profiled_by_phase(grid, tmp_path):
    run = FederatedRun(tiny_config(**{"training.rounds": 2}), out_dir=tmp_path / "p", grid=grid)
    try:
        run.run()
    finally:
        run.close()
    prof = pd.read_csv(tmp_path / "p" / "profile.csv")
    assert list(prof["round"]) == [1, 2] and set(PHASES) <= set(prof.columns)
    assert (prof[list(PHASES)] >= 0).all().all()
    assert (prof["wait"] > 0).all() and (prof["eval"] > 0).all() and (prof["tasks"] == 4).all()
    rounds = run.records.rounds()
    # every phase but the records (timed after the row) lies within the round's wall time,
    # round_time_s + compile_s (round_time_s leaves compilation out)
    inside = prof[[p for p in PHASES if p != "records"]].sum(axis=1).to_numpy()
    wall = (rounds["round_time_s"] + rounds["compile_s"]).to_numpy()
    assert (inside <= wall + 0.05).all(), (inside, wall)
