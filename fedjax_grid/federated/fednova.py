"""FedNova (Wang et al., NeurIPS 2020): normalized averaging removes objective inconsistency.

Clients with more data take more local steps (``tau_i``) and so move further; FedAvg's
mean then leans toward their objectives. FedNova divides each client's delta by its
number of effective steps ``a_i`` and rescales the mean by the effective steps of the
federation::

    d_i = delta_i / a_i                         (the client's average step)
    delta = tau_eff * sum_i p_i d_i,   tau_eff = sum_i p_i a_i,   p_i = n_i / sum_j n_j

with ``a_i = tau_i`` for plain SGD and, for heavy-ball momentum ``rho``,
``a_i = (tau_i - rho (1 - rho^tau_i) / (1 - rho)) / (1 - rho)`` (the paper's momentum
case). The weights ``p_i`` are the examples each client trained on (as the deltas'
weights in the mean). FedNova keeps no per-client state: ``a_i`` is computed on the
coordinator from the steps the task reports, and nothing extra travels.
"""
from __future__ import annotations

import jax
import numpy as np

from fedjax_grid.errors import UserError
from fedjax_grid.federated.client_algorithms import CLIENT_ALGORITHMS, ClientAlgorithm
from fedjax_grid.registry import NoParams


def effective_steps(local: dict) -> float:
    """``a_i`` of a client that took ``local['steps']`` steps (see the module docstring)."""
    tau = float(local["steps"])
    if local["optimizer"] == "sgd" or local["momentum"] == 0.0:
        return tau
    if local["optimizer"] != "momentum":
        raise UserError(f"training.optimizer={local['optimizer']!r} is not supported by fednova; "
                        "allowed: sgd, momentum")
    rho = float(local["momentum"])
    return (tau - rho * (1.0 - rho ** tau) / (1.0 - rho)) / (1.0 - rho)


def upload(old_state, new_state, delta, local: dict) -> np.ndarray:
    """``a_i`` as a float64 scalar array (folded with the clients' example weights)."""
    return np.asarray(max(effective_steps(local), 1e-12), np.float64)


def server_update(state, mean_delta, mean_upload, accepted: int) -> tuple:
    """The mean of ``d_i`` times ``tau_eff`` (the example-weighted mean of ``a_i``)."""
    tau_eff = float(mean_upload)
    return state, jax.tree.map(lambda d: (np.asarray(d) * tau_eff).astype(np.asarray(d).dtype),
                               mean_delta)


def _nothing(*args) -> None:
    return None


@CLIENT_ALGORITHMS.register("fednova", NoParams)
def fednova(params: NoParams, num_clients: int = 1) -> ClientAlgorithm:
    """Normalized averaging: each delta divided by its effective local steps (Wang et al. 2020)."""
    return ClientAlgorithm("fednova", server_init=_nothing, client_payload=_nothing,
                           local_offset=_nothing, client_finish=_nothing, upload=upload,
                           delta_scale=lambda a: 1.0 / float(a), server_update=server_update,
                           upload_weighting="examples", optimizers=("sgd", "momentum"))
