"""plots.participation: tasks per client by status, clients that folded nothing in red."""
import pandas as pd
import pytest

from fedjax_grid import plots
from fedjax_grid.errors import UserError


def _tasks(rows, run=None):
    t = pd.DataFrame(rows, columns=["client", "status"])
    return t.assign(run=run) if run else t


def test_counts_every_client_and_status_in_long_form():
    t = _tasks([(0, "ok"), (0, "ok"), (1, "late"), (1, "ok"), (2, "failed")])
    c = plots.participation_counts(t, num_clients=4)
    wide = c.pivot(index="client", columns="status", values="tasks")
    assert list(pd.unique(c["status"])) == ["ok", "late", "failed"]   # the records' status order
    assert wide["ok"].tolist() == [2, 1, 0, 0] and wide["late"].tolist() == [0, 1, 0, 0]
    assert wide.loc[3].sum() == 0                                    # never ran: still a bar
    with pytest.raises(UserError, match="num_clients=2 but the tasks name client 2"):
        plots.participation_counts(t, num_clients=2)


def test_figure_stacks_ok_at_the_bottom_and_marks_clients_without_updates(tmp_path):
    # the async runs: one client of four with none of the 16 updates
    t = _tasks([(0, "ok")] * 6 + [(1, "ok")] * 5 + [(2, "ok")] * 5 + [(3, "late")] * 2
               + [(1, "failed")])
    fig = plots.participation(t, num_clients=4, save=tmp_path / "p.png")
    ax = fig.axes[0]
    assert "16 updates folded, 1 client(s) none" in ax.get_title()
    from matplotlib.colors import to_hex
    bars = {}   # client -> [(status colour, bottom, height)] of its non-empty segments
    for bar in ax.patches:
        if bar.get_height() > 0:
            bars.setdefault(round(bar.get_x() + bar.get_width() / 2), []).append(
                (to_hex(bar.get_facecolor()), bar.get_y(), bar.get_height()))
    ok, late, failed = (plots.STATUS_STYLE[s]["color"] for s in ("ok", "late", "failed"))
    assert sorted(bars) == [0, 1, 2, 3]
    assert set(bars[1]) == {(ok, 0, 5), (failed, 5, 1)}         # ok at the bottom, failed on top
    assert bars[3] == [(late, 0, 2)] and bars[0] == [(ok, 0, 6)]
    red = [tick.get_text() for tick in ax.get_xticklabels() if tick.get_color() == "#d62728"]
    assert red == ["3"]
    line = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(line) == 1 and line[0].get_ydata()[0] == pytest.approx(4.0)   # 16 / 4
    assert (tmp_path / "p.png").stat().st_size > 3000


def test_one_run_of_several_and_bad_input():
    t = pd.concat([_tasks([(0, "ok"), (1, "ok")], "a"), _tasks([(0, "ok")], "b")])
    fig = plots.participation(t, run="b", num_clients=2)
    assert "1 updates folded, 1 client(s) none" in fig.axes[0].get_title()
    with pytest.raises(UserError):
        plots.participation(_tasks([(-1, "ok")]))
    with pytest.raises(plots.NoDataError):
        plots.participation(_tasks([]))
