"""Several configs run one after the other on one grid: the notebooks' "run both variants" step."""
from __future__ import annotations

import pathlib
from typing import Callable

import pandas as pd

from fedjax_grid.grid.records import concat_runs
from fedjax_grid.runner.engine import FederatedRun


def run_variants(configs: dict, grid, out_dir, log: Callable[[str], None] = print
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run each config (variant -> ExperimentConfig) on ``grid``, one after the other, in
    ``out_dir/<variant>``; ``(rounds, tasks)`` of all of them with a leading ``run`` column."""
    results = {}
    for variant, cfg in configs.items():
        run = FederatedRun(cfg, out_dir=pathlib.Path(out_dir) / variant, grid=grid)
        results[variant] = run.run(callback=lambda row, v=variant: log(
            f"{v} round {row['round']}: accuracy {row['global_accuracy']:.4f} "
            f"({row['clients_ok']}/{row['clients_sampled']} clients, {row['round_time_s']:.1f} s)"))
    return (concat_runs({v: r.rounds() for v, r in results.items()}),
            concat_runs({v: r.tasks() for v, r in results.items()}))
