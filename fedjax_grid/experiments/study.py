"""The study's table (ITP RAS, GRID'2023) and the notebooks' "run both variants" step.

``STUDY`` holds the four rows the study reports, keyed by the preset that encodes
each row's settings; ``study_table`` sets them beside the configs a notebook or
benchmark actually runs, and ``run_variants`` runs several configs on one grid and
returns their records with a leading ``run`` column.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Callable, Optional

import pandas as pd


@dataclasses.dataclass(frozen=True)
class StudyRow:
    """One row of the study's table (full data, full models)."""
    model: str
    data: str
    source: str          # the registered data source of the row
    clients: int
    balance: Optional[float]  # the study's "balanced" parameter (None: independent)
    lr: float
    batch: int
    rounds: int
    accuracy: float      # % on the test split


#: preset name -> the study's row it encodes
STUDY = {
    "paper-vgg16-cifar10-independent": StudyRow("VGG-16", "CIFAR-10", "cifar10", 50, None,
                                                0.01, 10, 90, 86.21),
    "paper-vgg16-cifar10-balanced": StudyRow("VGG-16", "CIFAR-10", "cifar10", 50, 0.8,
                                             0.01, 10, 150, 85.18),
    "paper-mobilenetv3-tinyimagenet-independent": StudyRow(
        "MobileNetV3", "Tiny-ImageNet-200", "tiny_imagenet", 10, None, 0.001, 32, 80, 50.08),
    "paper-mobilenetv3-tinyimagenet-balanced": StudyRow(
        "MobileNetV3", "Tiny-ImageNet-200", "tiny_imagenet", 5, 0.9, 0.001, 32, 60, 40.31),
}


def study_table(configs: dict, presets: dict) -> pd.DataFrame:
    """The study's rows (``presets``: variant -> preset name) beside ``configs``
    (variant -> ExperimentConfig actually run), one row per variant."""
    rows = []
    for variant, cfg in configs.items():
        s = STUDY[presets[variant]]
        rows.append({"variant": variant, "study model": s.model, "study clients": s.clients,
                     "study balance": s.balance, "study lr": s.lr, "study batch": s.batch,
                     "study rounds": s.rounds, "study accuracy %": s.accuracy,
                     "model": cfg.model.name, "kwargs": cfg.model.kwargs,
                     "source": cfg.data.source, "clients": cfg.partition.num_clients,
                     "distribution": str(cfg.partition.distribution), "lr": cfg.training.lr,
                     "batch": cfg.training.batch_size, "rounds": cfg.training.rounds})
    return pd.DataFrame(rows).set_index("variant")


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
    from fedjax_grid.grid.engine import FederatedRun
    from fedjax_grid.grid.records import concat_runs
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
