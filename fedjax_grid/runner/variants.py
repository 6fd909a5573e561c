"""Several configs run one after the other on one grid: the notebooks' "run both variants" step."""
from __future__ import annotations

import pathlib
from typing import Callable, Optional

import pandas as pd

from fedjax_grid.grid.records import concat_runs
from fedjax_grid.runner.engine import FederatedRun


def run_variants(configs: dict, grid, out_dir, log: Optional[Callable[[str], None]] = None,
                 *, warmup: bool = True, progress: bool = True
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run each config (variant -> ExperimentConfig) on ``grid``, one after the other, in
    ``out_dir/<variant>``; ``(rounds, tasks)`` of all of them with a leading ``run`` column.

    warmup: first run one round of the first config, one client per worker, in
    ``out_dir/warm-up`` (not returned):
    the workers and the coordinator compile the model there, so no variant's round times
    include compilation and the comparison does not depend on which variant runs first.
    progress: a round progress bar per variant (``progress.RoundBar``); log: also called
    with one line per round."""
    from fedjax_grid.progress import RoundBar
    out_dir = pathlib.Path(out_dir)
    if warmup and configs:
        first = next(iter(configs.values()))
        workers = len(grid.workers()) if grid is not None else first.grid.workers
        first = first.with_overrides([   # one task per worker is enough to compile everywhere
            "training.rounds=1",
            f"training.clients_per_round={max(1, min(workers, first.partition.num_clients))}"])
        warm = FederatedRun(first, out_dir=out_dir / "warm-up", grid=grid)
        warm.run(callback=RoundBar(warm, desc="warm-up (compiles the model)") if progress else None)
    results = {}
    for variant, cfg in configs.items():
        run = FederatedRun(cfg, out_dir=out_dir / variant, grid=grid)
        bar = RoundBar(run, desc=variant) if progress else None
        results[variant] = run.run(callback=lambda row, v=variant, b=bar: _progress(row, v, b, log))
    return (concat_runs({v: r.rounds() for v, r in results.items()}),
            concat_runs({v: r.tasks() for v, r in results.items()}))


def _progress(row: dict, variant: str, bar, log) -> None:
    if bar is not None:
        bar(row)
    if log is not None:
        log(f"{variant} round {row['round']}: accuracy {row['global_accuracy']:.4f} "
            f"({row['clients_ok']}/{row['clients_sampled']} clients, {row['round_time_s']:.1f} s)")
