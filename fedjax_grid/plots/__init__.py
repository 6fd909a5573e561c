"""Seaborn/matplotlib figures from the engine's tidy records.

Every function takes the records tables (see docs/ARCHITECTURE.md, "Records"),
optionally concatenated over runs with a ``run`` column, returns the matplotlib
``Figure`` and writes it as a PNG when ``save=path.png`` (atomically, dpi 120).
Figures are built without pyplot (backend-safe, never shown); they display in
Jupyter by themselves. Bad or empty input raises ``fedjax_grid.errors.UserError``
(``NoDataError`` for a table with nothing to plot).

    global_accuracy(rounds)          accuracy per round, one line per run
    local_loss(tasks)                local loss across clients per round (band or box)
    label_distribution(label_table)  clients x classes heatmap
    worker_timeline(tasks)           Gantt chart per worker, statuses marked
    participation(tasks)             tasks per client by status (ok: updates folded)
    time_to_accuracy(rounds)         accuracy against wall time
    compare_runs({name: rounds})     several runs, one or more metrics
    dashboard(rounds, tasks)         2x2 live summary
    run_figures(config, records, out) the PNGs every run writes beside its records

Every figure has a title (a default naming what it shows, unless ``title=`` is given).
Accuracies are fractions in [0, 1] in the records and drawn as percent.
"""
from fedjax_grid.plots._base import DPI, STATUS_STYLE, STATUSES, NoDataError, PlotFigure, save_png
from fedjax_grid.plots.curves import compare_runs, global_accuracy, time_to_accuracy, time_to_target
from fedjax_grid.plots.dashboard import dashboard
from fedjax_grid.plots.labels import label_distribution, label_matrix
from fedjax_grid.plots.loss import local_loss, loss_summary
from fedjax_grid.plots.participation import participation, participation_counts
from fedjax_grid.plots.run_figures import run_figures
from fedjax_grid.plots.timeline import worker_timeline

__all__ = [
    "DPI", "STATUSES", "STATUS_STYLE", "NoDataError", "PlotFigure", "save_png",
    "global_accuracy", "local_loss", "loss_summary", "label_distribution", "label_matrix",
    "worker_timeline", "time_to_accuracy", "time_to_target", "compare_runs", "dashboard",
    "run_figures", "participation", "participation_counts",
]
