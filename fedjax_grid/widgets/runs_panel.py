"""``RunsPanel``: the runs stored in a folder, as a table, and any selection plotted together.

The table is ``runner.run_index.runs_table(root)`` (name, preset, mode, status, rounds,
best accuracy, wall time, compile time when the run recorded it); tick runs in the
list below it and **Plot** draws them side by side with ``plots.compare_runs``
(global accuracy and loss; against the round for synchronous runs, against wall time
when an asynchronous run is among them -- its rounds are server versions, not
barriers). **Export** writes the selected runs' per-round scalars as TensorBoard event
files (``<run>/tensorboard``, when tensorboardX is installed). ``RunsPanel.refresh()``
reads the folder again; a ``RunPanel`` passed as ``follow`` refreshes it after each of
its runs. The Dask dashboard of ``grid`` is linked at the top.
"""
from __future__ import annotations

import html
import math
import pathlib
from typing import Optional

import ipywidgets as W
import pandas as pd

from fedjax_grid.errors import UserError

ERROR_STYLE = "color:#b00020"
OK_STYLE = "color:#1b7f3b"
_CELL = "padding:2px 10px;border-bottom:1px solid #ddd;text-align:{align}"
_LINK = "color:#1565c0;text-decoration:underline"
#: Shown columns and their headers (the DataFrame keeps the short names).
HEADERS = {"run": "run", "preset": "preset", "mode": "mode", "model": "model", "status": "status",
           "rounds": "rounds", "best_accuracy": "best accuracy", "wall_s": "wall time",
           "compile_s": "compile time"}
_RIGHT = ("rounds", "best_accuracy", "wall_s", "compile_s")


def _duration(seconds: float) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_cell(column: str, value) -> str:
    """A table cell as text: accuracy in %, times in s / min / h, '–' when unknown."""
    if column == "best_accuracy":
        return "–" if value is None or not math.isfinite(value) else f"{100 * value:.1f} %"
    if column in ("wall_s", "compile_s"):
        return _duration(value)
    return str(value) if value not in (None, "") else "–"


