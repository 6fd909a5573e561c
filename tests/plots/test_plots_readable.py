"""Figures a reader can use: every figure titled, no marker hidden under another, async runs
against server versions or wall time, round numbers that do not overlap, run figures."""
import numpy as np
import pandas as pd
from plots_records import RUNS, simulate_run

from fedjax_grid import plots
from fedjax_grid.grid.records import Records


def _titles(fig) -> list[str]:
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    if fig._suptitle is not None:
        titles.append(fig._suptitle.get_text())
    return titles


def test_every_figure_has_a_title_by_default(rounds_one, tasks_one, rounds_all):
    from fedjax_grid.partition.report import label_table
    labels = np.repeat(np.arange(3), 4)
    figures = {
        "global_accuracy": plots.global_accuracy(rounds_one),
        "local_loss": plots.local_loss(tasks_one),
        "worker_timeline": plots.worker_timeline(tasks_one, rounds=rounds_one),
        "time_to_accuracy": plots.time_to_accuracy(rounds_all),
        "compare_runs": plots.compare_runs(rounds_all),
        "compare_runs (2 metrics)": plots.compare_runs(rounds_all, metric=["global_accuracy",
                                                                            "global_loss"]),
        "label_distribution": plots.label_distribution(
            label_table(labels, [np.arange(6), np.arange(6, 12)])),
        "dashboard": plots.dashboard(rounds_one, tasks_one),
    }
    untitled = [name for name, fig in figures.items() if not _titles(fig)]
    assert not untitled, untitled
    assert _titles(figures["global_accuracy"]) == ["global test accuracy per round"]
    # side by side: each axes is titled by its metric, the figure by what it compares
    assert _titles(figures["compare_runs (2 metrics)"]) == [
        "global test accuracy (%)", "global test loss", "runs compared"]


def test_runs_with_equal_values_do_not_hide_each_others_markers(rounds_all):
    same = rounds_all.copy()
    same["global_accuracy"] = 0.5   # every run at the same value in every round
    fig = plots.compare_runs(same)
    lines = [line for line in fig.axes[0].get_lines() if line.get_label() in RUNS]
    assert len(lines) == 3
    first_x = [line.get_xdata()[0] for line in lines]
    assert len(set(np.round(first_x, 6))) == 3 and max(first_x) - min(first_x) <= 0.31
    assert all(abs(x - 1) <= 0.16 for x in first_x)              # each still near round 1
    assert len({line.get_marker() for line in lines}) == 3       # and a shape of its own
    assert all(line.get_markerfacecolor() == "white" for line in lines)   # hollow


def test_async_runs_are_drawn_against_server_versions_or_wall_time(rounds_all):
    one = rounds_all[rounds_all["run"] == RUNS[0]].drop(columns="run")
    fig = plots.global_accuracy(one, mode="async")
    assert fig.axes[0].get_xlabel().startswith("server version")
    assert _titles(fig) == ["global test accuracy per server version"]
    mixed = rounds_all.assign(mode=np.where(rounds_all["run"] == RUNS[2], "async", "sync"))
    fig = plots.compare_runs(mixed)                     # the mode column says which is which
    assert fig.axes[0].get_xlabel() == "elapsed wall time (s)"
    assert "async runs count server versions" in fig.axes[0].get_title()
    fig = plots.compare_runs(rounds_all, modes={RUNS[0]: "sync", RUNS[1]: "sync",
                                                RUNS[2]: "sync"})
    assert fig.axes[0].get_xlabel() == "round"


def test_timeline_round_numbers_never_touch(tasks_one):
    rounds = pd.DataFrame({"round": [1, 2, 3, 4, 5],
                           "elapsed_s": [10.0, 10.2, 10.4, 30.0, 50.0]})  # r1-r3 nearly together
    fig = plots.worker_timeline(tasks_one, rounds=rounds)
    labels = [(t.get_position()[0], t.get_text().strip()) for t in fig.axes[0].texts
              if t.get_text().strip().startswith("r")]
    xs = [x for x, _ in labels]
    assert [text for _, text in labels] == ["r1", "r4", "r5"]
    assert all(b - a >= 0.035 * 40.0 for a, b in zip(xs, xs[1:]))
    assert len([line for line in fig.axes[0].get_lines()]) >= 5   # every boundary still drawn


def test_async_timeline_numbers_server_versions():
    rounds, tasks = simulate_run(0, n_rounds=3)
    tasks = tasks.assign(version=tasks["round"] - 2, staleness=1)   # trained on older versions
    fig = plots.worker_timeline(tasks, rounds=rounds)
    numbers = [t.get_text().strip() for t in fig.axes[0].texts if t.get_text().strip()[:1] == "v"]
    assert numbers[:1] == ["v1"]


def test_run_figures_are_written_titled(tmp_path):
    from fedjax_grid.experiments import get_preset
    rounds, tasks = simulate_run(1)
    records = Records(tasks=[{k: v for k, v in r.items() if pd.notna(v)}
                             for r in tasks.to_dict("records")],
                      rounds=[{k: v for k, v in r.items() if pd.notna(v)}
                              for r in rounds.to_dict("records")])
    cfg = get_preset("quickstart").with_overrides(["server.mode=async"])
    written = plots.run_figures(cfg, records, tmp_path)
    assert [p.name for p in written] == ["global_accuracy.png", "local_loss.png", "participation.png"]
    assert all(p.stat().st_size > 5000 for p in written)
