"""The figures every run writes beside its records (CLI, run panel, Ctrl-C or Stop included).

``run_figures(config, records, out_dir)`` draws ``global_accuracy.png`` (against server
versions for an asynchronous run) and, when a client task succeeded,
``local_loss.png`` and ``participation.png`` (tasks per client by status: who the
model learned from), titled with the run's name; it returns the paths written.
"""
from __future__ import annotations

import pathlib

from fedjax_grid.plots.curves import global_accuracy
from fedjax_grid.plots.loss import local_loss
from fedjax_grid.plots.participation import participation


def run_figures(config, records, out_dir) -> list[pathlib.Path]:
    """Write the run's figures into ``out_dir``; the paths written, in order."""
    out = pathlib.Path(out_dir)
    rounds, tasks = records.rounds(), records.tasks()
    written = []
    if len(rounds):
        per = "server version" if config.server.mode == "async" else "round"
        path = out / "global_accuracy.png"
        global_accuracy(rounds, save=path, mode=config.server.mode,
                        title=f"{config.name}: global test accuracy per {per}")
        written.append(path)
    if len(tasks) and (tasks["status"] == "ok").any():
        path = out / "local_loss.png"
        local_loss(tasks, save=path, title=f"{config.name}: local training loss across clients")
        written.append(path)
        path = out / "participation.png"
        participation(tasks, save=path, num_clients=config.partition.num_clients,
                      title=f"{config.name}: participation per client (ok: updates folded)")
        written.append(path)
    return written
