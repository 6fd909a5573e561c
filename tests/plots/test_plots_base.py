"""Backend safety, Jupyter display and atomic PNG saving shared by all plots."""
import io
import os

import matplotlib
import pytest
from PIL import Image

from plots_records import assert_png
from fedjax_grid import plots
from fedjax_grid.errors import UserError


def test_no_pyplot_figures_and_no_show(rounds_all, tasks_all, tasks_one, label_table,
                                       monkeypatch):
    import matplotlib.pyplot as plt

    def _no_show(*a, **k):
        raise AssertionError("plt.show called")
    monkeypatch.setattr(plt, "show", _no_show)
    before = plt.get_fignums()
    figs = [plots.global_accuracy(rounds_all), plots.local_loss(tasks_all),
            plots.local_loss(tasks_all, kind="box"), plots.label_distribution(label_table),
            plots.worker_timeline(tasks_one), plots.time_to_accuracy(rounds_all),
            plots.compare_runs(rounds_all), plots.dashboard(rounds_all, tasks_all)]
    assert plt.get_fignums() == before          # nothing registered with pyplot
    assert all(isinstance(f, plots.PlotFigure) for f in figs)


def test_repr_png_displays_in_jupyter(rounds_one):
    fig = plots.global_accuracy(rounds_one)
    data = fig._repr_png_()
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        assert im.size == (round(6.4 * plots.DPI), round(4.0 * plots.DPI))


def test_save_is_atomic_and_overwrites(rounds_one, tmp_path):
    path = tmp_path / "acc.png"
    path.write_bytes(b"old")
    plots.global_accuracy(rounds_one, save=path, dpi=60)
    assert_png(path, min_bytes=2_000, size=(round(6.4 * 60), round(4.0 * 60)))
    assert sorted(os.listdir(tmp_path)) == ["acc.png"]


def test_failed_save_leaves_old_file_and_no_temp(rounds_one, tmp_path, monkeypatch):
    path = tmp_path / "acc.png"
    path.write_bytes(b"old")
    fig = plots.global_accuracy(rounds_one)

    def _boom(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr(fig, "savefig", _boom)
    with pytest.raises(RuntimeError, match="disk full"):
        plots.save_png(fig, path)
    assert path.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["acc.png"]


def test_bad_ax_and_suffix(rounds_one):
    with pytest.raises(UserError, match="is not a matplotlib Axes"):
        plots.global_accuracy(rounds_one, ax="left")
    with pytest.raises(UserError, match="ending in .png"):
        plots.global_accuracy(rounds_one, save="acc")


def test_backend_untouched(rounds_one):
    backend = matplotlib.get_backend()
    plots.global_accuracy(rounds_one)
    assert matplotlib.get_backend() == backend


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_tables_read_back_from_disk(rounds_all, tasks_all, tmp_path, fmt):
    """The records as the engine saves them (CSV/Parquet) plot the same; int run ids work."""
    import pandas as pd
    runs = {name: i for i, name in enumerate(pd.unique(rounds_all["run"]))}
    rounds = rounds_all.assign(run=rounds_all["run"].map(runs))
    tasks = tasks_all.assign(run=tasks_all["run"].map(runs))
    if fmt == "csv":
        rounds.to_csv(tmp_path / "r.csv", index=False)
        tasks.to_csv(tmp_path / "t.csv", index=False)
        rounds, tasks = pd.read_csv(tmp_path / "r.csv"), pd.read_csv(tmp_path / "t.csv")
    else:
        rounds.to_parquet(tmp_path / "r.parquet")
        tasks.to_parquet(tmp_path / "t.parquet")
        rounds = pd.read_parquet(tmp_path / "r.parquet")
        tasks = pd.read_parquet(tmp_path / "t.parquet")
    fig = plots.dashboard(rounds, tasks, run=1, save=tmp_path / "d.png")
    assert_png(tmp_path / "d.png", min_bytes=20_000)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["0", "1", "2"]
    assert fig.axes[2].get_title() == "worker timeline (1)"


def test_saved_png_has_the_permissions_of_other_files(tmp_path):
    """save_png writes via a temporary file: 0666 minus the umask, like the CSVs (not 0600)."""
    import os
    from fedjax_grid.plots import PlotFigure, save_png
    fig = PlotFigure()
    fig.add_subplot().plot([0, 1])
    old = os.umask(0o022)
    try:
        save_png(fig, tmp_path / "a.png")
        (tmp_path / "b.csv").write_text("x\n")
    finally:
        os.umask(old)
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.csv").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
