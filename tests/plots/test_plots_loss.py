"""local_loss: distribution of the clients' local loss per round, ok tasks only."""
import numpy as np
import pytest

from plots_records import N_ROUNDS, RUNS, assert_png, legend_labels
from fedjax_grid import plots
from fedjax_grid.errors import UserError


def test_band_one_mean_line_and_band_per_run(tasks_all, tmp_path):
    fig = plots.local_loss(tasks_all, save=tmp_path / "loss.png")
    assert_png(tmp_path / "loss.png")
    (ax,) = fig.axes
    assert len(ax.get_lines()) == len(RUNS)
    assert len(ax.collections) == len(RUNS)          # one fill_between band each
    assert legend_labels(ax) == list(RUNS)
    assert ax.get_xlabel() == "round"
    assert ax.get_ylabel().startswith("local training loss")


def test_band_uses_ok_rows_only(tasks_one):
    tasks = tasks_one.copy()
    # a late task with a huge loss must not move the mean
    tasks.loc[tasks["status"] == "late", "local_loss"] = 1e6
    summary = plots.loss_summary(tasks)
    ok = tasks[tasks["status"] == "ok"]
    expected = ok.groupby("round")["local_loss"].mean()
    np.testing.assert_allclose(summary["mean"], expected.to_numpy())
    np.testing.assert_array_equal(summary["clients"], ok.groupby("round").size())
    assert (summary["low"] <= summary["mean"]).all() and (summary["mean"] <= summary["high"]).all()
    (line,) = plots.local_loss(tasks).axes[0].get_lines()
    np.testing.assert_allclose(line.get_ydata(), expected.to_numpy())


@pytest.mark.parametrize("band", ["iqr", "minmax", "std"])
def test_band_kinds_ordered(tasks_one, band):
    s = plots.loss_summary(tasks_one, band=band)
    assert len(s) == N_ROUNDS
    assert (s["low"] <= s["high"] + 1e-12).all()
    if band == "minmax":
        ok = tasks_one[tasks_one["status"] == "ok"].groupby("round")["local_loss"]
        np.testing.assert_allclose(s["low"], ok.min().to_numpy())
        np.testing.assert_allclose(s["high"], ok.max().to_numpy())


def test_box_one_box_per_round(tasks_one, tmp_path):
    fig = plots.local_loss(tasks_one, kind="box", save=tmp_path / "box.png")
    assert_png(tmp_path / "box.png")
    (ax,) = fig.axes
    assert len(ax.patches) == N_ROUNDS
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(r) for r in range(1, 6)]


def test_box_grouped_by_run(tasks_all):
    (ax,) = plots.local_loss(tasks_all, kind="box").axes
    assert len(ax.patches) >= N_ROUNDS * len(RUNS)
    assert legend_labels(ax) == list(RUNS)


def test_no_ok_task_is_a_user_error(tasks_one):
    with pytest.raises(UserError, match="no row with status 'ok'"):
        plots.local_loss(tasks_one[tasks_one["status"] != "ok"])
    with pytest.raises(UserError, match="tasks table is empty"):
        plots.local_loss(tasks_one.iloc[:0])


@pytest.mark.parametrize("kw, match", [({"kind": "violin"}, "kind='violin'"),
                                       ({"band": "ci"}, "band='ci'")])
def test_bad_options(tasks_one, kw, match):
    with pytest.raises(UserError, match=match):
        plots.local_loss(tasks_one, **kw)
