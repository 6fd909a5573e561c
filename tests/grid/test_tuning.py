"""``grid.deadline_s`` / ``grid.quorum`` / ``grid.overcommit`` = 'auto' (runner.tuning).

The rules are pure and tested here with hand-made histories; one real LocalCluster run
checks that the chosen values are used, recorded in ``tuning.csv`` and that a resumed
run keeps the turnaround history (checkpoint meta ``tuning``).
"""
import math

import pandas as pd
import pytest

from fedjax_grid.errors import UserError
from fedjax_grid.runner.tuning import (
    DEADLINE_FACTOR,
    MIN_DEADLINE_S,
    GridTuner,
    Settings,
    auto_settings,
    reliability,
    stragglers,
)
from tests.grid.conftest import tiny_config

AUTO = Settings(None, 0.5, 0, auto=("deadline_s", "quorum", "overcommit"))


def test_reliability_pools_the_healthy_desktops_with_a_prior_and_ignores_spares():
    rows = ([("a", "ok", "")] * 8 + [("a", "late", "TaskTimeout: past the round deadline")] * 2
            + [("a", "late", "NotNeeded: the overcommit quota was met")] * 5
            + [("b", "failed", "WorkerLost: lost worker")] * 10)
    tasks = pd.DataFrame(rows, columns=["worker", "status", "reason"])
    assert reliability(tasks, ["a"]) == pytest.approx(10 / 12)  # spares are no fault
    assert reliability(tasks, ["a", "b"]) == pytest.approx(10 / 22)
    assert reliability(tasks, ["c"]) == pytest.approx(10 / 22)  # no task yet: everyone's
    assert reliability(tasks.iloc[:0], []) == 1.0  # nothing known: optimistic, as BOINC starts


def test_stragglers_are_desktops_far_slower_than_the_typical_one():
    assert stragglers({"a": [1.0, 1.2], "b": [1.1], "c": [6.7]}) == 1
    assert stragglers({"a": [1.0], "b": [1.9]}) == 0
    assert stragglers({"a": [1.0]}) == 0


def test_auto_settings_follow_history_reliability_and_stragglers():
    history = [[2.0, 3.0, 4.0, 9.0], [2.5, 3.5, 4.5, 10.0], [2.0, 3.0, 4.0]]
    s = auto_settings(history, n=4, num_clients=10, rho=0.8, slow=1, fixed=AUTO)
    # n-th arrival (the last when fewer came): 9, 10, 4 -> q90 = 9.8; x 1.5
    assert s.deadline_s == pytest.approx(DEADLINE_FACTOR * 9.8)
    assert s.overcommit == math.ceil(4 / 0.8) - 4 + 1 == 2
    assert s.quorum == pytest.approx(0.4)
    # capped by the clients there are; at least one update; a floor on the deadline
    s = auto_settings([[0.1]], n=4, num_clients=5, rho=0.1, slow=2, fixed=AUTO)
    assert s.overcommit == 1 and s.quorum == 0.25 and s.deadline_s == MIN_DEADLINE_S
    # no history: no deadline; fixed values stay where not 'auto'
    s = auto_settings([], n=4, num_clients=8, rho=1.0, slow=0,
                      fixed=Settings(30.0, 0.5, 0, auto=("overcommit",)))
    assert (s.deadline_s, s.quorum, s.overcommit) == (30.0, 0.5, 0)
    assert auto_settings([], n=4, num_clients=8, rho=1.0, slow=0, fixed=AUTO).deadline_s is None


def test_auto_overcommit_straggler_spares_only_go_to_idle_task_slots():
    history = [[2.0, 3.0, 4.0, 9.0]]

    def oc(rho, slow, slots):
        return auto_settings(history, n=4, num_clients=10, rho=rho, slow=slow, fixed=AUTO,
                             slots=slots).overcommit

    # a reliable grid with 2 stragglers: 2 spares when 2 slots idle, 1 with one, none
    # when the round's 4 tasks fill the 3 desktops (home profile: they would queue)
    assert oc(1.0, 2, None) == 2 and oc(1.0, 2, 6) == 2 and oc(1.0, 2, 5) == 1
    assert oc(1.0, 2, 3) == 0
    # spares for lost tasks stay, idle slots or not (a laptop leaving mid-round)
    assert oc(0.8, 0, 3) == math.ceil(4 / 0.8) - 4 == 1
    assert oc(0.8, 1, 3) == 1 and oc(0.8, 1, 5) == 2
    # a fixed overcommit is not capped
    fixed = Settings(None, 0.5, 3, auto=("deadline_s",))
    assert auto_settings(history, n=4, num_clients=10, rho=0.8, slow=1, fixed=fixed,
                         slots=3).overcommit == 3


def test_the_tuner_keeps_a_window_and_the_first_round_only_until_others_exist():
    t = GridTuner()
    t.observe_round([30.0, 20.0])  # the compiling round
    assert t.history() == [[20.0, 30.0]]
    for i in range(7):
        t.observe_round([float(i)])
    assert t.history() == [[2.0], [3.0], [4.0], [5.0], [6.0]]
    assert GridTuner(t.state()).state() == t.state()
    assert t.task_deadline() is None
    for x in (1.0, 2.0, 3.0):
        t.observe_task(x)
    assert t.task_deadline() == MIN_DEADLINE_S


@pytest.mark.parametrize("bad,allowed", [("grid.deadline_s=soon", "a finite number in [1, "),
                                         ("grid.quorum=1.5", "'auto' is required"),
                                         ("grid.overcommit=-1", "an integer in [0,")])
def test_bad_values_name_what_is_allowed(bad, allowed):
    with pytest.raises(UserError) as e:
        tiny_config().with_overrides([bad]).validate()
    assert allowed in str(e.value) and "'auto'" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.slow
def test_auto_run_uses_records_and_resumes_its_history(grid, tmp_path):
    from fedjax_grid.runner import FederatedRun
    cfg = tiny_config(**{"grid.deadline_s": "auto", "grid.quorum": "auto",
                         "grid.overcommit": "auto", "training.rounds": 3,
                         "partition.num_clients": 6, "training.clients_per_round": 4})
    out = tmp_path / "auto"
    run = FederatedRun(cfg, out_dir=out, grid=grid)
    run.run(rounds=2)
    history = run.context.tuner.state()
    run.close()
    resumed = FederatedRun(cfg, out_dir=out, grid=grid, resume=True)
    assert resumed.context.tuner.state() == history  # kept with the checkpoint
    resumed.run()
    resumed.close()
    tuning = pd.read_csv(out / "tuning.csv")
    assert list(tuning["round"]) == [1, 2, 3]
    assert pd.isna(tuning["deadline_s"].iloc[0])  # round 1: no history yet
    assert (tuning["deadline_s"].iloc[1:] >= MIN_DEADLINE_S).all()
    assert (tuning["overcommit"] >= 0).all() and (tuning["quorum"] > 0).all()
    rounds = pd.read_csv(out / "rounds.csv")
    # overcommit spares were sampled as chosen
    assert list(rounds["clients_sampled"]) == [4 + int(o) for o in tuning["overcommit"]]
    assert rounds["global_accuracy"].iloc[-1] > 0.3


def test_the_cost_estimate_takes_auto_overcommit_as_none_yet():
    from fedjax_grid.experiments.cost import tasks_per_round
    cfg = tiny_config(**{"grid.overcommit": "auto", "partition.num_clients": 6,
                         "training.clients_per_round": 4})
    assert tasks_per_round(cfg) == 4
