"""``ClusterPanel``: the Dask workers of a grid as an HTML table, and its dashboard link.

``worker_table(workers, tasks)`` is the pure part: one row per worker with its
address, name (its ``dask worker --name``; '' when it has none), threads, memory limit
(GiB), tasks done (status ok) and failures (status failed) taken from the engine's
tasks table; ``ClusterPanel.refresh()`` reads ``client.scheduler_info()`` and the records again and redraws.
"""
from __future__ import annotations

import html
from typing import Optional

import ipywidgets as W
import pandas as pd

from fedjax_grid.grid.tasks import worker_label

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
            "name": worker_label(info.get("name"), addr) if info else "(gone)",
            "threads": int(info.get("nthreads", 0)) if info else 0,
            "memory_gib": round(float(info.get("memory_limit") or 0) / 2**30, 2) if info else 0.0,
            "tasks_done": c.get("ok", 0), "failures": c.get("failed", 0),
            "late": c.get("late", 0), "rejected": c.get("rejected", 0),
        })
    return pd.DataFrame(rows, columns=COLUMNS)


#: Column headers shown in the panel (the DataFrame keeps the short names).
HEADERS = {"address": "address", "name": "name", "threads": "threads",
           "memory_gib": "memory (GiB)", "tasks_done": "tasks ok", "failures": "failed",
           "late": "late", "rejected": "rejected"}
#: Inline styles: widget HTML gets none of JupyterLab's table or link styles.
_CELL = "padding:2px 12px;border-bottom:1px solid #ddd;text-align:{align}"
_LINK = "color:#1565c0;text-decoration:underline"


def table_html(table: pd.DataFrame, dashboard_link: Optional[str] = None) -> str:
    """The worker table as HTML (named headers, padded cells), after a clickable dashboard link."""
    head = ""
    if dashboard_link:
        link = html.escape(dashboard_link, quote=True)
        head = (f'<p>Dask dashboard: <a href="{link}" target="_blank" rel="noopener" '
                f'style="{_LINK}">{link}</a></p>')
    cols = list(dict.fromkeys(["name", "address", *table.columns]))
    num = {c: pd.api.types.is_numeric_dtype(table[c]) for c in cols}
    th = "".join(f'<th style="{_CELL.format(align="right" if num[c] else "left")}">'
                 f"{html.escape(HEADERS.get(c, c))}</th>" for c in cols)
    rows = []
    for _, r in table.iterrows():
        tds = "".join(f'<td style="{_CELL.format(align="right" if num[c] else "left")}">'
                      f"{html.escape(str(r[c]))}</td>" for c in cols)
        rows.append(f"<tr>{tds}</tr>")
    body = (f'<table class="fedjax-grid-workers" style="border-collapse:collapse">'
            f"<thead><tr>{th}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    return f"{head}<p>{len(table)} worker(s)</p>{body}"


class ClusterPanel:
    """Workers of ``grid`` (a ``GridHandle``) with their task counts; ``display(panel)``.

    records: where task counts come from: a ``FederatedRun``, a ``RunPanel``
    (its current run; the table then refreshes itself after every round), anything
    with ``.tasks()``, a tasks DataFrame, or None. Display the panel itself (one live
    table); ``.table`` is the same data as a DataFrame, for code.
    """

    def __init__(self, grid, records=None):
        self.grid = grid
        self._records = None
        self.html = W.HTML()
        self.refresh_button = W.Button(description="Refresh", icon="refresh")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.box = W.VBox([self.refresh_button, self.html])
        self.table: pd.DataFrame = pd.DataFrame(columns=COLUMNS)
        self.records = records

    @property
    def records(self):
        return self._records

    @records.setter
    def records(self, src) -> None:
        """Set where task counts come from; a RunPanel refreshes the table after every round."""
        old = self._records
        if hasattr(old, "round_callbacks") and self._on_round in old.round_callbacks:
            old.round_callbacks.remove(self._on_round)
        self._records = src
        if hasattr(src, "round_callbacks"):
            src.round_callbacks.append(self._on_round)
        self.refresh()

    def _on_round(self, row=None) -> None:
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
        """Query the scheduler again, redraw the table; return it.

        A closed grid (e.g. after ``grid.close()``) is said in one line instead.
        """
        if getattr(self.grid, "closed", False):
            self.html.value = ("<p>the grid is closed (<code>grid.close()</code> ran); open it "
                               "again with <code>open_cluster(cfg.grid)</code> and make a new "
                               "ClusterPanel</p>")
            return self.table
        self.table = worker_table(self.grid.workers(), self._tasks())
        self.html.value = table_html(self.table, self.grid.dashboard_link)
        return self.table


def dashboard_html(grid) -> str:
    """A clickable link to ``grid``'s Dask dashboard and its worker count, as HTML."""
    link = html.escape(grid.dashboard_link or "", quote=True)
    return (f'Dask dashboard: <a href="{link}" target="_blank" rel="noopener" '
            f'style="{_LINK}">{link}</a> &middot; {len(grid.workers())} workers')
