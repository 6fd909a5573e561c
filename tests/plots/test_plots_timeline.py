"""worker_timeline: per-worker Gantt chart of one run's tasks, statuses marked."""
import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgba

from plots_records import RUNS, WORKERS, assert_png, legend_labels
from fedjax_grid import plots
from fedjax_grid.errors import UserError


def _bars(ax):
    """{status: PolyCollection} of the drawn bars."""
    return {c.get_label(): c for c in ax.collections if isinstance(c, PolyCollection)}


def test_bars_per_worker_coloured_by_status(tasks_one, rounds_one, tmp_path):
    fig = plots.worker_timeline(tasks_one, rounds=rounds_one, save=tmp_path / "tl.png")
    assert_png(tmp_path / "tl.png")
    (ax,) = fig.axes
    assert ax.get_ylabel() == "worker"
    assert ax.get_xlabel() == "time since run start (s)"
    assert [t.get_text() for t in ax.get_yticklabels()] == [w[6:] for w in sorted(WORKERS)]
    # every status is in the legend, with its own colour
    assert legend_labels(ax) == ["ok", "late", "failed", "rejected", "offline"]
    legend = ax.get_legend()
    for handle, text in zip(legend.legend_handles, legend.get_texts()):
        style = plots.STATUS_STYLE[text.get_text()]
        assert handle.get_facecolor() == pytest.approx(to_rgba(style["color"]))
        assert (handle.get_hatch() or "") == style["hatch"]
    # bars: one collection per drawable status; offline task has no times -> no bar
    bars = _bars(ax)
    assert set(bars) == {"ok", "late", "failed", "rejected"}
    counts = tasks_one["status"].value_counts()
    for status, coll in bars.items():
        assert len(coll.get_paths()) == counts[status]
        assert tuple(coll.get_facecolor()[0]) == pytest.approx(
            to_rgba(plots.STATUS_STYLE[status]["color"]))
    assert bars["late"].get_hatch() == "//" and bars["failed"].get_hatch() == "xx"
    # the late bar spans its start..end on its worker's row
    late = tasks_one[tasks_one["status"] == "late"].iloc[0]
    verts = bars["late"].get_paths()[0].vertices
    assert verts[:, 0].min() == pytest.approx(late["start_s"])
    assert verts[:, 0].max() == pytest.approx(late["end_s"])
    row = sorted(WORKERS).index(late["worker"])
    assert (verts[:, 1].min() + verts[:, 1].max()) / 2 == pytest.approx(row)
    # round boundaries: one dashed vertical line per round
    assert len(ax.get_lines()) == len(rounds_one)
    np.testing.assert_allclose([l.get_xdata()[0] for l in ax.get_lines()],
                               rounds_one["elapsed_s"])
    # few tasks: each bar carries its client id (+ round labels r1..r5)
    texts = [t.get_text() for t in ax.texts]
    assert sum(t.startswith("c") for t in texts) == tasks_one["end_s"].notna().sum()
    assert [t for t in texts if t.startswith("r")] == [f"r{r} " for r in range(1, 6)]


def test_run_selection(tasks_all, rounds_all):
    with pytest.raises(UserError, match="holds 3 runs; pick one with run="):
        plots.worker_timeline(tasks_all)
    with pytest.raises(UserError, match="run='nope' not in"):
        plots.worker_timeline(tasks_all, run="nope")
    fig = plots.worker_timeline(tasks_all, run=RUNS[1], rounds=rounds_all)
    (ax,) = fig.axes
    n = (tasks_all["run"] == RUNS[1]).sum() - 1    # minus the offline task
    assert sum(len(c.get_paths()) for c in _bars(ax).values()) == n
    assert len(ax.get_lines()) == 5


def test_instant_and_unknown_statuses(tasks_one):
    tasks = tasks_one.copy()
    tasks.loc[0, "end_s"] = np.nan          # still running / end unknown: a tick mark
    tasks.loc[1, "status"] = "cancelled"   # not a known status: drawn, listed last
    tasks.loc[2, "worker"] = None          # no worker recorded
    fig = plots.worker_timeline(tasks, label_clients=False)
    (ax,) = fig.axes
    assert legend_labels(ax)[-1] == "cancelled"
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert "(no worker)" in ticks and len(ticks) == 3
    assert not ax.texts
    marks = [c for c in ax.collections if not isinstance(c, PolyCollection)]
    assert len(marks) == 1 and len(marks[0].get_offsets()) == 1


def test_many_tasks_fast_and_unlabelled(tmp_path):
    import time

    from plots_records import simulate_run
    workers = [f"tcp://10.0.1.{i}:9000" for i in range(8)]
    _, small = simulate_run(3, n_rounds=3, n_clients=20, workers=workers)
    _, tasks = simulate_run(3, n_rounds=60, n_clients=20, workers=workers)
    t0 = time.perf_counter()
    plots.worker_timeline(small, save=tmp_path / "small.png")  # the baseline: 60 tasks
    baseline = time.perf_counter() - t0
    t0 = time.perf_counter()
    fig = plots.worker_timeline(tasks, save=tmp_path / "big.png")
    elapsed = time.perf_counter() - t0
    assert_png(tmp_path / "big.png")
    (ax,) = fig.axes
    assert not ax.texts and len(ax.get_yticklabels()) == 8
    # 1200 tasks: a few collections, not 1200 patches -- and so about the cost of 60
    assert not ax.patches and len(ax.collections) < 10, (len(ax.patches), len(ax.collections))
    assert elapsed < 5 * baseline + 0.5, (elapsed, baseline)


def test_empty_and_bad_tables(tasks_one):
    with pytest.raises(UserError, match="tasks table is empty"):
        plots.worker_timeline(tasks_one.iloc[:0])
    with pytest.raises(UserError, match="lacks column.*start_s"):
        plots.worker_timeline(tasks_one.drop(columns=["start_s"]))


def test_offline_rows_as_the_engine_records_them(tasks_one):
    """Offline clients: worker '' and start == end (no duration) -> a tick on their own row."""
    tasks = tasks_one.copy()
    off = tasks["status"] == "offline"
    tasks.loc[off, "worker"] = ""
    tasks.loc[off, ["start_s", "end_s", "duration_s"]] = [15.0, 15.0, 0.0]
    (ax,) = plots.worker_timeline(tasks).axes
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert ticks[0] == "(no worker)" and len(ticks) == 3
    (mark,) = [c for c in ax.collections if not isinstance(c, PolyCollection)]
    assert tuple(mark.get_offsets()[0]) == (15.0, 0.0)
    assert tuple(mark.get_edgecolor()[0]) == pytest.approx(
        to_rgba(plots.STATUS_STYLE["offline"]["color"]))
    assert "offline" in legend_labels(ax)


def test_rows_labelled_by_worker_name_when_recorded(tasks_one):
    """With a worker_name column (dask worker --name), rows show names, not ip:port."""
    from fedjax_grid import plots
    tasks = tasks_one.copy()
    addrs = sorted(tasks["worker"].unique())
    tasks["worker_name"] = tasks["worker"].map({a: f"desk-{i}" for i, a in enumerate(addrs)})
    tasks.loc[tasks["worker"] == addrs[-1], "worker_name"] = None  # this one has no name
    ax = plots.worker_timeline(tasks).axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[:-1] == [f"desk-{i}" for i in range(len(addrs) - 1)]
    assert labels[-1] == addrs[-1].replace("tcp://", "")
