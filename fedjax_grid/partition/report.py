"""Per-client label distributions as a tidy table.

``label_table(labels, assignments)`` -> DataFrame with one row per (client, class)
pair, zeros included; :func:`fedjax_grid.plots.label_distribution` draws it (the CLI's
``partition-report`` figure) and ``plots.label_matrix`` gives the matrix.
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
