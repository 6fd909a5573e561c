"""Regenerate the example figures in docs/figures from real (small) federated runs.

    python docs/figures/make_figures.py

Runs on a 2-worker LocalCluster (127.0.0.1): the quickstart configuration once per
forming strategy (static, dynamic, stochastic, hybrid) and once with simulated slow,
offline, failing and hanging desktops under a deadline; then draws every plot of
``fedjax_grid.plots`` from the records. About 5 minutes on 2 cores.
"""
from __future__ import annotations

import pathlib
import tempfile

import numpy as np
import pandas as pd

from fedjax_grid import plots
from fedjax_grid.experiments import get_preset
from fedjax_grid.grid.cluster import open_cluster
from fedjax_grid.runner import FederatedRun
from fedjax_grid.partition.report import label_table

HERE = pathlib.Path(__file__).resolve().parent
COMMON = ["model.kwargs={width: 0.125, norm: batch, head: cifar}", "training.rounds=6",
          "data.max_test_examples=360", "partition.distribution=balanced(0.5)"]


def main() -> None:
    tmp = pathlib.Path(tempfile.mkdtemp())
    base = get_preset("quickstart").with_overrides(COMMON)
    grid = open_cluster(base.grid, local_directory=str(tmp / "dask"))
    rounds, tasks = {}, {}
    try:
        for forming in ("static", "dynamic", "stochastic", "hybrid"):
            cfg = base.with_overrides([f"partition.forming={forming}", f"name={forming}"])
            run = FederatedRun(cfg, out_dir=tmp / forming, grid=grid)
            run.run()
            rounds[forming], tasks[forming] = run.records.rounds(), run.records.tasks()
            if forming == "static":
                labels = np.asarray(run.train.labels)
                assign = run.strategy.apply(run.strategy.init(cfg.seed), None, 0)[0]
                table = label_table(labels, assign)
        faulty = base.with_overrides([
            "name=faults", "faults.enabled=true", "faults.max_slowdown=3", "faults.offline_prob=0.15",
            "faults.dropout_prob=0.15", "faults.hang_prob=0.1", "faults.hang_s=60",
            "faults.error_prob=0.1", "grid.deadline_s=30", "grid.quorum=0.25",
            "partition.num_clients=8"])
        run = FederatedRun(faulty, out_dir=tmp / "faults", grid=grid)
        run.run(rounds=1)  # compile on the workers before the deadline matters
        run.run()
        f_rounds, f_tasks = run.records.rounds(), run.records.tasks()
    finally:
        grid.close()
    static_r, static_t = rounds["static"], tasks["static"]
    plots.global_accuracy(static_r, save=HERE / "global_accuracy.png",
                          title="static: global test accuracy")
    plots.local_loss(static_t, save=HERE / "local_loss.png",
                     title="static: local training loss across clients")
    plots.label_distribution(table, save=HERE / "label_distribution.png",
                             title="static: local sets of round 1")
    plots.worker_timeline(f_tasks, rounds=f_rounds, save=HERE / "worker_timeline.png",
                          title="faults: worker timeline")
    all_rounds = pd.concat([r.assign(run=k) for k, r in rounds.items()], ignore_index=True)
    plots.time_to_accuracy(all_rounds, save=HERE / "time_to_accuracy.png",
                           title="Forming strategies: accuracy vs wall time")
    plots.compare_runs(rounds, metric="global_accuracy", save=HERE / "compare_runs.png",
                       title="Forming strategies, balanced(0.5), 4 clients")
    plots.dashboard(f_rounds, f_tasks, save=HERE / "dashboard.png", name="faults",
                    total=faulty.training.rounds)
    print(f_tasks["status"].value_counts().to_string())
    for k, r in rounds.items():
        print(f"{k:10s} final accuracy {r['global_accuracy'].iloc[-1]:.4f}")


if __name__ == "__main__":
    main()
