"""Who the global model learned from: tasks per client, stacked by status.

On a heterogeneous grid the fast desktops' clients fill the rounds and a slow desktop's
clients may contribute nothing (a bias with non-IID data). The bar of each client counts
its task rows by status; the ``ok`` part (at the bottom) is the updates folded into the
global model. The dashed line is an equal share of the folded updates; a client that
contributed nothing is labelled in red. ``participation.csv`` holds the same counts.
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fedjax_grid.errors import UserError
from fedjax_grid.plots import _base


def participation_counts(tasks: pd.DataFrame, num_clients: Optional[int] = None) -> pd.DataFrame:
    """Task rows per (client, status), clients 0..num_clients-1 (default: the largest seen
    + 1) even without rows: DataFrame[client, status, tasks] (long form, statuses in the
    records' order)."""
    _base.check_table(tasks, ["client", "status"], "tasks", "participation")
    clients = _base.numeric(tasks["client"])
    if np.isnan(clients).any() or (clients < 0).any():
        raise UserError("participation: the tasks table's client column must hold client "
                        "numbers >= 0")
    n = int(clients.max()) + 1 if num_clients is None else int(num_clients)
    if n < int(clients.max()) + 1:
        raise UserError(f"participation: num_clients={num_clients} but the tasks name client "
                        f"{int(clients.max())}; at least {int(clients.max()) + 1} is required")
    seen = [str(s) for s in pd.unique(tasks["status"].astype(str))]
    statuses = [s for s in _base.STATUSES if s in seen] + [s for s in seen if s not in _base.STATUSES]
    table = (pd.DataFrame({"client": clients.astype(int), "status": tasks["status"].astype(str)})
             .groupby(["client", "status"]).size()
             .reindex(pd.MultiIndex.from_product([range(n), statuses], names=["client", "status"]),
                      fill_value=0))
    return table.rename("tasks").reset_index()


def participation(tasks: pd.DataFrame, ax: Axes | None = None,
                  save: str | os.PathLike | None = None, *, num_clients: Optional[int] = None,
                  run: str | None = None, title: str | None = None, dpi: int = _base.DPI) -> Figure:
    """Tasks per client stacked by status (``ok`` = updates folded, at the bottom), an equal
    share of the folded updates dashed, clients that contributed nothing in red.

    tasks: columns ``client, status`` (+ optional ``run``: pick one with ``run=``).
    num_clients: C (clients that never ran still get a bar); default the largest seen + 1.
    """
    tasks = _base.select_run(tasks, run, "participation") if "run" in tasks.columns else tasks
    counts = participation_counts(tasks, num_clients)
    ax = _base.new_axes(ax, figsize=(max(6.4, 0.3 * counts["client"].nunique() + 2.5), 3.6))
    statuses = list(pd.unique(counts["status"]))
    palette = {s: _base.status_style(s)["color"] for s in statuses}
    # seaborn stacks the last of hue_order at the bottom: ok there, the legend in stack order
    sns.histplot(counts, x="client", weights="tasks", hue="status", hue_order=statuses[::-1],
                 multiple="stack", discrete=True, shrink=0.8, palette=palette, ax=ax,
                 edgecolor="white", linewidth=0.5, alpha=1.0)
    folded = counts[counts["status"] == "ok"].set_index("client")["tasks"]
    n = counts["client"].nunique()
    if folded.sum() > 0:
        ax.axhline(folded.sum() / n, color="#333333", linestyle="--", linewidth=1,
                   label="equal share of folded")
    _label_clients(ax, n, folded)
    ax.set_xlabel("client")
    ax.set_ylabel("tasks (ok: updates folded)")
    total = int(folded.sum())
    none = int((folded.reindex(range(n), fill_value=0) == 0).sum())
    default = f"participation per client: {total} updates folded" + (
        f", {none} client(s) none" if none and total else "")
    return _base.finish(ax, title, save, dpi, default=default)


def _label_clients(ax: Axes, n: int, folded: pd.Series) -> None:
    """Every client a tick (thinned beyond 40); those that folded nothing in red."""
    step = max(1, int(np.ceil(n / 40)))
    ticks = list(range(0, n, step))
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(k) for k in ticks], rotation=90 if n > 20 else 0)
    if folded.sum() > 0:
        for tick, k in zip(ax.get_xticklabels(), ticks):
            if int(folded.get(k, 0)) == 0:
                tick.set_color("#d62728")
                tick.set_fontweight("bold")
    ax.set_xlim(-0.6, n - 0.4)
