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
              colors: dict | None = None, modes: dict | None = None) -> int:
    """Draw ``y`` against ``x``, one line per run; returns the number of lines drawn.

    Rows with a missing ``x`` or ``y`` are dropped (e.g. rounds without an
    evaluation). Where several rows of a run share an ``x`` (a tasks table:
    one row per client) their mean is drawn. Each run has its own colour and hollow
    marker shape; on a round axis the runs' markers sit side by side around each
    round (``_base.dodge``), so equal values never hide each other. ``modes``
    ({run: 'sync' | 'async'}): an axis of asynchronous runs' rounds is labelled as
    server versions. Raises ``UserError`` when no run has a single finite point.
    """
    runs = _base.split_runs(table)
    names = [name for name, _ in runs]
    colors = colors or _base.run_colors(names)
    markers, offsets = _base.run_markers(names), _base.dodge(names) if x == "round" else {}
    drawn = 0
    all_x, all_y = [], []
    for name, part in runs:
        frame = _points(part, x, y)
        if frame is None:
            continue
        all_x.append(frame["x"].to_numpy())
        all_y.append(frame["y"].to_numpy())
        few = len(frame) <= 30
        ax.plot(frame["x"].to_numpy() + offsets.get(name, 0.0), frame["y"].to_numpy(),
                marker=markers[name] if few else None, markersize=5, markerfacecolor="white",
                markeredgewidth=1.3, linewidth=1.6, color=colors.get(name),
                label=name if name is not None else "_nolegend_")
        drawn += 1
    if drawn == 0:
        raise _base.NoDataError(f"{func}: column {y!r} has no finite values against {x!r} "
                        f"(every row is missing it)")
    _axes_style(ax, table, x, y, np.concatenate(all_x), np.concatenate(all_y), modes)
    return drawn


def _points(part: pd.DataFrame, x: str, y: str) -> pd.DataFrame | None:
    """The finite (x, y) points of one run, means where x repeats, sorted by x."""
    xs, ys = _base.numeric(part[x]), _base.numeric(part[y])
    keep = np.isfinite(xs) & np.isfinite(ys)
    if not keep.any():
        return None
    frame = pd.DataFrame({"x": xs[keep], "y": ys[keep]})
    if frame["x"].duplicated().any():
        frame = frame.groupby("x", as_index=False)["y"].mean()
    return frame.sort_values("x", kind="stable")


def _axes_style(ax: Axes, table, x: str, y: str, xs, ys, modes: dict | None) -> None:
    if x == "round":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if y in _base.PERCENT_COLUMNS:
        _base.percent_axis(ax)
    _base.single_point_limits(ax, xs, ys, x_is_round=(x == "round"),
                              y_is_fraction=y in _base.PERCENT_COLUMNS)
    is_async = x == "round" and modes and all(m == "async" for m in modes.values())
    ax.set_xlabel(_base.ASYNC_X_LABEL if is_async else _base.axis_label(x))
    ax.set_ylabel(_base.axis_label(y))
    ax.grid(True, alpha=0.3)
    if table is not None and "run" in table.columns:
        ax.legend(title="run", fontsize="small", title_fontsize="small")


def global_accuracy(rounds: pd.DataFrame, ax: Axes | None = None,
                    save: str | os.PathLike | None = None, *, title: str | None = None,
                    mode=None, dpi: int = _base.DPI) -> Figure:
    """Global-model test accuracy per round; one line per run when there is a ``run`` column.

    rounds: columns ``round, global_accuracy`` (accuracy as a fraction in [0, 1],
    drawn as percent; rounds count from 1). Returns the figure; ``save`` writes it
    as a PNG. title: default 'global test accuracy per round'. mode: 'async' (or
    {run: mode}, or a ``mode`` column) labels the axis as server versions.
    """
    func = "global_accuracy"
    _base.check_table(rounds, ["round", "global_accuracy"], "rounds", func)
    ax = _base.new_axes(ax)
    modes = _base.modes_of(rounds, mode)
    run_lines(ax, rounds, "round", "global_accuracy", func, modes=modes)
    per = "server version" if all(m == "async" for m in modes.values()) else "round"
    return _base.finish(ax, title, save, dpi, default=f"global test accuracy per {per}")


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
    markers = _base.run_markers(list(colors))
    if target is not None:
        ax.axhline(float(target), linestyle="--", color="#555555", linewidth=1.0,
                   label="_nolegend_")
        hits = time_to_target(rounds, float(target)).dropna()
        for _, row in hits.iterrows():
            ax.scatter([row["elapsed_s"]], [row["global_accuracy"]], s=60, zorder=3,
                       marker=markers.get(row["run"], "o"), color=colors.get(row["run"]),
                       edgecolor="black")
    return _base.finish(ax, title, save, dpi, default="global test accuracy against wall time")


def _compare_inputs(rounds_by_run, metric, x: str, func: str) -> tuple[pd.DataFrame, list]:
    """(one table with a run column, the metrics), checked: one-line UserError otherwise."""
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
    return table, metrics


def compare_runs(rounds_by_run: Mapping[str, pd.DataFrame] | pd.DataFrame,
                 metric: str | Sequence[str] = "global_accuracy", ax: Axes | None = None,
                 save: str | os.PathLike | None = None, *, x: str = "round",
                 title: str | None = None, modes=None, dpi: int = _base.DPI) -> Figure:
    """Several runs on one figure: ``metric`` against ``x``, one line per run.

    rounds_by_run: {run name: rounds table} or one table with a ``run`` column
    (a tasks table works too: rows sharing a round are averaged, e.g.
    ``metric='local_loss'``). metric: one numeric column, or a list of columns
    drawn side by side (one axes each; then ``ax`` must be None).
    x: ``'round'`` or ``'elapsed_s'``. modes: ``{run: 'sync' | 'async'}`` (or one mode
    for all, or a ``mode`` column): asynchronous runs count server versions, not
    rounds, so a comparison that mixes both is drawn against wall time
    (``elapsed_s``) and says so; all-asynchronous runs get a server-version axis.
    Every axes is titled by its metric; the figure by ``title`` (default 'runs compared').
    """
    func = "compare_runs"
    table, metrics = _compare_inputs(rounds_by_run, metric, x, func)
    if len(metrics) == 1:
        axes = [_base.new_axes(ax)]
    else:
        if ax is not None:
            raise UserError(f"{func}: ax= works with a single metric, got {len(metrics)}")
        fig = _base.PlotFigure(figsize=(5.0 * len(metrics), 4.0), layout="constrained")
        axes = list(np.atleast_1d(fig.subplots(1, len(metrics))))
    colors = _base.run_colors([name for name, _ in _base.split_runs(table)])
    modes = _base.modes_of(table, modes)
    note = ""
    if x == "round" and len(set(modes.values())) > 1:
        x, note = "elapsed_s", " (against wall time: async runs count server versions)"
    for i, (m, a) in enumerate(zip(metrics, axes)):
        run_lines(a, table, x, m, func, colors, modes=modes)
        if len(axes) > 1:
            a.set_title(_base.axis_label(m))
        if i < len(axes) - 1 and a.get_legend() is not None:
            a.get_legend().remove()   # one legend, on the last axes
    fig = _base.root_figure(axes[0])
    title = (title if title is not None else "runs compared") + note
    if len(axes) == 1:
        axes[0].set_title(title)
    else:
        fig.suptitle(title)
    _base.save_png(fig, save, dpi)
    return fig
