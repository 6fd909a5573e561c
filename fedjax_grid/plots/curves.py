"""Line plots of round metrics: accuracy per round, time-to-accuracy, run comparisons.

All take the engine's tidy rounds table (``round, global_loss, global_accuracy,
round_time_s, elapsed_s, ...``), optionally concatenated over runs with a ``run``
column, and draw one line per run (legend labels = run names).
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fedjax_grid.errors import UserError
from fedjax_grid.plots import _base

X_CHOICES = ("round", "elapsed_s")


def run_lines(ax: Axes, table: pd.DataFrame, x: str, y: str, func: str,
              colors: dict | None = None) -> int:
    """Draw ``y`` against ``x``, one line per run; returns the number of lines drawn.

    Rows with a missing ``x`` or ``y`` are dropped (e.g. rounds without an
    evaluation). Where several rows of a run share an ``x`` (a tasks table:
    one row per client) their mean is drawn. Raises ``UserError`` when no run
    has a single finite point.
    """
    runs = _base.split_runs(table)
    colors = colors or _base.run_colors([name for name, _ in runs])
    drawn = 0
    all_x, all_y = [], []
    for name, part in runs:
        xs, ys = _base.numeric(part[x]), _base.numeric(part[y])
        keep = np.isfinite(xs) & np.isfinite(ys)
        if not keep.any():
            continue
        frame = pd.DataFrame({"x": xs[keep], "y": ys[keep]})
        if frame["x"].duplicated().any():
            frame = frame.groupby("x", as_index=False)["y"].mean()
        frame = frame.sort_values("x", kind="stable")
        all_x.append(frame["x"].to_numpy())
        all_y.append(frame["y"].to_numpy())
        marker = "o" if len(frame) <= 30 else None
        ax.plot(frame["x"].to_numpy(), frame["y"].to_numpy(), marker=marker,
                markersize=3.5, linewidth=1.6, color=colors.get(name),
                label=name if name is not None else "_nolegend_")
        drawn += 1
    if drawn == 0:
        raise _base.NoDataError(f"{func}: column {y!r} has no finite values against {x!r} "
                        f"(every row is missing it)")
    if x == "round":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if y in _base.PERCENT_COLUMNS:
        _base.percent_axis(ax)
    _base.single_point_limits(ax, np.concatenate(all_x), np.concatenate(all_y),
                              x_is_round=(x == "round"), y_is_fraction=y in _base.PERCENT_COLUMNS)
    ax.set_xlabel(_base.axis_label(x))
    ax.set_ylabel(_base.axis_label(y))
    ax.grid(True, alpha=0.3)
    if table is not None and "run" in table.columns:
        ax.legend(title="run", fontsize="small", title_fontsize="small")
    return drawn


def global_accuracy(rounds: pd.DataFrame, ax: Axes | None = None,
                    save: str | os.PathLike | None = None, *, title: str | None = None,
                    dpi: int = _base.DPI) -> Figure:
    """Global-model test accuracy per round; one line per run when there is a ``run`` column.

    rounds: columns ``round, global_accuracy`` (accuracy as a fraction in [0, 1],
    drawn as percent; rounds count from 1). Returns the figure; ``save`` writes it
    as a PNG. title: e.g. the run's name (default: none).
    """
    func = "global_accuracy"
    _base.check_table(rounds, ["round", "global_accuracy"], "rounds", func)
    ax = _base.new_axes(ax)
    run_lines(ax, rounds, "round", "global_accuracy", func)
    return _base.finish(ax, title, save, dpi)


def time_to_target(rounds: pd.DataFrame, target: float) -> pd.DataFrame:
    """First round of each run whose global accuracy reaches ``target``.

    Returns DataFrame[run, round, elapsed_s, global_accuracy] (NaN for a run
    that never reaches it); ``run`` is None for a table without runs.
    """
    func = "time_to_target"
    _base.check_table(rounds, ["round", "global_accuracy", "elapsed_s"], "rounds", func)
    rows = []
    for name, part in _base.split_runs(rounds):
        part = part.sort_values("round", kind="stable")
        acc = _base.numeric(part["global_accuracy"])
        hit = np.flatnonzero(np.isfinite(acc) & (acc >= target))
        if hit.size:
            first = part.iloc[hit[0]]
            rows.append({"run": name, "round": float(first["round"]),
                         "elapsed_s": float(first["elapsed_s"]),
                         "global_accuracy": float(acc[hit[0]])})
        else:
            rows.append({"run": name, "round": np.nan, "elapsed_s": np.nan,
                         "global_accuracy": np.nan})
    return pd.DataFrame(rows, columns=["run", "round", "elapsed_s", "global_accuracy"])


def time_to_accuracy(rounds: pd.DataFrame, ax: Axes | None = None,
                     save: str | os.PathLike | None = None, *, target: float | None = None,
                     title: str | None = None, dpi: int = _base.DPI) -> Figure:
    """Global accuracy against wall time since the run started; one line per run.

    rounds: columns ``round, global_accuracy, elapsed_s`` (seconds).
    target: optional accuracy drawn as a dashed horizontal line (one extra line
    in ``ax.get_lines()``) with each run's first evaluated round at or above it
    marked by a dot (see ``time_to_target``).
    """
    func = "time_to_accuracy"
    _base.check_table(rounds, ["round", "global_accuracy", "elapsed_s"], "rounds", func)
    if target is not None and not (0.0 <= float(target) <= 1.0):
        raise UserError(f"{func}: target={target!r} must be an accuracy in [0, 1]")
    ax = _base.new_axes(ax)
    colors = _base.run_colors([name for name, _ in _base.split_runs(rounds)])
    run_lines(ax, rounds, "elapsed_s", "global_accuracy", func, colors)
    if target is not None:
        ax.axhline(float(target), linestyle="--", color="#555555", linewidth=1.0,
                   label="_nolegend_")
        hits = time_to_target(rounds, float(target)).dropna()
        for _, row in hits.iterrows():
            ax.scatter([row["elapsed_s"]], [row["global_accuracy"]], s=30, zorder=3,
                       color=colors.get(row["run"]), edgecolor="black")
    return _base.finish(ax, title, save, dpi)


def compare_runs(rounds_by_run: Mapping[str, pd.DataFrame] | pd.DataFrame,
                 metric: str | Sequence[str] = "global_accuracy", ax: Axes | None = None,
                 save: str | os.PathLike | None = None, *, x: str = "round",
                 title: str | None = None, dpi: int = _base.DPI) -> Figure:
    """Several runs on one figure: ``metric`` against ``x``, one line per run.

    rounds_by_run: {run name: rounds table} or one table with a ``run`` column
    (a tasks table works too: rows sharing a round are averaged, e.g.
    ``metric='local_loss'``). metric: one numeric column, or a list of columns
    drawn side by side (one axes each; then ``ax`` must be None).
    x: ``'round'`` or ``'elapsed_s'``.
    """
    func = "compare_runs"
    table = _base.with_runs(rounds_by_run, "rounds", func)
    metrics = [metric] if isinstance(metric, str) else list(metric)
    if not metrics:
        raise UserError(f"{func}: metric=[] is empty; name at least one column")
    if x not in X_CHOICES:
        raise UserError(f"{func}: x={x!r} is not allowed; use one of {', '.join(X_CHOICES)}")
    if not isinstance(table, pd.DataFrame):
        raise UserError(f"{func}: expected a dict of DataFrames or a DataFrame, "
                        f"got {type(table).__name__}")
    if len(table) == 0:
        _base.check_table(table, [x, *metrics], "rounds", func)   # raises NoDataError
    unknown = [m for m in metrics if m not in table.columns]
    if unknown:
        numeric_cols = [c for c in table.columns
                        if c not in ("run", x) and pd.api.types.is_numeric_dtype(table[c])]
        raise UserError(f"{func}: metric {', '.join(map(repr, unknown))} not in the table; "
                        f"choose from {', '.join(numeric_cols)}")
    _base.check_table(table, [x, *metrics], "rounds", func)
    if len(metrics) == 1:
        axes = [_base.new_axes(ax)]
    else:
        if ax is not None:
            raise UserError(f"{func}: ax= works with a single metric, got {len(metrics)}")
        fig = _base.PlotFigure(figsize=(5.0 * len(metrics), 4.0), layout="constrained")
        axes = list(np.atleast_1d(fig.subplots(1, len(metrics))))
    colors = _base.run_colors([name for name, _ in _base.split_runs(table)])
    for i, (m, a) in enumerate(zip(metrics, axes)):
        run_lines(a, table, x, m, func, colors)
        if i < len(axes) - 1 and a.get_legend() is not None:
            a.get_legend().remove()   # one legend, on the last axes
    fig = _base.root_figure(axes[0])
    if title is not None:
        if len(axes) == 1:
            axes[0].set_title(title)
        else:
            fig.suptitle(title)
    _base.save_png(fig, save, dpi)
    return fig
