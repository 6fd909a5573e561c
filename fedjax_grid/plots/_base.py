"""Shared plumbing of the plots: figures, atomic PNG saving, table checks, colours.

Figures are built with ``matplotlib.figure.Figure`` directly, never through
``pyplot``: nothing here depends on the interactive backend, nothing calls
``plt.show``, and figures are not kept alive by pyplot's registry (redrawing a
live panel every round leaks nothing). ``PlotFigure`` adds ``_repr_png_`` so a
returned figure still displays in Jupyter whatever the backend is.
"""
from __future__ import annotations

import io
import os
import pathlib
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fedjax_grid.atomic_write import atomic_path
from fedjax_grid.errors import UserError
from fedjax_grid.grid.records import TASK_STATUSES

DPI = 120

#: The task statuses of the records, in legend order.
STATUSES = TASK_STATUSES

#: Face colour, hatch and edge colour of each task status in the timeline.
STATUS_STYLE: dict[str, dict] = {
    "ok": {"color": "#4c9a2a", "hatch": "", "edgecolor": "#2f5f1a"},
    "late": {"color": "#f0a30a", "hatch": "//", "edgecolor": "#8a5d00"},
    "failed": {"color": "#d62728", "hatch": "xx", "edgecolor": "#7a0f10"},
    "rejected": {"color": "#8e44ad", "hatch": "\\\\", "edgecolor": "#4a1f5c"},
    "offline": {"color": "#9e9e9e", "hatch": "..", "edgecolor": "#555555"},
    "dropped": {"color": "#5dade2", "hatch": "--", "edgecolor": "#1f618d"},
}
UNKNOWN_STATUS_STYLE = {"color": "#333333", "hatch": "++", "edgecolor": "#000000"}

#: Human axis labels of the record columns.
COLUMN_LABELS = {
    "round": "round",
    "global_accuracy": "global test accuracy (%)",
    "global_loss": "global test loss",
    "local_loss": "local training loss",
    "local_accuracy": "local training accuracy (%)",
    "elapsed_s": "elapsed wall time (s)",
    "round_time_s": "round time (s)",
    "duration_s": "task duration (s)",
    "clients_ok": "clients ok",
    "clients_late": "clients late",
    "clients_failed": "clients failed",
    "clients_rejected": "clients rejected",
    "clients_offline": "clients offline",
    "clients_dropped": "clients dropped (too stale)",
    "clients_sampled": "clients sampled",
    "bytes_sent": "bytes sent",
    "bytes_received": "bytes received",
}


class NoDataError(UserError):
    """The table has no rows (or no usable values) to plot, e.g. before the first round."""


class PlotFigure(Figure):
    """A ``Figure`` that renders itself as PNG in Jupyter (``_repr_png_``)."""

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=DPI)
        return buf.getvalue()


def status_style(status: str) -> dict:
    """Colour/hatch/edge colour of one task status (unknown statuses get a dark style)."""
    return STATUS_STYLE.get(str(status), UNKNOWN_STATUS_STYLE)


def axis_label(column: str) -> str:
    return COLUMN_LABELS.get(column, column.replace("_", " "))


def new_axes(ax: Axes | None, figsize: tuple[float, float] = (6.4, 4.0)) -> Axes:
    """``ax`` itself, or the single axes of a new constrained-layout ``PlotFigure``."""
    if ax is not None:
        if not isinstance(ax, Axes):
            raise UserError(f"ax={ax!r} is not a matplotlib Axes; pass an Axes or None")
        return ax
    fig = PlotFigure(figsize=figsize, layout="constrained")
    return fig.add_subplot()


