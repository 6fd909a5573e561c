"""Server state and server optimizers (Reddi et al. 2021, "Adaptive Federated Optimization").

Each round the server receives ``mean_delta = weighted_mean_i(client_params_i) -
global_params`` (the aggregated client *deltas*) and treats ``-mean_delta`` as a
pseudo-gradient for an optax optimizer::

    opt = make_server_optimizer('fedadam', lr=1e-2)
    state = server_init(variables, opt)
    state = server_apply(state, mean_delta, opt, mean_batch_stats)

``fedavg`` is SGD with lr 1.0: ``params + mean_delta`` = the weighted mean of the
client params (plain FedAvg). ``fedavgm`` adds server momentum; ``fedadam``,
``fedyogi``, ``fedadagrad`` are optax ``adam`` / ``yogi`` / ``adagrad`` with the
paper's adaptivity ``eps`` (tau) = 1e-3 by default. Differences from the paper:
optax's adam applies bias correction; optax's adagrad has no first-moment
momentum and puts ``eps`` inside the square root, so fedadagrad uses
``initial_accumulator_value = eps = tau**2`` (the paper's v_{-1} >= tau^2).

FedProx is not a server optimizer: its proximal term ``mu/2 ||w - w_global||^2``
lives in the client's local trainer (``training.HParams.prox_mu``, with
``local_train(..., anchor_params=global_params)``); the server side is plain
FedAvg (or any optimizer here).

BatchNorm statistics (``bn_mode``):

* ``'recalibrate'``: the caller (the grid engine, which holds the training data)
  re-estimates the new global model's statistics exactly after each server step
  (:func:`fedjax_grid.training.bn_stats.bn_moments` on a calibration subset); the
  algorithm itself folds the clients' statistics as in ``'aggregate'`` meanwhile.
  The most accurate: the statistics belong to the averaged model, not to the
  clients' local models (VGG-16 on CIFAR-10, 10 clients, 3 rounds: 15.9 / 19.6 /
  28.6 % against 9.0 / 9.0 / 11.4 % pooled and 9.0 / 11.1 / 23.8 % aggregate).
* ``'pooled'``: the server's ``batch_stats`` become the exact statistics
  of the union of the reporting clients' data under their final local models,
  pooled from the moments they report (:mod:`.bn_pooling`); every client starts a
  round from them.
* ``'aggregate'``: the weighted mean of the reporting clients' running averages
  (biased: it lags the model and drops the spread of the client means; with few
  local steps it can collapse evaluation, see ``training.bn_stats``). Kept to
  reproduce earlier runs.
* ``'local'``: every client keeps its own ``batch_stats`` between rounds (SiloBN /
  FedBN-style): the engine stores them per client and builds each client's
  starting variables with :func:`client_variables` (the server's statistics are
  the fallback for a client's first round). The server still keeps its own
  ``batch_stats`` for evaluating the global model on the server's test split;
  the algorithm pools the reporting clients' moments as in ``'pooled'``
  (they are never sent to clients that have their own).

All state leaves are host numpy arrays (easy to pickle for Dask, to checkpoint,
and to compare bitwise); the optimizer step is one jitted XLA computation,
compiled once per (optimizer, model shapes).
"""
from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple, Optional

import jax
import numpy as np
import optax

from fedjax_grid.errors import UserError

PyTree = Any

SERVER_OPTIMIZERS = ('fedavg', 'fedavgm', 'fedadam', 'fedyogi', 'fedadagrad')
DEFAULT_LR = {'fedavg': 1.0, 'fedavgm': 1.0, 'fedadam': 1e-2, 'fedyogi': 1e-2, 'fedadagrad': 1e-1}
BN_MODES = ('recalibrate', 'pooled', 'local', 'aggregate')


class ServerState(NamedTuple):
    """The global model and server optimizer state (a pytree of numpy arrays).

    params: the model's ``'params'`` collection.
    batch_stats: the ``'batch_stats'`` collection, or None for models without BatchNorm.
    opt_state: the optax state of the server optimizer.
    round: number of rounds applied so far (0 after ``server_init``).
    norm_history: float64 array ``(window,)`` of recent accepted update norms
      (:class:`~fedjax_grid.federated.validation.NormGuard` state, NaN-padded).
      ``server_init`` always sets it (default guard window) so the state's tree
      structure and shapes stay the same with or without a guard.
    """
    params: PyTree
    batch_stats: Optional[PyTree]
    opt_state: PyTree
    round: int
    norm_history: Optional[np.ndarray] = None


