"""The study's table (ITP RAS, GRID'2023) and the notebooks' "run both variants" step.

``STUDY`` holds the four rows the study reports, keyed by the preset that encodes
each row's settings; ``study_table`` sets them beside the configs a notebook or
benchmark actually runs (``fedjax_grid.runner.variants.run_variants`` runs them).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

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