def save_png(fig: Figure, save: str | os.PathLike | None, dpi: int = DPI) -> None:
    """Write ``fig`` as a PNG to ``save`` atomically (temp file + rename); no-op for None.

    The parent directory is created. The path must end in ``.png``.
    """
    if save is None:
        return
    path = pathlib.Path(save)
    if path.suffix.lower() != ".png":
        raise UserError(f"save={str(save)!r} must be a path ending in .png")
    path.parent.mkdir(parents=True, exist_ok=True)
    # The PNG gets the same permissions as the CSV records, 0666 minus the umask.
    # No fsync: a figure is redrawn every round and can always be redrawn.
    with atomic_path(path, fsync=False) as tmp:
        with open(tmp, "wb") as fh:
            fig.savefig(fh, format="png", dpi=dpi)


def check_table(table, required: Iterable[str], what: str, func: str) -> pd.DataFrame:
    """Validate a records table: a non-empty DataFrame holding the ``required`` columns.

    Raises ``NoDataError`` (a ``UserError``) when it has no rows, ``UserError``
    when it is not a DataFrame or lacks a column.
    """
    required = list(required)
    if not isinstance(table, pd.DataFrame):
        raise UserError(
            f"{func}: {what} table must be a pandas DataFrame, got {type(table).__name__}")
    if len(table) == 0:
        raise NoDataError(
            f"{func}: {what} table is empty; it needs at least one row with "
            f"columns {', '.join(required)}")
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise UserError(
            f"{func}: {what} table lacks column(s) {', '.join(missing)}; "
            f"needed: {', '.join(required)} (have: {', '.join(map(str, table.columns))})")
    return table


def with_runs(table: Mapping[str, pd.DataFrame] | pd.DataFrame, what: str,
              func: str) -> pd.DataFrame:
    """One DataFrame with a ``run`` column from a dict {run: table} or a table.

    A table without a ``run`` column is left as is (a single, unnamed run).
    """
    if isinstance(table, Mapping):
        if not table:
            raise UserError(f"{func}: no runs given; pass {{run_name: {what}_table, ...}}")
        parts = []
        for name, part in table.items():
            if not isinstance(part, pd.DataFrame):
                raise UserError(f"{func}: run {name!r} is a {type(part).__name__}, "
                                f"not a pandas DataFrame")
            parts.append(part.assign(run=str(name)))
        return pd.concat(parts, ignore_index=True)
    return table


def run_names(table: pd.DataFrame) -> list[str] | None:
    """Run names in order of first appearance, or None when there is no ``run`` column."""
    if "run" not in table.columns:
        return None
    return [str(r) for r in pd.unique(table["run"].astype(str))]


def split_runs(table: pd.DataFrame) -> list[tuple[str | None, pd.DataFrame]]:
    """[(run name or None, rows of that run)] in order of first appearance."""
    names = run_names(table)
    if names is None:
        return [(None, table)]
    runs = table["run"].astype(str)
    return [(name, table[runs == name]) for name in names]


def select_run(table: pd.DataFrame, run: str | None, func: str) -> pd.DataFrame:
    """Rows of one run; ``run=None`` means the only run (or the whole table without runs)."""
    names = run_names(table)
    if names is None:
        if run is not None:
            raise UserError(f"{func}: run={run!r} given but the table has no 'run' column")
        return table
    if run is None:
        if len(names) > 1:
            raise UserError(f"{func}: the table holds {len(names)} runs; pick one with "
                            f"run=<one of {', '.join(names)}>")
        return table
    if str(run) not in names:
        raise UserError(f"{func}: run={run!r} not in the table; runs: {', '.join(names)}")
    return table[table["run"].astype(str) == str(run)]


def run_colors(names: Sequence[str | None]) -> dict:
    """A stable colour per run (seaborn's colour-blind palette, cycled)."""
    palette = sns.color_palette("colorblind", max(len(names), 1))
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def numeric(series: pd.Series) -> np.ndarray:
    """float64 values of a column (non-numbers become NaN)."""
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)


#: Columns holding a fraction in [0, 1], drawn as percent.
PERCENT_COLUMNS = ("global_accuracy", "local_accuracy")


