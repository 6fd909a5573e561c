"""Partitions of a data set into clients' local sets (pure numpy, explicit seeds).

Distribution kinds (``DISTRIBUTIONS``) and forming strategies (``FORMING``) are
registries: every module of this package is imported here, so a new kind or
strategy is one file that registers itself.
"""
from fedjax_grid.partition.distributions import (
                                                 DISTRIBUTIONS,
                                                 Distribution,
                                                 distribute,
                                                 parse_distribution,
)
from fedjax_grid.partition.forming import FORMING, STRATEGIES, Strategy, make_strategy
from fedjax_grid.registry import import_submodules

import_submodules(__name__)

__all__ = ["DISTRIBUTIONS", "FORMING", "STRATEGIES", "Distribution", "Strategy",
           "distribute", "make_strategy", "parse_distribution"]
