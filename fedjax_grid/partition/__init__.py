"""Partitions of a data set into clients' local sets (pure numpy, explicit seeds)."""
from fedjax_grid.partition.distributions import (KINDS, Distribution, distribute,
                                                 parse_distribution)
from fedjax_grid.partition.forming import STRATEGIES, Strategy, make_strategy

__all__ = ["KINDS", "STRATEGIES", "Distribution", "Strategy", "distribute", "make_strategy",
           "parse_distribution"]
