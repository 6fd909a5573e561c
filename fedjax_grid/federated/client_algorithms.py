"""Client algorithms: what a client does beyond plain local training, and what the server
keeps for it -- pure functions over pytrees of numpy arrays (FedJAX style), one file each.

``CLIENT_ALGORITHMS`` is the registry (``training.algorithm``; ``fedavg`` is the default,
:mod:`.scaffold` and :mod:`.fednova` are one file each). A registered builder
``fn(params, num_clients) -> ClientAlgorithm`` returns these pure functions::

    server_init(params)                          -> server state (None: none), kept in
                                                    ServerState.algorithm, checkpointed
    client_payload(server_state, client_state)   -> what the client's task carries (None)
    local_offset(payload)                        -> a tree added to every local gradient
                                                    (None: plain local training)
    client_finish(payload, delta, local)         -> the client's new state (None: none)
    upload(old_state, new_state, delta, local)   -> what the client contributes to the
                                                    server's update besides its delta (None)
    delta_scale(upload)                          -> factor of the client's delta in the mean
    server_update(state, mean_delta, mean_upload, accepted)
                                                 -> (server state, delta to apply)

Where each runs: ``client_payload`` on the coordinator when the task is built, from the
server's state and the client's state in the run's client-state store
(:class:`~fedjax_grid.runner.clients.ClientStates`, slot ``algorithm``);
``local_offset`` and ``client_finish`` on the worker, around local training (``delta``:
the client's params minus the params it received; ``local``: :func:`local_run`);
``upload`` on the coordinator when the result arrives (from the client's stored and
returned states); the new state replaces the stored one only when the update is accepted.
``delta_scale`` and the upload mean (``upload_weighting``: ``'examples'``, weighted like
the deltas, or ``'uniform'``) are folded by :class:`~fedjax_grid.federated.algorithm.RoundFold`
(O(model) memory), and ``server_update`` runs before the server optimiser.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import numpy as np

from fedjax_grid.errors import UserError
from fedjax_grid.registry import NoParams, Params, Registry

PyTree = Any

#: Client algorithms: ``CLIENT_ALGORITHMS.build(spec, num_clients=C)`` -> :class:`ClientAlgorithm`.
CLIENT_ALGORITHMS = Registry("client algorithm")


class ClientAlgorithm(NamedTuple):
    """The pure functions of one client algorithm (see the module docstring)."""
    name: str
    server_init: Callable[[PyTree], Optional[PyTree]]
    client_payload: Callable[[Optional[PyTree], Optional[PyTree]], Optional[dict]]
    local_offset: Callable[[Optional[dict]], Optional[PyTree]]
    client_finish: Callable[[Optional[dict], PyTree, dict], Optional[PyTree]]
    upload: Callable[[Optional[PyTree], Optional[PyTree], PyTree, dict], Optional[PyTree]]
    delta_scale: Callable[[Optional[PyTree]], float]
    server_update: Callable[..., tuple]
    upload_weighting: str = "examples"
    #: local optimisers it supports (``training.optimizer``; empty: any)
    optimizers: tuple = ()


def local_run(hparams: dict, metrics: dict) -> dict:
    """What a client algorithm knows of a client's local training: ``steps`` (optimizer
    steps taken), ``optimizer`` (name), ``lr``, ``momentum`` (``hparams``: the task's
    ``HParams`` as a dict; ``metrics``: ``local_train``'s)."""
    return {"steps": int(metrics.get("num_steps", 0)), "optimizer": hparams["optimizer"],
            "lr": float(hparams["learning_rate"]), "momentum": float(hparams["momentum"])}


def effective_lr(local: dict) -> float:
    """The step size local training applies to a steady gradient: ``lr`` for ``sgd``,
    ``lr / (1 - momentum)`` for heavy-ball ``momentum``; UserError for others."""
    if local["optimizer"] == "sgd":
        return local["lr"]
    if local["optimizer"] == "momentum":
        return local["lr"] / (1.0 - local["momentum"])
    raise UserError(f"training.optimizer={local['optimizer']!r} is not supported by this client "
                    "algorithm; allowed: sgd, momentum")


def zeros_like(tree: PyTree) -> PyTree:
    """float32 zeros shaped like ``tree``."""
    return jax.tree.map(lambda x: np.zeros(np.shape(x), np.float32), tree)


def tree_add(a: PyTree, b: PyTree, scale: float = 1.0) -> PyTree:
    """``a + scale * b`` leaf by leaf, float32."""
    return jax.tree.map(lambda x, y: (np.asarray(x, np.float32)
                                      + np.float32(scale) * np.asarray(y, np.float32)), a, b)


def _nothing(*args, **kwargs) -> None:
    return None


def _unchanged(state, mean_delta, mean_upload, accepted) -> tuple:
    return state, mean_delta


@CLIENT_ALGORITHMS.register("fedavg", NoParams)
def fedavg(params: NoParams, num_clients: int = 1) -> ClientAlgorithm:
    """Plain local training, no per-client state (FedAvg / FedOpt; FedProx with training.prox_mu)."""
    return ClientAlgorithm("fedavg", server_init=_nothing, client_payload=_nothing,
                           local_offset=_nothing, client_finish=_nothing, upload=_nothing,
                           delta_scale=lambda upload: 1.0, server_update=_unchanged)


def make_client_algorithm(spec: Any = "fedavg", num_clients: int = 1,
                          path: str = "training.algorithm") -> ClientAlgorithm:
    """The :class:`ClientAlgorithm` of ``spec`` (a name, ``'name(v)'``, mapping or Choice)
    for a federation of ``num_clients`` clients."""
    if isinstance(spec, ClientAlgorithm):
        return spec
    return CLIENT_ALGORITHMS.build(CLIENT_ALGORITHMS.validate(spec, path), num_clients=num_clients)


__all__ = ["CLIENT_ALGORITHMS", "ClientAlgorithm", "Params", "effective_lr", "local_run",
           "make_client_algorithm", "tree_add", "zeros_like"]