def percent_axis(ax: Axes, axis: str = "y") -> None:
    """Show fractions in [0, 1] on ``axis`` as percent (0.77 -> '77%')."""
    from matplotlib.ticker import PercentFormatter
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(PercentFormatter(xmax=1.0))


def single_point_limits(ax: Axes, xs: np.ndarray, ys: np.ndarray, *, x_is_round: bool,
                        y_is_fraction: bool) -> None:
    """Sensible limits when all points share one x (or one y), e.g. after one round.

    matplotlib would centre a tiny +-0.045 range on the value; instead a round axis
    spans value +- 0.5 with the one tick, a time axis 0 .. 1.1 x value, and a
    fraction 0 .. 100 %.
    """
    xs, ys = xs[np.isfinite(xs)], ys[np.isfinite(ys)]
    if xs.size and np.ptp(xs) == 0:
        x = float(xs[0])
        if x_is_round:
            ax.set_xlim(x - 0.5, x + 0.5)
            ax.set_xticks([x])
        else:
            ax.set_xlim(min(0.0, x) - 0.05 * abs(x or 1.0), max(0.0, x) + 0.1 * abs(x or 1.0))
    if ys.size and np.ptp(ys) == 0:
        y = float(ys[0])
        if y_is_fraction:
            ax.set_ylim(0.0, 1.02)
        else:
            ax.set_ylim(min(0.0, y) - 0.05 * abs(y or 1.0), max(0.0, y) + 0.1 * abs(y or 1.0))


#: Marker of each run, in order: hollow, so that runs meeting at a point stay visible.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
#: Horizontal offset between the markers of consecutive runs on a round axis (rounds),
#: and the widest the runs of one round may spread (so many runs stay near their round).
DODGE = 0.08
DODGE_SPAN = 0.3


def run_markers(names: Sequence[str | None]) -> dict:
    """A marker shape per run (cycled)."""
    return {name: MARKERS[i % len(MARKERS)] for i, name in enumerate(names)}


def dodge(names: Sequence[str | None]) -> dict:
    """x offset per run on a round axis: runs side by side around each round, in
    ``DODGE`` steps (none for a single run), so equal values do not hide each other."""
    n = len(names)
    step = min(DODGE, DODGE_SPAN / (n - 1)) if n > 1 else 0.0
    return {name: (i - (n - 1) / 2) * step for i, name in enumerate(names)}


ASYNC_X_LABEL = "server version (async: one per buffer of client updates)"


def modes_of(table: pd.DataFrame, modes=None) -> dict:
    """{run (or None): 'sync' | 'async'} from ``modes`` (a str for all runs or a mapping)
    or a ``mode`` column of the table; runs not named are 'sync'."""
    names = run_names(table) or [None]
    if isinstance(modes, str):
        return {n: modes for n in names}
    if modes is None and "mode" in table.columns:
        first = table.drop_duplicates("run" if "run" in table.columns else "mode")
        key = first["run"].astype(str) if "run" in table.columns else [None] * len(first)
        modes = dict(zip(key, first["mode"].astype(str)))
    modes = dict(modes or {})
    return {n: str(modes.get(n, "sync")) for n in names}


def finish(ax: Axes, title: str | None, save, dpi: int = DPI, default: str | None = None) -> Figure:
    """Set the title (``default`` when None), save if asked, return the figure of ``ax``."""
    title = title if title is not None else default
    if title is not None:
        ax.set_title(title)
    fig = root_figure(ax)
    save_png(fig, save, dpi)
    return fig


def root_figure(ax: Axes) -> Figure:
    """The top-level figure of ``ax`` (not a sub-figure)."""
    try:
        return ax.get_figure(root=True)
    except TypeError:  # matplotlib < 3.10
        fig = ax.figure
        while getattr(fig, "figure", fig) is not fig:
            fig = fig.figure
        return fig


def placeholder(ax: Axes, message: str) -> None:
    """Write ``message`` in the middle of an empty panel."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes,
            color="#666666")
    ax.set_xticks([])
    ax.set_yticks([])
