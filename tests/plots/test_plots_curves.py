"""global_accuracy, time_to_accuracy, compare_runs on small realistic rounds tables."""
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from plots_records import RUNS, assert_png, legend_labels
from fedjax_grid import plots
from fedjax_grid.errors import UserError


def test_global_accuracy_one_line_per_run(rounds_all, tmp_path):
    path = tmp_path / "out" / "acc.png"      # parent created on save
    fig = plots.global_accuracy(rounds_all, save=path)
    assert isinstance(fig, Figure)
    assert_png(path)
    (ax,) = fig.axes
    assert len(ax.get_lines()) == len(RUNS)
    assert legend_labels(ax) == list(RUNS)
    assert ax.get_xlabel() == "round"
    assert "accuracy" in ax.get_ylabel()
    # the data drawn is the table's, in round order
    line = ax.get_lines()[1]
    part = rounds_all[rounds_all["run"] == RUNS[1]].sort_values("round")
    np.testing.assert_allclose(line.get_xdata(), part["round"])
    np.testing.assert_allclose(line.get_ydata(), part["global_accuracy"])


def test_global_accuracy_single_run_no_legend_and_skips_unevaluated(rounds_one):
    rounds = rounds_one.copy()
    rounds.loc[rounds["round"] == 2, "global_accuracy"] = np.nan   # not evaluated
    fig = plots.global_accuracy(rounds)
    (ax,) = fig.axes
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [1, 3, 4, 5]
    assert ax.get_legend() is None


def test_global_accuracy_draws_into_given_axes(rounds_all):
    outer = Figure()
    ax = outer.add_subplot(1, 2, 2)
    fig = plots.global_accuracy(rounds_all, ax=ax, title="acc")
    assert fig is outer and len(outer.axes) == 1
    assert ax.get_title() == "acc"


def test_time_to_accuracy_x_is_elapsed_and_target(rounds_all, tmp_path):
    fig = plots.time_to_accuracy(rounds_all, target=0.5, save=tmp_path / "tta.png")
    assert_png(tmp_path / "tta.png")
    (ax,) = fig.axes
    # one line per run plus the dashed target line
    assert len(ax.get_lines()) == len(RUNS) + 1
    assert legend_labels(ax) == list(RUNS)
    assert ax.get_xlabel() == "elapsed wall time (s)"
    last = rounds_all[rounds_all["run"] == RUNS[2]]
    np.testing.assert_allclose(ax.get_lines()[2].get_xdata(), last["elapsed_s"])
    hits = plots.time_to_target(rounds_all, 0.5)
    assert list(hits["run"]) == list(RUNS)
    # every simulated run passes 0.5 by round 3; dots mark the crossings
    assert hits["round"].between(1, 3).all()
    assert (hits["global_accuracy"] >= 0.5).all()
    for _, hit in hits.iterrows():           # it is the first such round
        part = rounds_all[rounds_all["run"] == hit["run"]]
        assert (part.loc[part["round"] < hit["round"], "global_accuracy"] < 0.5).all()
    assert len(ax.collections) == len(hits)


def test_time_to_target_never_reached(rounds_one):
    hits = plots.time_to_target(rounds_one, 0.999)
    assert len(hits) == 1 and np.isnan(hits["elapsed_s"].iloc[0])
    first = plots.time_to_target(rounds_one, 0.0)
    assert first["round"].iloc[0] == 1
    assert first["elapsed_s"].iloc[0] == pytest.approx(rounds_one["elapsed_s"].iloc[0])


def test_compare_runs_dict_and_table_agree(run_tables, rounds_all, tmp_path):
    by_run = {name: r for name, (r, _) in run_tables.items()}
    fig_a = plots.compare_runs(by_run, save=tmp_path / "cmp.png")
    fig_b = plots.compare_runs(rounds_all)
    assert_png(tmp_path / "cmp.png")
    for fig in (fig_a, fig_b):
        (ax,) = fig.axes
        assert len(ax.get_lines()) == len(RUNS)
        assert legend_labels(ax) == list(RUNS)
    for la, lb in zip(fig_a.axes[0].get_lines(), fig_b.axes[0].get_lines()):
        np.testing.assert_allclose(la.get_ydata(), lb.get_ydata())


