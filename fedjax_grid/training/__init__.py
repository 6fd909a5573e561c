"""Jit-compiled local training of Flax image classifiers (cached at module level)."""
from fedjax_grid.training.augment import Standardize, random_crop_flip
from fedjax_grid.training.compile_cache import compile_count, enable_persistent_cache
from fedjax_grid.training.hparams import OPTIMIZERS, HParams, make_optimizer
from fedjax_grid.training.trainer import evaluate, init_variables, local_train

__all__ = [
    "HParams", "OPTIMIZERS", "make_optimizer", "init_variables", "local_train", "evaluate",
    "compile_count", "enable_persistent_cache", "Standardize", "random_crop_flip",
]
