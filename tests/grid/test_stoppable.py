"""Work that a Stop abandons (runner.stoppable): the caller is free at once, even while
the work is inside one long call, and the work ends at its next check."""
import threading
import time

import pytest

from fedjax_grid.errors import UserError
from fedjax_grid.grid.records import Records
from fedjax_grid.runner.stoppable import Abandoned, run_stoppable


def test_stop_abandons_work_inside_a_long_call_and_the_work_ends_at_its_next_check():
    stop, ended, checks = threading.Event(), threading.Event(), []

    def work(check):
        try:
            for _ in range(100):
                check()
                checks.append(1)
                time.sleep(0.3)   # one long call (a batch, a compilation) the caller does not wait for
        finally:
            ended.set()
        return "finished"

    threading.Timer(0.4, stop.set).start()
    t0 = time.perf_counter()
    with pytest.raises(Abandoned):
        run_stoppable(work, stop.is_set, poll_s=0.02)
    assert time.perf_counter() - t0 < 0.4 + 0.25   # not the 30 s of the work
    assert ended.wait(2.0) and len(checks) < 5     # it stopped at its next check


def test_unstopped_work_returns_its_value_and_its_error():
    assert run_stoppable(lambda check: 41 + 1, lambda: False)[0] == 42
    with pytest.raises(ZeroDivisionError):
        run_stoppable(lambda check: 1 / 0, lambda: False)
    with pytest.raises(Abandoned):   # Stop already pressed: nothing starts
        run_stoppable(lambda check: pytest.fail("started"), lambda: True)


def test_rounds_evaluation_column_is_checked_and_updated():
    rec = Records(rounds=[{"round": 1, "evaluation": "stopped"}])
    assert rec.round_row(1)["evaluation"] == "stopped" and rec.round_row(2) is None
    rec.update_round(1, global_accuracy=0.5, evaluation="on resume")
    assert rec.rounds()["global_accuracy"].iloc[0] == 0.5
    with pytest.raises(UserError, match="evaluation 'maybe' is not known; allowed: done"):
        rec.update_round(1, evaluation="maybe")
    with pytest.raises(KeyError):
        rec.update_round(3, evaluation="done")
