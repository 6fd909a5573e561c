"""Who the global model learned from: per-client participation (issue 23 item 3).

On a heterogeneous grid the fast desktops' clients fill the rounds (overcommit, async
FedBuff) and a slow desktop's clients may contribute nothing: on a 3-desktop emulated
grid (CPU 100/50/15 %) async runs left one client of four with none of the 16 updates
in every seed. With non-IID data that is a bias the researcher must see.
:func:`participation` counts, per client, the tasks that ran and the updates folded
(``participation.csv`` beside the records); :func:`participation_warning` is one line
when a client contributed nothing while others did, or the most frequent contributor
folded more than ``IMBALANCE`` x the least frequent one's updates; ``participation.png``
(:func:`fedjax_grid.plots.participation`) draws it, and ``server.max_lag`` bounds it in
asynchronous runs.
"""
from __future__ import annotations

from typing import Optional

import pandas as pd

#: Folded updates of the most over those of the least frequent contributor that warn.
IMBALANCE = 3.0


def participation(tasks: pd.DataFrame, num_clients: int) -> pd.DataFrame:
    """One row per client 0..num_clients-1: ``tasks`` (rows of any status), ``folded``
    (status ok), ``share`` (its fraction of all folded updates; 0 when none was)."""
    clients = pd.RangeIndex(num_clients, name="client")
    ran = tasks.groupby("client").size().reindex(clients, fill_value=0)
    folded = tasks[tasks["status"] == "ok"].groupby("client").size().reindex(clients, fill_value=0)
    total = int(folded.sum())
    return pd.DataFrame({"client": clients, "tasks": ran.values.astype(int),
                         "folded": folded.values.astype(int),
                         "share": folded.values / total if total else 0.0})


def participation_warning(table: pd.DataFrame) -> Optional[str]:
    """One line when participation is lopsided (see the module), else None."""
    total = int(table["folded"].sum())
    if total == 0 or len(table) < 2:
        return None
    none = table.loc[table["folded"] == 0, "client"].tolist()
    counts = ", ".join(f"{c}: {n}" for c, n in zip(table["client"], table["folded"]))
    if none:
        return (f"client(s) {', '.join(map(str, none))} contributed none of the {total} "
                f"updates folded (per client {counts}); with non-IID data the model is "
                "biased toward the others (participation.csv, participation.png; async: "
                "server.max_lag bounds the lag)")
    hi, lo = int(table["folded"].max()), int(table["folded"].min())
    if hi > IMBALANCE * lo:
        return (f"participation is lopsided: {hi} vs {lo} updates folded per client "
                f"(per client {counts}); with non-IID data the model is biased toward the "
                "frequent ones (participation.csv, participation.png; async: server.max_lag "
                "bounds the lag)")
    return None
