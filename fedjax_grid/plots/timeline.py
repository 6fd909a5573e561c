"""Per-worker Gantt chart of the tasks of one run.

One row per Dask worker, one bar per task from ``start_s`` to ``end_s`` (seconds
since the run started), coloured and hatched by status: ok (green, plain), late
(orange, //), failed (red, xx), rejected (purple, \\\\), offline (grey, ..).
Bars of a status are one ``PolyCollection``, so thousands of tasks draw fast.
Tasks without a duration (e.g. an offline client, recorded with start == end and
no worker) are drawn as a tick mark at whichever time is known, or not at all;
their status is still in the legend. Tasks with no worker get a row of their own,
``(no worker)``.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory

from fedjax_grid.plots import _base

BAR_HEIGHT = 0.7
#: Row of the tasks that never reached a worker (offline clients: worker '' or missing).
NO_WORKER = "(no worker)"
#: Up to this many tasks, each bar carries its client id.
LABEL_MAX_TASKS = 40
#: Up to this many rounds, the boundaries carry their round number.
LABEL_MAX_ROUNDS = 30
#: Round numbers closer than this fraction of the time span to the previous one are left out.
LABEL_MIN_GAP = 0.035


def _worker_label(worker: str) -> str:
    return worker[len("tcp://"):] if worker.startswith("tcp://") else worker


def _display_names(tasks: pd.DataFrame, workers) -> dict:
    """Worker key -> its label: the ``worker_name`` recorded for it when there is one
    (``dask worker --name``), else the address without ``tcp://``."""
    names = {}
    if "worker_name" in tasks.columns:
        for addr, name in zip(tasks["worker"].astype(object), tasks["worker_name"].astype(object)):
            if isinstance(addr, str) and isinstance(name, str) and name.strip():
                names[addr.strip()] = name.strip()
    return {w: names.get(w, _worker_label(w)) for w in workers}


def status_order(statuses) -> list[str]:
    """The statuses present, known ones in ``STATUSES`` order, unknown ones after."""
    present = [str(s) for s in pd.unique(pd.Series(list(statuses), dtype=object))]
    known = [s for s in _base.STATUSES if s in present]
    return known + sorted(s for s in present if s not in _base.STATUSES)


