"""Per-client label distributions: a tidy table and a heatmap.

``label_table(labels, assignments)`` -> DataFrame with one row per (client, class)
pair, zeros included; ``label_heatmap(table)`` -> a matplotlib Figure (clients x
classes). The figure is built on ``matplotlib.figure.Figure`` directly, without
pyplot, so it works under any backend (Agg on headless workers) and is not kept
alive by pyplot's global figure list.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd


def label_table(labels, assignments: Sequence[np.ndarray], class_names: Sequence[str] | None = None
                ) -> pd.DataFrame:
    """Tidy counts of each class in each client's local set.

    labels: int (D,) class ids 0..K-1; assignments: C index arrays.
    Returns DataFrame[client (int64), class (int64, or str when class_names are
    given, ordered categorical), count (int64)] with C*K rows, ordered by client
    then class; K = max(labels.max()+1, len(class_names)).
    """
    labels = np.asarray(labels, dtype=np.int64)
    k = int(labels.max()) + 1 if labels.size else 0
    if class_names is not None:
        if len(class_names) < k:
            raise ValueError(f"{len(class_names)} class names for {k} classes")
        k = len(class_names)
    counts = np.zeros((len(assignments), k), dtype=np.int64)
    for c, a in enumerate(assignments):
        counts[c] = np.bincount(labels[np.asarray(a, dtype=np.int64)], minlength=k)
    classes = np.tile(np.arange(k, dtype=np.int64), len(assignments))
    table = pd.DataFrame({
        "client": np.repeat(np.arange(len(assignments), dtype=np.int64), k),
        "class": classes,
        "count": counts.ravel(),
    })
    if class_names is not None:
        table["class"] = pd.Categorical.from_codes(classes, categories=list(class_names), ordered=True)
    return table


def label_matrix(table: pd.DataFrame, normalize: bool = True) -> pd.DataFrame:
    """clients x classes matrix of counts (or per-client fractions)."""
    mat = table.pivot_table(index="client", columns="class", values="count",
                            aggfunc="sum", fill_value=0, observed=False, sort=True)
    if normalize:
        totals = mat.sum(axis=1).replace(0, 1)
        mat = mat.div(totals, axis=0)
    return mat


def label_heatmap(table: pd.DataFrame, ax=None, normalize: bool = True, *, title: str | None = None):
    """Seaborn heatmap of a :func:`label_table` (rows clients, columns classes).

    normalize: show each client's class fractions (rows sum to 1) instead of counts.
    ax: draw into this Axes; otherwise a new Figure is made. Returns the Figure.
    """
    import seaborn as sns
    from matplotlib.figure import Figure

    mat = label_matrix(table, normalize=normalize)
    if ax is None:
        n_clients, n_classes = mat.shape
        fig = Figure(figsize=(min(2 + 0.35 * n_classes, 16), min(1.5 + 0.25 * n_clients, 12)),
                     layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    annotate = mat.size <= 200
    sns.heatmap(mat, ax=ax, cmap="viridis", vmin=0, vmax=1 if normalize else None,
                annot=annotate, fmt=".2f" if normalize else "d",
                cbar_kws={"label": "fraction of local set" if normalize else "samples"})
    ax.set_xlabel("class")
    ax.set_ylabel("client")
    ax.set_title(title or ("label distribution per client" + (" (fractions)" if normalize else "")))
    return fig
