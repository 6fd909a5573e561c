"""Server state and server optimizers (Reddi et al. 2021, "Adaptive Federated Optimization").

Each round the server receives ``mean_delta = weighted_mean_i(client_params_i) -
global_params`` (the aggregated client *deltas*) and treats ``-mean_delta`` as a
pseudo-gradient for an optax optimizer::

    opt = make_server_optimizer('fedadam')               # or {name: fedadam, lr: 1e-2, ...}
    state = server_init(variables, opt)
    state = server_apply(state, mean_delta, opt, mean_batch_stats)

``fedavg`` is SGD with lr 1.0: ``params + mean_delta`` = the weighted mean of the
client params (plain FedAvg). ``fedavgm`` adds server momentum; ``fedadam``,
``fedyogi``, ``fedadagrad`` are optax ``adam`` / ``yogi`` / ``adagrad`` with the
paper's adaptivity ``eps`` (tau) = 1e-3 by default. Each is registered in
``SERVER_OPTIMIZERS`` with its own parameters and defaults (fedavg/fedavgm lr 1.0,
fedadam/fedyogi lr 1e-2, b1 0.9, b2 0.99, fedadagrad lr 1e-1; ``SERVER_OPTIMIZERS.schema``),
chosen in the config as ``server.optimizer: {name: fedadam, lr: 0.01, ...}``. Differences from the paper:
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
from collections.abc import Mapping
from typing import Any, NamedTuple, Optional

import jax
import numpy as np
import optax
from pydantic import Field

from fedjax_grid.errors import UserError
from fedjax_grid.registry import Choice, Params, Registry

PyTree = Any

#: Server optimizers by name: ``fn(params) -> optax.GradientTransformation``.
SERVER_OPTIMIZERS = Registry('server optimizer')
BN_MODES = ('recalibrate', 'pooled', 'local', 'aggregate')


def _lr(default: float):
    return Field(default, gt=0.0, description="server learning rate (step on the mean client delta)")


_B1 = Field(0.9, ge=0.0, lt=1.0, description="decay of the first moment")
_B2 = Field(0.99, ge=0.0, lt=1.0, description="decay of the second moment")
_EPS = Field(1e-3, gt=0.0, description="adaptivity tau (Reddi et al.: 1e-3)")


class FedAvgParams(Params):
    lr: float = _lr(1.0)


class FedAvgMParams(Params):
    lr: float = _lr(1.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="heavy-ball server momentum")


class FedAdamParams(Params):
    lr: float = _lr(1e-2)
    b1: float = _B1
    b2: float = _B2
    eps: float = _EPS


class FedAdagradParams(Params):
    lr: float = _lr(1e-1)
    eps: float = _EPS


@SERVER_OPTIMIZERS.register('fedavg', FedAvgParams)
def fedavg(params: FedAvgParams) -> optax.GradientTransformation:
    """SGD on the pseudo-gradient; lr 1.0 is plain FedAvg."""
    return optax.sgd(params.lr)


@SERVER_OPTIMIZERS.register('fedavgm', FedAvgMParams)
def fedavgm(params: FedAvgMParams) -> optax.GradientTransformation:
    """FedAvg with server momentum (Hsu et al. 2019)."""
    return optax.sgd(params.lr, momentum=params.momentum)


@SERVER_OPTIMIZERS.register('fedadam', FedAdamParams)
def fedadam(params: FedAdamParams) -> optax.GradientTransformation:
    """Adam on the pseudo-gradient (Reddi et al. 2021; optax adds bias correction)."""
    return optax.adam(params.lr, b1=params.b1, b2=params.b2, eps=params.eps)


@SERVER_OPTIMIZERS.register('fedyogi', FedAdamParams)
def fedyogi(params: FedAdamParams) -> optax.GradientTransformation:
    """Yogi on the pseudo-gradient (Reddi et al. 2021)."""
    return optax.yogi(params.lr, b1=params.b1, b2=params.b2, eps=params.eps)


@SERVER_OPTIMIZERS.register('fedadagrad', FedAdagradParams)
def fedadagrad(params: FedAdagradParams) -> optax.GradientTransformation:
    """Adagrad on the pseudo-gradient; eps**2 is optax's initial accumulator (v_-1 >= tau^2)."""
    eps = params.eps
    return optax.adagrad(params.lr, initial_accumulator_value=eps ** 2, eps=eps ** 2)


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
    algorithm: the client algorithm's server state (SCAFFOLD's control variate
      ``{'c': tree}``; None for algorithms without one, e.g. fedavg), see
      :mod:`fedjax_grid.federated.client_algorithms`.
    """
    params: PyTree
    batch_stats: Optional[PyTree]
    opt_state: PyTree
    round: int
    norm_history: Optional[np.ndarray] = None
    algorithm: Optional[PyTree] = None


def make_server_optimizer(name='fedavg', lr: Optional[float] = None,
                          **kw) -> optax.GradientTransformation:
    """Server optimizer by name (``'fedadam'``, ``'fedadam(lr=0.03)'``), mapping
    (``{name: fedadam, lr: 0.03}``) or Choice.

    lr: server learning rate; None -> the optimizer's own default (1.0 for
      fedavg/fedavgm, 1e-2 for fedadam/fedyogi, 1e-1 for fedadagrad: starting
      points, tune them).
    kw: its other parameters -- fedavgm ``momentum`` in [0, 1); fedadam/fedyogi
      ``b1``, ``b2`` in [0, 1); fedadam/fedyogi/fedadagrad ``eps`` (tau) > 0. Keywords
      the chosen optimizer does not have among momentum, b1, b2, eps are ignored (as
      before the registry); values in ``spec`` win over ``lr``/``kw``.
    """
    spec = name.model_dump() if isinstance(name, Choice) else name
    d = dict(spec) if isinstance(spec, Mapping) else SERVER_OPTIMIZERS.validate(spec, fill=False)
    fields = SERVER_OPTIMIZERS.get(d.get('name')).params.model_fields
    given = {k: v for k, v in kw.items() if k in fields or k not in _SHARED_KW}
    if lr is not None:
        given['lr'] = lr
    return SERVER_OPTIMIZERS.build({**given, **d})


#: Keywords of the earlier ``make_server_optimizer`` accepted for any optimizer.
_SHARED_KW = ('momentum', 'b1', 'b2', 'eps')


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
                norm_history: Optional[np.ndarray] = None,
                algorithm: Optional[PyTree] = None) -> ServerState:
    """Server state for round 0 from the model's initial ``variables``
    (``norm_history``: a NormGuard state; None -> ``NormGuard().init()``; ``algorithm``:
    the client algorithm's initial server state)."""
    params, batch_stats = split_variables(variables)
    params = _to_host(params)
    opt_state = _to_host(opt.init(params))
    if norm_history is None:
        from fedjax_grid.federated.validation import NormGuard
        norm_history = NormGuard().init()
    return ServerState(params, None if batch_stats is None else _to_host(batch_stats),
                       opt_state, 0, np.asarray(norm_history, np.float64), algorithm)


@functools.partial(jax.jit, static_argnums=0)
def _opt_step(opt, params, opt_state, mean_delta):
    pseudo_grad = jax.tree_util.tree_map(lambda d: -d, mean_delta)
    updates, opt_state = opt.update(pseudo_grad, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def server_apply(state: ServerState, mean_delta: PyTree, opt: optax.GradientTransformation,
                 mean_batch_stats: Optional[PyTree] = None, *,
                 norm_history: Optional[np.ndarray] = None,
                 algorithm: Optional[PyTree] = None) -> ServerState:
    """One server step: ``-mean_delta`` is the pseudo-gradient of ``opt``.

    mean_delta: tree like ``state.params`` (weighted mean of client_params - params).
    mean_batch_stats: new server ``batch_stats`` (weighted mean of the clients'),
      or None to keep the server's own.
    norm_history: new NormGuard state, or None to keep the current one.
    algorithm: the client algorithm's new server state, or None to keep the current one.
    Returns a new state with ``round + 1``; the input state is not modified.
    """
    params, opt_state = _opt_step(opt, state.params, state.opt_state, mean_delta)
    params = jax.tree_util.tree_map(lambda new, old: np.asarray(new, dtype=np.asarray(old).dtype),
                                    params, state.params)
    batch_stats = state.batch_stats if mean_batch_stats is None else _to_host(mean_batch_stats)
    return ServerState(params, batch_stats, _to_host(opt_state), state.round + 1,
                       state.norm_history if norm_history is None else norm_history,
                       state.algorithm if algorithm is None else algorithm)


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
