"""SCAFFOLD (Karimireddy et al., ICML 2020): control variates correct the client drift.

The server keeps a control variate ``c`` and each client ``i`` its own ``c_i`` (zeros
before its first round), trees like the params. A sampled client trains with every
gradient corrected by ``c - c_i``::

    y <- y - lr * (g_i(y) + c - c_i)                  (K local steps from x)

then (option II of the paper) ``c_i+ = c_i - c + (x - y) / (K lr) = c_i - c - delta / (K lr)``
and uploads ``dc_i = c_i+ - c_i`` besides its delta ``dy_i = y - x``. The server applies
its optimiser to the mean delta (``server.optimizer``: fedavg with lr 1 is the paper's
``x + eta_g mean dy`` with ``eta_g = 1``) and updates ``c <- c + |S| / N * mean_{i in S} dc_i``
(S: the accepted clients, N: all clients). With heavy-ball momentum ``beta`` the local
step ``lr`` is taken as ``lr / (1 - beta)``, the step a steady gradient gets.

Where the state lives: ``c`` in ``ServerState.algorithm`` (``{'c': tree}``), ``c_i`` in
the run's client-state store (``{'c_i': tree}``); both are checkpointed. The task
carries ``c`` and ``c_i`` (two model-sized trees down) and returns ``c_i+`` (one up);
``dc_i`` is formed on the coordinator from the stored and returned ``c_i``.
"""
from __future__ import annotations

from fedjax_grid.federated.client_algorithms import (
    CLIENT_ALGORITHMS,
    ClientAlgorithm,
    effective_lr,
    tree_add,
    zeros_like,
)
from fedjax_grid.registry import NoParams


def server_init(params) -> dict:
    """``{'c': zeros like params}``."""
    return {"c": zeros_like(params)}


def client_payload(server_state: dict, client_state) -> dict:
    """``{'c': c, 'c_i': c_i}`` (``c_i`` zeros for a client's first round)."""
    c = server_state["c"]
    return {"c": c, "c_i": zeros_like(c) if client_state is None else client_state["c_i"]}


def local_offset(payload: dict):
    """``c - c_i``: added to every local gradient."""
    return tree_add(payload["c"], payload["c_i"], -1.0)


def client_finish(payload: dict, delta, local: dict) -> dict:
    """``{'c_i': c_i - c - delta / (K lr)}`` (option II); unchanged after 0 steps."""
    if local["steps"] == 0:
        return {"c_i": payload["c_i"]}
    step = local["steps"] * effective_lr(local)
    return {"c_i": tree_add(tree_add(payload["c_i"], payload["c"], -1.0), delta, -1.0 / step)}


def upload(old_state, new_state, delta, local: dict):
    """``dc_i = c_i+ - c_i`` (the stored ``c_i`` is zeros before the first round)."""
    old = zeros_like(new_state["c_i"]) if old_state is None else old_state["c_i"]
    return tree_add(new_state["c_i"], old, -1.0)


def server_update_for(num_clients: int):
    """``c <- c + |S| / N * mean dc`` with N = ``num_clients``; the delta is applied as it is."""
    def server_update(state: dict, mean_delta, mean_upload, accepted: int) -> tuple:
        return {"c": tree_add(state["c"], mean_upload, accepted / num_clients)}, mean_delta
    return server_update


@CLIENT_ALGORITHMS.register("scaffold", NoParams)
def scaffold(params: NoParams, num_clients: int = 1) -> ClientAlgorithm:
    """Control variates correct each client's drift (Karimireddy et al. 2020, option II)."""
    return ClientAlgorithm("scaffold", server_init=server_init, client_payload=client_payload,
                           local_offset=local_offset, client_finish=client_finish, upload=upload,
                           delta_scale=lambda up: 1.0,
                           server_update=server_update_for(num_clients),
                           upload_weighting="uniform", optimizers=("sgd", "momentum"))
