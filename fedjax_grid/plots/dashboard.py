"""A 2x2 summary figure for the live notebook panel.

Panels: global accuracy per round (top left), local loss band across clients
(top right), per-worker timeline of one run (bottom left), accuracy against wall
time (bottom right). Built to be redrawn every round: pass the previous figure
as ``fig=`` and it is cleared and refilled (no new figure, nothing registered
with pyplot); the local-loss panel uses the mean + band (no per-round boxes)
and the timeline draws one collection per status.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fedjax_grid.errors import UserError
from fedjax_grid.plots import _base
from fedjax_grid.plots.curves import global_accuracy, time_to_accuracy
from fedjax_grid.plots.loss import local_loss
from fedjax_grid.plots.timeline import worker_timeline

FIGSIZE = (12.0, 7.5)


def dashboard(rounds: pd.DataFrame, tasks: pd.DataFrame, fig: Figure | None = None,
              save: str | os.PathLike | None = None, *, run: str | None = None,
              target: float | None = None, title: str | None = None,
              name: str | None = None, total: int | None = None, mode=None,
              dpi: int = _base.DPI) -> Figure:
    """2x2 summary: accuracy, local loss, worker timeline, time-to-accuracy.

    rounds, tasks: the engine's tables (optionally with a ``run`` column; the
    curves then show every run, the timeline shows ``run`` or, by default, the
    last run in the table — the live one).
    fig: a figure to clear and redraw into (e.g. the one returned last round).
    name, total: the run's name and its number of rounds, for the default title
    ('quickstart · round 3/8 · accuracy 97.2 % · 21.4 s'; rounds count from 1).
    mode: 'async' (or {run: mode}) draws the accuracy against server versions.
    A panel whose data is not there yet (no round finished, no ok task) shows a
    short message instead; both tables empty raises ``UserError``.
    """
    func = "dashboard"
    for which, table in (("rounds", rounds), ("tasks", tasks)):
        if not isinstance(table, pd.DataFrame):
            raise UserError(f"{func}: {which} table must be a pandas DataFrame, "
                            f"got {type(table).__name__}")
    if len(rounds) == 0 and len(tasks) == 0:
        raise UserError(f"{func}: the rounds and tasks tables are both empty; "
                        f"draw the dashboard after the first round has finished")
    if fig is None:
        fig = _base.PlotFigure(figsize=FIGSIZE, layout="constrained")
    else:
        fig.clear()
    (ax_acc, ax_loss), (ax_time, ax_tta) = fig.subplots(2, 2)

    if run is None:
        names = _base.run_names(tasks) if len(tasks) else None
        run = names[-1] if names else None
    per = "server version" if mode == "async" else "round"
    _panel(ax_acc, "no evaluated round yet",
           lambda: global_accuracy(rounds, ax=ax_acc, mode=mode,
                                   title=f"global test accuracy per {per}"))
    _panel(ax_loss, "no successful client task yet",
           lambda: local_loss(tasks, ax=ax_loss, mode=mode, title="local loss across clients"))
    timeline_rounds = rounds if len(rounds) and "elapsed_s" in rounds.columns else None
    if timeline_rounds is not None and run is not None and "run" in rounds.columns \
            and str(run) not in set(rounds["run"].astype(str)):
        timeline_rounds = None
    _panel(ax_time, "no task recorded yet",
           lambda: worker_timeline(tasks, ax=ax_time, rounds=timeline_rounds, run=run,
                                   label_clients=False,
                                   title="worker timeline" + (f" ({run})" if run else "")))
    _panel(ax_tta, "no evaluated round yet",
           lambda: time_to_accuracy(rounds, ax=ax_tta, target=target,
                                    title="accuracy vs wall time"))
    fig.suptitle(title if title is not None else _summary(rounds, name, total, mode))
    _base.save_png(fig, save, dpi)
    return fig


def _panel(ax, message: str, draw) -> None:
    """Draw a panel; when its data is not there yet (``NoDataError``) show ``message``."""
    try:
        draw()
    except _base.NoDataError:
        ax.clear()
        _base.placeholder(ax, message)


def _summary(rounds: pd.DataFrame, name: str | None = None, total: int | None = None,
             mode=None) -> str:
    """'quickstart · round 7/8 · accuracy 81.2 % · 93.4 s' from the last row."""
    if len(rounds) == 0 or "round" not in rounds.columns:
        return " · ".join(p for p in (name, "waiting for the first round") if p)
    last = rounds.iloc[-1]
    rnd = last["round"]
    if isinstance(rnd, (int, float, np.integer, np.floating)) and float(rnd).is_integer():
        rnd = int(rnd)
    parts = [f"{'version' if mode == 'async' else 'round'} {rnd}"
             + (f"/{int(total)}" if total else "")]
    if "run" in rounds.columns:
        parts.insert(0, str(last["run"]))
    elif name:
        parts.insert(0, str(name))
    acc = last.get("global_accuracy", np.nan)
    if pd.notna(acc):
        parts.append(f"accuracy {100 * float(acc):.1f} %")
    el = last.get("elapsed_s", np.nan)
    if pd.notna(el):
        parts.append(f"{float(el):.1f} s")
    return " · ".join(parts)