def runs_html(table: pd.DataFrame, root: str = "") -> str:
    """The runs table as HTML (inline styles: widget HTML gets no JupyterLab table style)."""
    if table.empty:
        return f"<p>no runs in {html.escape(root)} yet</p>"
    cols = list(HEADERS)
    th = "".join(f'<th style="{_CELL.format(align="right" if c in _RIGHT else "left")}">'
                 f"{html.escape(HEADERS[c])}</th>" for c in cols)
    rows = []
    for _, r in table.iterrows():
        tds = "".join(f'<td style="{_CELL.format(align="right" if c in _RIGHT else "left")}">'
                      f"{html.escape(format_cell(c, r[c]))}</td>" for c in cols)
        rows.append(f"<tr>{tds}</tr>")
    return (f'<p>{len(table)} run(s) in {html.escape(root)}</p>'
            f'<table class="fedjax-grid-runs" style="border-collapse:collapse">'
            f"<thead><tr>{th}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def dashboard_link_html(link: Optional[str]) -> str:
    """'Dask dashboard: <link>' (clickable), or a line saying there is no cluster."""
    if not link:
        return "<p>Dask dashboard: no cluster attached to this panel</p>"
    link = html.escape(link, quote=True)
    return (f'<p>Dask dashboard: <a href="{link}" target="_blank" rel="noopener" '
            f'style="{_LINK}">{link}</a></p>')


class RunsPanel:
    """Browse and compare the runs under ``root``; ``display(panel)`` shows it.

    root: a folder of runs (default ``runs``: the CLI's, or a notebook's output folder).
    grid: a ``GridHandle`` whose dashboard is linked (optional). follow: a ``RunPanel``
    whose finished runs refresh this table. Attributes: ``table`` (the DataFrame),
    ``select`` (the run list), ``figure`` (the last comparison), ``status``.
    """

    def __init__(self, root="runs", *, grid=None, follow=None):
        self.root = pathlib.Path(root)
        self.grid = grid
        self.table = pd.DataFrame()
        self.figure = None
        self.link = W.HTML()
        self.html = W.HTML()
        self.select = W.SelectMultiple(options=[], rows=6, description="compare",
                                       layout={"width": "640px"})
        self.metric = W.Dropdown(options=[("accuracy and loss", "global_accuracy,global_loss"),
                                          ("accuracy", "global_accuracy"),
                                          ("round time", "round_time_s"),
                                          ("bytes sent", "bytes_sent")],
                                 value="global_accuracy,global_loss", description="plot")
        self.refresh_button = W.Button(description="Refresh", icon="refresh")
        self.plot_button = W.Button(description="Plot", icon="line-chart")
        self.export_button = W.Button(description="Export to TensorBoard", icon="upload",
                                      layout={"width": "200px"})
        self.status = W.HTML()
        self.output = W.Output()
        self.refresh_button.on_click(lambda _: self.refresh())
        self.plot_button.on_click(lambda _: self._guard(self.plot))
        self.export_button.on_click(lambda _: self._guard(self.export))
        self.box = W.VBox([self.link, W.HBox([self.refresh_button]), self.html, self.select,
                           W.HBox([self.metric, self.plot_button, self.export_button]),
                           self.status, self.output])
        if follow is not None:
            follow.finished_callbacks.append(lambda *_: self.refresh())
        self.refresh()

    def _ipython_display_(self):
        from IPython.display import display
        display(self.box)

    def refresh(self) -> pd.DataFrame:
        """Read the folder again and redraw the table (the selection is kept)."""
        from fedjax_grid.runner.run_index import runs_table
        link = getattr(self.grid, "dashboard_link", None)
        if getattr(self.grid, "closed", False):
            link = None
        self.link.value = dashboard_link_html(link)
        try:
            self.table = runs_table(self.root) if self.root.is_dir() else pd.DataFrame(
                columns=list(HEADERS) + ["path"])
        except UserError as e:
            self.status.value = _html(str(e), ERROR_STYLE)
            return self.table
        self.html.value = runs_html(self.table, str(self.root.resolve()))
        kept = set(self.select.value)
        options = [(f"{r['run']} · {r['mode']} · {r['status']} · {r['rounds']}", r["path"])
                   for _, r in self.table.iterrows()]
        self.select.options = options
        self.select.value = tuple(p for _, p in options if p in kept)
        return self.table

    def _selected(self) -> pd.DataFrame:
        if not self.select.value:
            raise UserError("no runs selected: tick one or more runs in the list")
        return self.table[self.table["path"].isin(self.select.value)]

    def plot(self, paths=None):
        """Compare the selected runs (or the run folders ``paths``); returns the figure."""
        from fedjax_grid import plots
        from fedjax_grid.runner.run_index import load_rounds
        chosen = self._selected() if paths is None else self.table[self.table["path"].isin(
            [str(pathlib.Path(p).resolve()) for p in paths])]
        rounds = load_rounds(chosen["path"], labels=chosen["run"])
        is_async = (chosen["mode"] == "async").any()
        metrics = self.metric.value.split(",")
        self.figure = plots.compare_runs(rounds, metric=metrics if len(metrics) > 1 else metrics[0],
                                         x="elapsed_s" if is_async else "round",
                                         title=f"{len(chosen)} run(s) from {self.root}")
        import base64

        from fedjax_grid.widgets.run_panel import figure_png
        self.output.outputs = ({"output_type": "display_data",
                                "data": {"image/png": base64.b64encode(figure_png(self.figure)).decode(),
                                         "text/plain": "<runs compared>"}, "metadata": {}},)
        self.status.value = _html(f"plotted {len(chosen)} run(s)"
                                  + (" against wall time (an asynchronous run is among them)"
                                     if is_async else ""), OK_STYLE)
        return self.figure

    def export(self) -> list[pathlib.Path]:
        """Write the selected runs' rounds as TensorBoard event files; returns their folders."""
        from fedjax_grid import tracking
        if not tracking.available("tensorboard"):
            raise UserError("export to TensorBoard needs the tensorboardX package, which is not "
                            "installed; allowed: pip install tensorboardX")
        out = []
        for path in self._selected()["path"]:
            tracking.export(path, tensorboard=True)
            out.append(pathlib.Path(path) / "tensorboard")
        self.status.value = _html(f"wrote TensorBoard event files for {len(out)} run(s); view "
                                  f"them with: tensorboard --logdir {self.root}", OK_STYLE)
        return out

    def _guard(self, action) -> None:
        try:
            action()
        except UserError as e:
            self.status.value = _html(str(e), ERROR_STYLE)


def _html(text: str, style: str) -> str:
    return f'<span style="{style}">{html.escape(text)}</span>'
