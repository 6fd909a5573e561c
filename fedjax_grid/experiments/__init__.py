"""Typed experiment configuration and presets."""
from fedjax_grid.experiments.config import ExperimentConfig
from fedjax_grid.experiments.presets import get_preset, list_presets, scaled_down

__all__ = ["ExperimentConfig", "get_preset", "list_presets", "scaled_down"]
