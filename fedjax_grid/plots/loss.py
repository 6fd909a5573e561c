"""Local-model training loss per round, as a distribution across the clients."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fedjax_grid.errors import UserError
from fedjax_grid.plots import _base

KINDS = ("band", "box")
BANDS = ("iqr", "minmax", "std")


def loss_summary(tasks: pd.DataFrame, band: str = "iqr") -> pd.DataFrame:
    """Per (run, round) mean local loss and band limits over the clients' ok tasks.

    tasks: columns ``round, local_loss, status`` (+ optional ``run``).
    band: ``'iqr'`` (25th-75th percentile), ``'minmax'`` or ``'std'`` (mean +- 1 sd).
    Returns DataFrame[run, round, mean, low, high, clients] (``run`` None without runs).
    """
    func = "local_loss"
    if band not in BANDS:
        raise UserError(f"{func}: band={band!r} is not allowed; use one of {', '.join(BANDS)}")
    ok = _ok_rows(tasks, func)
    rows = []
    for name, part in _base.split_runs(ok):
        frame = pd.DataFrame({"round": _base.numeric(part["round"]),
                              "loss": _base.numeric(part["local_loss"])}).dropna()
        grouped = frame.groupby("round")["loss"]
        stats = grouped.agg(["mean", "count", "min", "max", "std"])
        if band == "iqr":
            low, high = grouped.quantile(0.25), grouped.quantile(0.75)
        elif band == "minmax":
            low, high = stats["min"], stats["max"]
        else:
            sd = stats["std"].fillna(0.0)
            low, high = stats["mean"] - sd, stats["mean"] + sd
        rows.append(pd.DataFrame({"run": name, "round": stats.index.to_numpy(),
                                  "mean": stats["mean"].to_numpy(),
                                  "low": low.to_numpy(), "high": high.to_numpy(),
                                  "clients": stats["count"].to_numpy()}))
    return pd.concat(rows, ignore_index=True)


def _ok_rows(tasks: pd.DataFrame, func: str) -> pd.DataFrame:
    _base.check_table(tasks, ["round", "local_loss", "status"], "tasks", func)
    ok = tasks[(tasks["status"].astype(str) == "ok")
               & np.isfinite(_base.numeric(tasks["local_loss"]))]
    if len(ok) == 0:
        raise _base.NoDataError(f"{func}: the tasks table has no row with status 'ok' and a "
                        f"finite local_loss (statuses: "
                        f"{', '.join(sorted(map(str, pd.unique(tasks['status']))))})")
    return ok


def local_loss(tasks: pd.DataFrame, ax: Axes | None = None,
               save: str | os.PathLike | None = None, *, kind: str = "band",
               band: str = "iqr", title: str | None = None, mode=None,
               dpi: int = _base.DPI) -> Figure:
    """Local-model loss per round across clients (status == 'ok' tasks only).

    kind='band': the mean over clients as a line with a shaded band (``band``:
    'iqr' | 'minmax' | 'std'), one line + band per run.
    kind='box': a box per round (grouped by run when there is a ``run`` column).
    tasks: columns ``round, local_loss, status`` (+ optional ``run``). mode: 'async' (or
    {run: mode}, or a ``mode`` column) labels the axis as server versions.
    """
    func = "local_loss"
    if kind not in KINDS:
        raise UserError(f"{func}: kind={kind!r} is not allowed; use one of {', '.join(KINDS)}")
    ok = _ok_rows(tasks, func)
    ax = _base.new_axes(ax)
    runs = _base.run_names(ok)
    if kind == "band":
        summary = loss_summary(tasks, band)
        names = list(pd.unique(summary["run"])) if runs is not None else [None]
        colors = _base.run_colors(names)
        for name in names:
            part = summary if name is None else summary[summary["run"] == name]
            marker = "o" if len(part) <= 30 else None
            ax.plot(part["round"], part["mean"], color=colors[name], marker=marker,
                    markersize=5, markerfacecolor="white", markeredgewidth=1.3, linewidth=1.6,
                    label=name if name is not None else "_nolegend_")
            ax.fill_between(part["round"].to_numpy(dtype=float),
                            part["low"].to_numpy(dtype=float),
                            part["high"].to_numpy(dtype=float),
                            color=colors[name], alpha=0.22, linewidth=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _base.single_point_limits(ax, _base.numeric(summary["round"]),
                                  np.concatenate([summary["low"].to_numpy(float),
                                                  summary["high"].to_numpy(float)]),
                                  x_is_round=True, y_is_fraction=False)
        if runs is not None:
            ax.legend(title="run", fontsize="small", title_fontsize="small")
        ylabel = f"local training loss (mean, {band} band)"
    else:
        data = pd.DataFrame({"round": _base.numeric(ok["round"]).astype(np.int64),
                             "local_loss": _base.numeric(ok["local_loss"])})
        hue = None
        if runs is not None:
            data["run"] = ok["run"].astype(str).to_numpy()
            hue = "run"
        sns.boxplot(data=data, x="round", y="local_loss", hue=hue, ax=ax,
                    fliersize=2, linewidth=0.8,
                    palette=_base.run_colors(runs) if runs is not None else None,
                    color=None if runs is not None else _base.run_colors([None])[None])
        if runs is not None and ax.get_legend() is not None:
            ax.get_legend().set_title("run")
        ylabel = "local training loss"
    modes = _base.modes_of(tasks, mode)
    ax.set_xlabel(_base.ASYNC_X_LABEL if all(m == "async" for m in modes.values()) else "round")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return _base.finish(ax, title, save, dpi, default="local training loss across clients")
