"""Per-client label distribution heatmap from a tidy (client, class, count) table."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fedjax_grid.errors import UserError
from fedjax_grid.plots import _base

#: Above this many cells the counts are not written in the cells.
ANNOTATE_MAX_CELLS = 160


def label_matrix(table: pd.DataFrame, *, normalize: bool = False,
                 round: int | None = None, func: str = "label_distribution") -> pd.DataFrame:
    """Clients x classes matrix of example counts (or per-client fractions).

    table: DataFrame[client, class, count] as from
    ``fedjax_grid.partition.report.label_table`` (missing pairs count 0); an
    optional ``round`` column (dynamic strategies) is filtered by ``round``.
    Returns a DataFrame indexed by client (sorted), columns = classes (sorted; a
    categorical class column keeps its category order and unobserved classes).
    """
    _base.check_table(table, ["client", "class", "count"], "label", func)
    if "round" in table.columns:
        rounds = sorted(pd.unique(table["round"]))
        if round is None:
            if len(rounds) > 1:
                raise UserError(f"{func}: the label table covers rounds "
                                f"{rounds[0]}..{rounds[-1]}; pick one with round=<int>")
        else:
            if round not in rounds:
                raise UserError(f"{func}: round={round!r} not in the label table; "
                                f"rounds: {rounds[0]}..{rounds[-1]}")
            table = table[table["round"] == round]
    elif round is not None:
        raise UserError(f"{func}: round={round!r} given but the label table has no "
                        f"'round' column")
    counts = _base.numeric(table["count"])
    if np.any(~np.isfinite(counts)) or np.any(counts < 0):
        raise UserError(f"{func}: the label table's 'count' column must hold "
                        f"non-negative numbers")
    # .array keeps a categorical class column (class names in class order) intact
    frame = pd.DataFrame({"client": table["client"].array, "class": table["class"].array,
                          "count": counts})
    matrix = frame.pivot_table(index="client", columns="class", values="count",
                               aggfunc="sum", fill_value=0, observed=False)
    matrix = matrix.sort_index().sort_index(axis=1)
    if normalize:
        totals = matrix.sum(axis=1).replace(0, np.nan)
        matrix = matrix.div(totals, axis=0).fillna(0.0)
    return matrix


def label_distribution(table: pd.DataFrame, ax: Axes | None = None,
                       save: str | os.PathLike | None = None, *,
                       class_names: Sequence[str] | None = None, normalize: bool = False,
                       round: int | None = None, annot: bool | None = None,
                       cmap: str = "viridis", title: str | None = None,
                       dpi: int = _base.DPI) -> Figure:
    """Heatmap of the label distribution: one row per client, one column per class.

    table: DataFrame[client, class, count] (``partition.report.label_table``).
    class_names: names indexed by class id for the x tick labels.
    normalize: show each client's fraction of examples per class instead of counts.
    annot: write the values in the cells (default: when at most 160 cells).
    The figure has two axes: the heatmap and its colour bar.
    """
    func = "label_distribution"
    matrix = label_matrix(table, normalize=normalize, round=round, func=func)
    if class_names is not None:
        names = list(class_names)
        try:
            matrix.columns = [names[int(c)] for c in matrix.columns]
        except (IndexError, ValueError, TypeError):
            raise UserError(f"{func}: class_names has {len(names)} entries but the table "
                            f"has classes {list(matrix.columns)[:10]}...; pass one name "
                            f"per class id") from None
    n_clients, n_classes = matrix.shape
    if ax is None:
        width = min(max(4.5, 0.35 * n_classes + 2.5), 16.0)
        height = min(max(3.0, 0.28 * n_clients + 1.5), 14.0)
        ax = _base.new_axes(None, figsize=(width, height))
    else:
        ax = _base.new_axes(ax)
    if annot is None:
        annot = matrix.size <= ANNOTATE_MAX_CELLS
    sns.heatmap(matrix, ax=ax, cmap=cmap, annot=bool(annot),
                fmt=".2f" if normalize else ".0f", annot_kws={"fontsize": 7},
                linewidths=0.3 if matrix.size <= 2500 else 0.0, linecolor="white",
                cbar_kws={"label": "fraction of client's examples" if normalize
                          else "examples"},
                vmin=0.0, vmax=1.0 if normalize else None)
    ax.set_xlabel("class")
    ax.set_ylabel("client")
    return _base.finish(ax, title, save, dpi, default=f"labels of the local sets ({n_clients} "
                                                     f"clients x {n_classes} classes)")
