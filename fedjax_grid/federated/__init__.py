"""Federated algorithms as pure functions over pytrees (FedJAX-style init/apply).

* :mod:`.aggregators` -- streaming weighted mean (FedAvg), median, trimmed mean, clipped mean.
* :mod:`.validation` -- reasons to reject a client update; :class:`NormGuard`.
* :mod:`.server` -- :class:`ServerState`, optax server optimizers, BatchNorm modes.
* :mod:`.algorithm` -- :class:`FederatedAlgorithm` tying them together (:class:`RoundFold`: one round, client by client).
"""
from fedjax_grid.federated.aggregators import (AGGREGATORS, Aggregator, clipped_mean, make_aggregator,
                                               mean, median, trimmed_mean)
from fedjax_grid.federated.algorithm import FederatedAlgorithm, RoundFold, make_algorithm
from fedjax_grid.federated.server import (BN_MODES, SERVER_OPTIMIZERS, ServerState, client_variables,
                                          make_server_optimizer, server_apply, server_init,
                                          server_variables, split_variables)
from fedjax_grid.federated.validation import NormGuard, norm_history_values, validate_update

__all__ = [
    'AGGREGATORS', 'Aggregator', 'clipped_mean', 'make_aggregator', 'mean', 'median', 'trimmed_mean',
    'FederatedAlgorithm', 'RoundFold', 'make_algorithm',
    'BN_MODES', 'SERVER_OPTIMIZERS', 'ServerState', 'client_variables', 'make_server_optimizer',
    'server_apply', 'server_init', 'server_variables', 'split_variables',
    'NormGuard', 'norm_history_values', 'validate_update',
]