def worker_timeline(tasks: pd.DataFrame, ax: Axes | None = None,
                    save: str | os.PathLike | None = None, *,
                    rounds: pd.DataFrame | None = None, run: str | None = None,
                    label_clients: bool | None = None, legend: bool = True,
                    title: str | None = None, dpi: int = _base.DPI) -> Figure:
    """Gantt chart of tasks per worker, with late/failed/rejected/offline marked.

    tasks: columns ``worker, start_s, end_s, status`` (+ ``client`` for bar labels,
    ``run`` to pick one run with ``run=`` when several are concatenated,
    ``worker_name`` to label the rows by worker name instead of address).
    rounds: optional rounds table; its ``elapsed_s`` (end of each round) are
    drawn as dashed vertical round boundaries.
    label_clients: write the client id on each bar (default: at most 40 tasks).
    The legend has one entry per status present, labelled with the status name.
    """
    func = "worker_timeline"
    _base.check_table(tasks, ["worker", "start_s", "end_s", "status"], "tasks", func)
    tasks = _base.select_run(tasks, run, func)
    names, y = _worker_rows(tasks)
    start = _base.numeric(tasks["start_s"])
    end = _base.numeric(tasks["end_s"])
    status = tasks["status"].astype(str).to_numpy()
    has_bar = np.isfinite(start) & np.isfinite(end) & (end > start)

    if ax is None:
        height = min(max(2.6, 0.45 * len(names) + 1.6), 14.0)
        ax = _base.new_axes(None, figsize=(8.0, height))
    else:
        ax = _base.new_axes(ax)

    statuses = status_order(status)
    edge_width = 0.6 if has_bar.sum() <= 200 else 0.0   # edges would blacken dense charts
    for st in statuses:
        _draw_status(ax, st, status == st, has_bar, start, end, y, edge_width)
    if label_clients is None:
        label_clients = len(tasks) <= LABEL_MAX_TASKS
    if label_clients and "client" in tasks.columns:
        _label_bars(ax, _bar_labels(tasks)[has_bar], start[has_bar], end[has_bar], y[has_bar])
    if rounds is not None:
        _base.check_table(rounds, ["round", "elapsed_s"], "rounds", func)
        rounds = _base.select_run(rounds, run, func)
        _round_boundaries(ax, rounds, prefix="v" if _versions_differ(tasks) else "r")
    _time_axis(ax, start, end, rounds)
    numbered = rounds is not None and len(rounds) <= LABEL_MAX_ROUNDS
    top = -0.95 if numbered else -0.6   # room for the round numbers
    ax.set_ylim(top, len(names) - 0.4)
    shown = _display_names(tasks, names)
    ax.set_yticks(range(len(names)), [shown[n] for n in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_ylabel("worker")
    if legend:
        _status_legend(ax, statuses)
    return _base.finish(ax, title, save, dpi, default=f"worker timeline{f' ({run})' if run else ''}"
                                                     ": tasks per worker, by status")


def _worker_rows(tasks: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """The sorted worker keys (``NO_WORKER`` for tasks without one) and each task's row."""
    workers = tasks["worker"].astype(object).where(tasks["worker"].notna(), "")
    workers = workers.astype(str).str.strip().replace("", NO_WORKER).to_numpy()
    names = sorted(pd.unique(workers))
    row_of = {w: i for i, w in enumerate(names)}
    return names, np.array([row_of[w] for w in workers], dtype=np.float64)


def _draw_status(ax: Axes, st: str, of_status: np.ndarray, has_bar: np.ndarray,
                 start: np.ndarray, end: np.ndarray, y: np.ndarray, edge_width: float) -> None:
    """The tasks of one status: bars from start to end, ticks for instants."""
    style = _base.status_style(st)
    sel = of_status & has_bar
    if sel.any():
        x0, x1, yc = start[sel], end[sel], y[sel]
        lo, hi = yc - BAR_HEIGHT / 2, yc + BAR_HEIGHT / 2
        verts = np.stack([np.stack([x0, lo], -1), np.stack([x0, hi], -1),
                          np.stack([x1, hi], -1), np.stack([x1, lo], -1)], axis=1)
        ax.add_collection(PolyCollection(
            verts, facecolors=style["color"], edgecolors=style["edgecolor"],
            linewidths=edge_width, hatch=style["hatch"] or None, label=st, zorder=2))
    instant = of_status & ~has_bar
    t = np.where(np.isfinite(start), start, end)[instant]
    if np.isfinite(t).any():
        ok_t = np.isfinite(t)
        ax.scatter(t[ok_t], y[instant][ok_t], marker="|", s=160, linewidths=2.5,
                   color=style["color"], zorder=3)


def _versions_differ(tasks: pd.DataFrame) -> bool:
    """Whether tasks trained from versions other than their round's (asynchronous runs:
    their 'rounds' are server versions)."""
    if "version" not in tasks.columns or "round" not in tasks.columns:
        return False
    version = pd.to_numeric(tasks["version"], errors="coerce")
    return bool((version.notna() & (version != tasks["round"] - 1)).any())


def _bar_labels(tasks: pd.DataFrame) -> np.ndarray:
    """``c<client>``, or ``c<client> v<version>`` when tasks trained from versions other
    than their round's (asynchronous aggregation: the global version each started from)."""
    clients = tasks["client"].astype(str).to_numpy()
    if not _versions_differ(tasks):
        return np.array([f"c{c}" for c in clients])
    version = pd.to_numeric(tasks["version"], errors="coerce")
    return np.array([f"c{c}" if pd.isna(v) else f"c{c} v{int(v)}"
                     for c, v in zip(clients, version)])


def _label_bars(ax: Axes, labels, start, end, y) -> None:
    """Write each bar's label (``c<client>[ v<version>]``) in its middle."""
    for xa, xb, yy, label in zip(start, end, y, labels):
        ax.text((xa + xb) / 2, yy, label, ha="center", va="center",
                fontsize=6.5, color="black", zorder=4, clip_on=True)


def _time_axis(ax: Axes, start: np.ndarray, end: np.ndarray,
               rounds: pd.DataFrame | None) -> None:
    """x limits around every task time and round end (and 0), label and grid."""
    times = np.concatenate([start[np.isfinite(start)], end[np.isfinite(end)]])
    if rounds is not None:
        times = np.concatenate([times, _base.numeric(rounds["elapsed_s"])])
    times = times[np.isfinite(times)]
    if times.size:
        lo, hi = float(times.min()), float(times.max())
        pad = 0.02 * (hi - lo) if hi > lo else 1.0
        ax.set_xlim(min(lo, 0.0) - pad, hi + pad)
    ax.set_xlabel("time since run start (s)")
    ax.grid(True, axis="x", alpha=0.3)


def _status_legend(ax: Axes, statuses: list[str]) -> None:
    """One legend entry per status, outside the axes on the right."""
    handles = [Patch(facecolor=_base.status_style(s)["color"],
                     edgecolor=_base.status_style(s)["edgecolor"],
                     hatch=_base.status_style(s)["hatch"] or None, label=s)
               for s in statuses]
    ax.legend(handles=handles, title="status", fontsize="small", title_fontsize="small",
              loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def _round_boundaries(ax: Axes, rounds: pd.DataFrame, prefix: str = "r") -> None:
    """Dashed vertical lines at each round's end (``elapsed_s``), numbered when few
    (``r3``; ``v3`` for the server versions of an asynchronous run). A number that would
    touch the previous one is left out (the line stays)."""
    ends = _base.numeric(rounds["elapsed_s"])
    numbers = rounds["round"].to_numpy()
    keep = np.isfinite(ends)
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    label = keep.sum() <= LABEL_MAX_ROUNDS
    width = 0.8 if label else 0.4
    span = float(np.ptp(ends[keep])) if keep.any() else 0.0
    gap = LABEL_MIN_GAP * (span or 1.0)
    last = -np.inf
    for t, r in zip(ends[keep], numbers[keep]):
        ax.axvline(t, color="#444444", linestyle="--", linewidth=width, zorder=1)
        if label and t - last >= gap:
            ax.text(t, 0.995, f"{prefix}{r} ", transform=trans, ha="right", va="top",
                    fontsize=6.5, color="#444444", clip_on=True)
            last = t
