"""Federated algorithms as pure functions over pytrees (FedJAX-style init/apply).

* :mod:`.aggregators` -- streaming weighted mean (FedAvg), median, trimmed mean, clipped mean.
* :mod:`.validation` -- reasons to reject a client update; :class:`NormGuard`.
* :mod:`.server` -- :class:`ServerState`, optax server optimizers, BatchNorm modes.
* :mod:`.algorithm` -- :class:`FederatedAlgorithm` tying them together (:class:`RoundFold`: one round, client by client).

``AGGREGATORS`` and ``SERVER_OPTIMIZERS`` are registries; every module of this
package is imported here, so a new aggregator or server optimizer is one file
that registers itself.
"""
from fedjax_grid.federated.aggregators import (AGGREGATORS, Aggregator, clipped_mean, make_aggregator,
                                               mean, median, trimmed_mean)
from fedjax_grid.federated.algorithm import FederatedAlgorithm, RoundFold, make_algorithm
from fedjax_grid.federated.server import (BN_MODES, SERVER_OPTIMIZERS, ServerState, client_variables,
                                          make_server_optimizer, server_apply, server_init,
                                          server_variables, split_variables)
from fedjax_grid.federated.validation import NormGuard, norm_history_values, validate_update
from fedjax_grid.registry import import_submodules

import_submodules(__name__)

__all__ = [
    'AGGREGATORS', 'Aggregator', 'clipped_mean', 'make_aggregator', 'mean', 'median', 'trimmed_mean',
    'FederatedAlgorithm', 'RoundFold', 'make_algorithm',
    'BN_MODES', 'SERVER_OPTIMIZERS', 'ServerState', 'client_variables', 'make_server_optimizer',
    'server_apply', 'server_init', 'server_variables', 'split_variables',
    'NormGuard', 'norm_history_values', 'validate_update',
]
