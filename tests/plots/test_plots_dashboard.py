"""dashboard: the 2x2 live summary, redrawn into the same figure every round."""
import time

import numpy as np
import pytest

from plots_records import RUNS, assert_png, legend_labels, simulate_run
from fedjax_grid import plots
from fedjax_grid.errors import UserError


def test_four_panels(rounds_one, tasks_one, tmp_path):
    fig = plots.dashboard(rounds_one, tasks_one, save=tmp_path / "dash.png")
    assert_png(tmp_path / "dash.png", min_bytes=20_000)
    acc, loss, timeline, tta = fig.axes
    assert len(acc.get_lines()) == 1 and acc.get_xlabel() == "round"
    assert len(loss.get_lines()) == 1 and loss.get_ylabel().startswith("local training loss")
    assert legend_labels(timeline) == ["ok", "late", "failed", "rejected", "offline"]
    assert len(timeline.get_lines()) == len(rounds_one)       # round boundaries
    assert tta.get_xlabel() == "elapsed wall time (s)"
    assert fig.get_suptitle().startswith("round 5 · accuracy ")
    assert fig.get_suptitle().split(" · ")[1].endswith(" %")  # accuracy in percent


def test_title_names_the_run_and_counts_rounds_from_1(rounds_one, tasks_one):
    """The status line says 'round 1/6' after the first round: so does the dashboard."""
    first_r, first_t = rounds_one.iloc[:1], tasks_one[tasks_one["round"] == 1]
    acc = 100 * float(first_r["global_accuracy"].iloc[0])
    fig = plots.dashboard(first_r, first_t, name="quickstart", total=6)
    assert fig.get_suptitle().startswith(f"quickstart · round 1/6 · accuracy {acc:.1f} % · ")
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    assert (lo, hi) == (0.5, 1.5) and list(ax.get_xticks()) == [1.0]  # not -0.045..0.045


def test_several_runs_timeline_shows_last(rounds_all, tasks_all):
    fig = plots.dashboard(rounds_all, tasks_all, target=0.6)
    acc, loss, timeline, tta = fig.axes
    assert legend_labels(acc) == list(RUNS) and legend_labels(loss) == list(RUNS)
    assert len(tta.get_lines()) == len(RUNS) + 1
    assert timeline.get_title() == f"worker timeline ({RUNS[-1]})"
    fig2 = plots.dashboard(rounds_all, tasks_all, run=RUNS[0])
    assert fig2.axes[2].get_title() == f"worker timeline ({RUNS[0]})"


def test_redraw_into_same_figure_every_round_is_cheap(tmp_path):
    rounds, tasks = simulate_run(5, n_rounds=40, n_clients=10,
                                 workers=[f"tcp://10.0.0.{i}:1" for i in range(4)])
    fig = None
    times = []
    for r in (1, 2, 10, 40):
        t0 = time.perf_counter()
        new = plots.dashboard(rounds[rounds["round"] <= r], tasks[tasks["round"] <= r],
                              fig=fig, save=tmp_path / "live.png")
        times.append(time.perf_counter() - t0)
        assert fig is None or new is fig
        fig = new
        assert len(fig.axes) == 4                        # cleared, not stacked
        assert len(fig.axes[0].get_lines()[0].get_xdata()) == r
    assert_png(tmp_path / "live.png", min_bytes=20_000)
    # draw + PNG of a 40-round, 400-task dashboard: about the cost of a 2-round one (the
    # figure is reused and the timeline is a few collections, not a patch per task)
    assert times[-1] < 3 * min(times[1:3]) + 0.5, times


def test_panels_without_data_show_a_message(rounds_one, tasks_one):
    # first round: every task failed -> no loss panel yet, but no crash
    tasks = tasks_one[tasks_one["round"] == 1].assign(status="failed", local_loss=np.nan)
    fig = plots.dashboard(rounds_one.iloc[:1], tasks)
    loss = fig.axes[1]
    assert [t.get_text() for t in loss.texts] == ["no successful client task yet"]
    # before any round: rounds empty, tasks present
    fig = plots.dashboard(rounds_one.iloc[:0], tasks_one[tasks_one["round"] == 1])
    assert [t.get_text() for t in fig.axes[0].texts] == ["no evaluated round yet"]
    assert fig.get_suptitle() == "waiting for the first round"


def test_both_empty_is_a_user_error(rounds_one, tasks_one):
    with pytest.raises(UserError, match="both empty"):
        plots.dashboard(rounds_one.iloc[:0], tasks_one.iloc[:0])
    with pytest.raises(UserError, match="must be a pandas DataFrame"):
        plots.dashboard(None, tasks_one)


def test_missing_column_is_not_hidden(rounds_one, tasks_one):
    with pytest.raises(UserError, match="lacks column.*status"):
        plots.dashboard(rounds_one, tasks_one.drop(columns="status"))