def _unit(name: str, value, low: float, high: float, *, low_open: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float('nan')
    ok = math.isfinite(v) and (v > low if low_open else v >= low) and v < high
    if not ok:
        lo = f"{'>' if low_open else '>='} {low:g}"
        raise UserError(f"server optimizer {name}={value!r} is invalid; allowed: {lo} and < {high:g}")
    return v


def make_server_optimizer(name: str = 'fedavg', lr: Optional[float] = None, momentum: float = 0.9,
                          b1: float = 0.9, b2: float = 0.99,
                          eps: float = 1e-3) -> optax.GradientTransformation:
    """Server optimizer by name.

    name: 'fedavg' | 'fedavgm' | 'fedadam' | 'fedyogi' | 'fedadagrad'.
    lr: server learning rate; None -> ``DEFAULT_LR[name]`` (1.0 for fedavg/fedavgm,
      1e-2 for fedadam/fedyogi, 1e-1 for fedadagrad: starting points, tune them).
    momentum: fedavgm's heavy-ball momentum in [0, 1).
    b1, b2: first/second moment decay of fedadam/fedyogi in [0, 1).
    eps: adaptivity tau > 0 (paper: 1e-3) of fedadam/fedyogi/fedadagrad.
    """
    if name not in SERVER_OPTIMIZERS:
        raise UserError(f"unknown server optimizer {name!r}; allowed: {', '.join(SERVER_OPTIMIZERS)}")
    lr = _unit('lr', DEFAULT_LR[name] if lr is None else lr, 0.0, math.inf, low_open=True)
    momentum = _unit('momentum', momentum, 0.0, 1.0)
    b1 = _unit('b1', b1, 0.0, 1.0)
    b2 = _unit('b2', b2, 0.0, 1.0)
    eps = _unit('eps', eps, 0.0, math.inf, low_open=True)
    if name == 'fedavg':
        return optax.sgd(lr)
    if name == 'fedavgm':
        return optax.sgd(lr, momentum=momentum)
    if name == 'fedadam':
        return optax.adam(lr, b1=b1, b2=b2, eps=eps)
    if name == 'fedyogi':
        return optax.yogi(lr, b1=b1, b2=b2, eps=eps)
    return optax.adagrad(lr, initial_accumulator_value=eps ** 2, eps=eps ** 2)


def _to_host(tree: PyTree) -> PyTree:
    return jax.tree_util.tree_map(np.asarray, tree)


def split_variables(variables: PyTree) -> tuple[PyTree, Optional[PyTree]]:
    """``{'params': p, 'batch_stats': b}`` -> ``(p, b)``; ``b`` is None when absent."""
    if not hasattr(variables, 'keys') or 'params' not in variables:
        keys = list(variables.keys()) if hasattr(variables, 'keys') else type(variables).__name__
        raise UserError(f"model variables {keys} have no 'params' collection; allowed: a dict with "
                        f"'params' and optionally 'batch_stats'")
    other = sorted(set(variables.keys()) - {'params', 'batch_stats'})
    if other:
        raise UserError(f"model variables have unsupported collections {other}; "
                        f"allowed: 'params', 'batch_stats'")
    return variables['params'], variables.get('batch_stats')


def server_init(variables: PyTree, opt: optax.GradientTransformation,
                norm_history: Optional[np.ndarray] = None) -> ServerState:
    """Server state for round 0 from the model's initial ``variables``
    (``norm_history``: a NormGuard state; None -> ``NormGuard().init()``)."""
    params, batch_stats = split_variables(variables)
    params = _to_host(params)
    opt_state = _to_host(opt.init(params))
    if norm_history is None:
        from fedjax_grid.federated.validation import NormGuard
        norm_history = NormGuard().init()
    return ServerState(params, None if batch_stats is None else _to_host(batch_stats),
                       opt_state, 0, np.asarray(norm_history, np.float64))


@functools.partial(jax.jit, static_argnums=0)
def _opt_step(opt, params, opt_state, mean_delta):
    pseudo_grad = jax.tree_util.tree_map(lambda d: -d, mean_delta)
    updates, opt_state = opt.update(pseudo_grad, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def server_apply(state: ServerState, mean_delta: PyTree, opt: optax.GradientTransformation,
                 mean_batch_stats: Optional[PyTree] = None, *,
                 norm_history: Optional[np.ndarray] = None) -> ServerState:
    """One server step: ``-mean_delta`` is the pseudo-gradient of ``opt``.

    mean_delta: tree like ``state.params`` (weighted mean of client_params - params).
    mean_batch_stats: new server ``batch_stats`` (weighted mean of the clients'),
      or None to keep the server's own.
    norm_history: new NormGuard state, or None to keep the current one.
    Returns a new state with ``round + 1``; the input state is not modified.
    """
    params, opt_state = _opt_step(opt, state.params, state.opt_state, mean_delta)
    params = jax.tree_util.tree_map(lambda new, old: np.asarray(new, dtype=np.asarray(old).dtype),
                                    params, state.params)
    batch_stats = state.batch_stats if mean_batch_stats is None else _to_host(mean_batch_stats)
    return ServerState(params, batch_stats, _to_host(opt_state), state.round + 1,
                       state.norm_history if norm_history is None else norm_history)


def server_variables(state: ServerState) -> dict:
    """The global model's variables ``{'params': ..., ['batch_stats': ...]}``."""
    out = {'params': state.params}
    if state.batch_stats is not None:
        out['batch_stats'] = state.batch_stats
    return out


def client_variables(state: ServerState, bn_mode: str = 'pooled',
                     client_batch_stats: Optional[PyTree] = None) -> dict:
    """Variables a client starts its round from.

    bn_mode 'recalibrate' / 'pooled' / 'aggregate': the server's params and batch_stats.
    bn_mode 'local': the server's params with the client's own stored
      ``client_batch_stats`` (from its previous round), or the server's when the
      client has none yet (first participation).
    """
    if bn_mode not in BN_MODES:
        raise UserError(f"bn_mode {bn_mode!r} is not supported; allowed: {', '.join(BN_MODES)}")
    out = server_variables(state)
    if bn_mode == 'local' and client_batch_stats is not None and 'batch_stats' in out:
        out['batch_stats'] = client_batch_stats
    return out