def test_compare_runs_several_metrics_one_axes_each(rounds_all, tmp_path):
    fig = plots.compare_runs(rounds_all, metric=["global_accuracy", "global_loss",
                                                 "round_time_s"],
                             x="elapsed_s", title="strategies", save=tmp_path / "m.png")
    assert_png(tmp_path / "m.png")
    assert len(fig.axes) == 3
    assert [a.get_ylabel() for a in fig.axes] == ["global test accuracy (%)", "global test loss",
                                                 "round time (s)"]
    assert all(len(a.get_lines()) == len(RUNS) for a in fig.axes)
    # a single legend, on the last axes
    assert [a.get_legend() is not None for a in fig.axes] == [False, False, True]
    assert fig.axes[0].get_xlabel() == "elapsed wall time (s)"


def test_compare_runs_on_tasks_table_averages_clients(tasks_all):
    fig = plots.compare_runs(tasks_all, metric="local_loss")
    (ax,) = fig.axes
    line = ax.get_lines()[0]
    part = tasks_all[(tasks_all["run"] == RUNS[0])]
    expected = part.groupby("round")["local_loss"].mean()
    np.testing.assert_allclose(line.get_ydata(), expected.to_numpy())


@pytest.mark.parametrize("call, match", [
    (lambda r: plots.compare_runs(r, metric="accuracy"), "metric 'accuracy' not in"),
    (lambda r: plots.compare_runs(r, x="wall"), "x='wall' is not allowed"),
    (lambda r: plots.compare_runs({}), "no runs given"),
    (lambda r: plots.compare_runs({"a": 3}), "run 'a' is a int"),
    (lambda r: plots.time_to_accuracy(r, target=80), "target=80"),
    (lambda r: plots.global_accuracy(r.drop(columns="global_accuracy")),
     "lacks column.*global_accuracy"),
    (lambda r: plots.global_accuracy(r, save="acc.pdf"), "must be a path ending in .png"),
    (lambda r: plots.global_accuracy(r.to_dict()), "must be a pandas DataFrame"),
])
def test_bad_input_is_a_user_error(rounds_all, call, match):
    with pytest.raises(UserError, match=match):
        call(rounds_all)


@pytest.mark.parametrize("func", [plots.global_accuracy, plots.time_to_accuracy,
                                  plots.compare_runs])
def test_empty_rounds_is_a_user_error(rounds_all, func):
    with pytest.raises(UserError, match="empty"):
        func(rounds_all.iloc[:0])
    with pytest.raises(UserError, match="empty"):
        func(pd.DataFrame())


def test_all_nan_accuracy_is_a_user_error(rounds_one):
    with pytest.raises(plots.NoDataError, match="no finite values"):
        plots.global_accuracy(rounds_one.assign(global_accuracy=np.nan))


def test_single_round_axes_and_percent(rounds_one, tmp_path):
    """After one round: the round axis shows that round alone, accuracy 0-100 %, a title."""
    one = rounds_one.iloc[:1]
    fig = plots.global_accuracy(one, title="quickstart: global test accuracy")
    ax = fig.axes[0]
    assert ax.get_xlim() == (0.5, 1.5) and list(ax.get_xticks()) == [1.0]
    assert ax.get_ylim() == (0.0, 1.02)
    assert ax.get_ylabel() == "global test accuracy (%)" and ax.get_title().startswith("quickstart")
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert labels and all(t.endswith("%") for t in labels), labels
    tta = plots.time_to_accuracy(one).axes[0]
    lo, hi = tta.get_xlim()
    assert lo <= 0.0 < float(one["elapsed_s"].iloc[0]) < hi  # not a +-0.045 sliver
    # Several rounds: the usual autoscaled axes, still in percent.
    many = plots.global_accuracy(rounds_one).axes[0]
    assert many.get_xlim()[1] - many.get_xlim()[0] > 1.5
