"""Per-client participation and its warning (runner.participation, pure)."""
import pandas as pd

from fedjax_grid.runner.participation import participation, participation_warning


def _tasks(rows):
    return pd.DataFrame(rows, columns=["client", "status"])


def test_counts_every_client_including_those_that_never_ran():
    t = participation(_tasks([(0, "ok"), (0, "ok"), (1, "late"), (1, "ok"), (2, "failed")]), 4)
    assert t["client"].tolist() == [0, 1, 2, 3]
    assert t["tasks"].tolist() == [2, 2, 1, 0] and t["folded"].tolist() == [2, 1, 0, 0]
    assert t["share"].round(3).tolist() == [0.667, 0.333, 0.0, 0.0]


def test_warns_when_a_client_contributed_nothing_or_participation_is_lopsided():
    # the async runs: one client of four with none of the 16 updates
    none = participation(_tasks([(0, "ok")] * 6 + [(1, "ok")] * 5 + [(2, "ok")] * 5
                                + [(3, "late")] * 2), 4)
    w = participation_warning(none)
    assert "client(s) 3 contributed none of the 16 updates" in w and "\n" not in w
    lopsided = participation(_tasks([(0, "ok")] * 7 + [(1, "ok")] * 2), 2)
    assert "7 vs 2" in participation_warning(lopsided)
    fair = participation(_tasks([(0, "ok")] * 3 + [(1, "ok")] * 2), 2)
    assert participation_warning(fair) is None
    assert participation_warning(participation(_tasks([(0, "late")]), 2)) is None
