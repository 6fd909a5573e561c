"""``ClusterPanel``: the Dask workers of a grid as an HTML table, and its dashboard link.

``worker_table(workers, tasks)`` is the pure part: one row per worker with its
address, name, threads, memory limit (GiB), tasks done (status ok) and failures
(status failed) taken from the engine's tasks table; ``ClusterPanel.refresh()``
reads ``client.scheduler_info()`` and the records again and redraws.
"""
from __future__ import annotations

import html
from typing import Optional

import ipywidgets as W
import pandas as pd

COLUMNS = ["address", "name", "threads", "memory_gib", "tasks_done", "failures", "late",
           "rejected"]


def worker_table(workers: dict, tasks: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """Workers x COLUMNS.

    workers: ``client.scheduler_info()['workers']`` (address -> info dict with
    ``name``, ``nthreads``, ``memory_limit`` in bytes). tasks: the engine's tasks
    table (``worker``, ``status``) or None. Workers that ran tasks but have left
    the cluster are listed too (name ``'(gone)'``).
    """
    counts: dict = {}
    if tasks is not None and len(tasks):
        for (worker, status), n in tasks.groupby(["worker", "status"]).size().items():
            if worker:
                counts.setdefault(worker, {})[status] = int(n)
    rows = []
    for addr in sorted(set(workers) | set(counts)):
        info = workers.get(addr)
        c = counts.get(addr, {})
        rows.append({
            "address": addr,
            "name": str(info.get("name", "")) if info else "(gone)",
            "threads": int(info.get("nthreads", 0)) if info else 0,
            "memory_gib": round(float(info.get("memory_limit") or 0) / 2**30, 2) if info else 0.0,
            "tasks_done": c.get("ok", 0), "failures": c.get("failed", 0),
            "late": c.get("late", 0), "rejected": c.get("rejected", 0),
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def table_html(table: pd.DataFrame, dashboard_link: Optional[str] = None) -> str:
    """The worker table as HTML, preceded by the dashboard link when given."""
    head = ""
    if dashboard_link:
        link = html.escape(dashboard_link, quote=True)
        head = f'<p>Dask dashboard: <a href="{link}" target="_blank">{link}</a></p>'
    body = table.to_html(index=False, escape=True, border=0, classes="fedjax-grid-workers")
    return f"{head}<p>{len(table)} worker(s)</p>{body}"


class ClusterPanel:
    """Workers of ``grid`` (a ``GridHandle``) with their task counts; ``display(panel)``.

    records: where task counts come from: a ``FederatedRun``, a ``RunPanel``
    (its current run), anything with ``.tasks()``, a tasks DataFrame, or None.
    """

    def __init__(self, grid, records=None):
        self.grid = grid
        self.records = records
        self.html = W.HTML()
        self.refresh_button = W.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.box = W.VBox([self.refresh_button, self.html])
        self.table: pd.DataFrame = pd.DataFrame(columns=COLUMNS)
        self.refresh()

    def _ipython_display_(self):
        from IPython.display import display
        display(self.box)

    def _tasks(self) -> Optional[pd.DataFrame]:
        src = self.records
        if src is None:
            return None
        if isinstance(src, pd.DataFrame):
            return src
        if hasattr(src, "run") and hasattr(src, "config_panel"):  # a RunPanel
            src = src.run
            if src is None:
                return None
        if hasattr(src, "records"):  # a FederatedRun
            src = src.records
        return src.tasks()

    def refresh(self) -> pd.DataFrame:
        """Query the scheduler again, redraw the table; return it."""
        self.table = worker_table(self.grid.workers(), self._tasks())
        self.html.value = table_html(self.table, self.grid.dashboard_link)
        return self.table
