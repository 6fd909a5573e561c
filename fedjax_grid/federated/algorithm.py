"""FederatedAlgorithm: FedJAX-style ``init`` / ``apply`` tying validation,
aggregation and the server optimizer together (pure; numpy in, numpy out)::

    algo = make_algorithm(aggregator='mean', server_optimizer='fedavg')
    state = algo.init(variables)                       # ServerState, round 0
    state, diag = algo.apply(state, client_results)    # one round

``client_results`` is any iterable (e.g. a generator over Dask futures as they
complete) of ``(variables, num_examples)`` or ``(variables, num_examples,
client_id)``. It is consumed once and never materialised: with a streaming
aggregator ('mean', 'clipped_mean') memory is O(model) however many clients
report. Each item is validated (:func:`validate_update` against the server's
variables, a positive finite ``num_examples``, and optionally a
:class:`NormGuard` on the delta norm); rejected items are skipped and listed in
the diagnostics with their reason.

Per accepted client the aggregator receives the params *delta*
``client_params - global_params`` with weight ``num_examples``; the server
optimizer gets the aggregated delta. BatchNorm statistics (if the model has
them) are combined with the streaming weighted mean (robust statistics are not
meaningful for them) and become the server's ``batch_stats``:

* ``bn_mode='pooled'`` (default here) and ``'local'``: the clients' exact moments
  ``(E[x], E[x^2], n)`` are pooled into the statistics of the union of their data
  (:mod:`.bn_pooling`); a client that sends no moments contributes its
  ``batch_stats`` read as moments, with weight ``num_examples``;
* ``'aggregate'``: the weighted mean of the clients' running averages (mean and
  variance averaged separately: biased; kept to reproduce earlier runs);
* ``'recalibrate'``: folded as ``'aggregate'``; the caller, which holds data,
  re-estimates the new global model's statistics (the grid engine's default).

In ``'local'`` mode the engine additionally keeps each client's own statistics
(see :mod:`fedjax_grid.federated.server`).

The norm guard checks each delta against the norms accepted in *previous*
rounds only, so the decision does not depend on the order clients report in
(the first round, without history, is unguarded); the state's
``norm_history`` is updated after the round.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Callable, Iterable, NamedTuple, Optional, Union

import numpy as np
import optax

from fedjax_grid.errors import UserError
from fedjax_grid.federated.aggregators import Aggregator, make_aggregator, mean
from fedjax_grid.federated.bn_pooling import is_bn_layout, moments_from_stats, stats_from_moments
from fedjax_grid.federated.client_algorithms import ClientAlgorithm, make_client_algorithm
from fedjax_grid.federated.server import (BN_MODES, ServerState, make_server_optimizer,
                                          server_apply, server_init, server_variables)
from fedjax_grid.federated.tree_math import np_tree_l2_norm, np_tree_sub
from fedjax_grid.federated.validation import NormGuard, validate_update
from fedjax_grid.registry import Choice

PyTree = Any


class FederatedAlgorithm(NamedTuple):
    """``init(variables) -> ServerState``;
    ``apply(state, client_results) -> (state, diagnostics)``;
    ``begin(state) -> RoundFold``: the incremental form of ``apply`` for callers that
    receive clients one at a time and need each verdict at once (the grid engine)."""
    init: Callable[[PyTree], ServerState]
    apply: Callable[[ServerState, Iterable], tuple[ServerState, dict]]
    begin: Callable[[ServerState], 'RoundFold']
    #: the client algorithm (its client-side functions run in the tasks)
    client: Optional[ClientAlgorithm] = None


def _client_order(cid) -> tuple:
    """Sort key of client ids: integers first, by value, then anything else by its text."""
    return (0, int(cid), '') if isinstance(cid, (int, np.integer)) else (1, 0, str(cid))


class RoundFold:
    """One round of a :class:`FederatedAlgorithm`, fed one client at a time.

    ``add(variables, num_examples, client_id, bn_moments=None)`` validates the update
    and folds its params delta (weight ``num_examples``) and its BatchNorm statistics
    (per ``bn_mode``; ``bn_moments = (moments, count)``) into streaming aggregates,
    returning None when accepted or the rejection reason; ``finish()``
    applies the server optimizer and returns ``(state, diagnostics)``. Memory is
    O(model) with a streaming aggregator. Accepted update norms enter the norm
    guard's history in client-id order, so the next round's guard does not depend
    on the order in which clients reported.
    """

    def __init__(self, state: ServerState, agg: Aggregator, opt, guard: Optional[NormGuard],
                 bs_agg: Aggregator, bn_mode: str = 'pooled',
                 client: Optional[ClientAlgorithm] = None):
        self.state = state
        self._agg, self._opt, self._guard, self._bs_agg = agg, opt, guard, bs_agg
        #: the client algorithm: its uploads are folded beside the deltas (``add_delta``)
        self._client = client if client is not None else make_client_algorithm('fedavg')
        self._up_agg, self._up_state = mean(), None
        # statistics other than Flax BatchNorm's (mean, var) are averaged as they are
        self._pool = bn_mode in ('pooled', 'local') and is_bn_layout(state.batch_stats)
        self._template = server_variables(state)
        self._has_bn = state.batch_stats is not None
        self._moments_template = moments_from_stats(state.batch_stats) if self._pool else None
        self._agg_state = agg.init(state.params)
        self._bs_state = bs_agg.init(state.batch_stats) if self._has_bn else None
        self._history = state.norm_history if state.norm_history is not None else \
            (guard.init() if guard is not None else None)
        self.accepted: list = []
        self.rejected: list = []
        self.norms: dict = {}
        self.total_weight = 0.0
        self.num_reported = 0

    def add(self, variables: PyTree, num_examples, client_id,
            bn_moments: Optional[tuple] = None) -> Optional[str]:
        """Fold one client's variables in; None if accepted, else why it was rejected."""
        self.num_reported += 1
        reason = _weight_reason(num_examples) or validate_update(variables, self._template)
        if reason is not None:
            self.rejected.append((client_id, reason))
            return reason
        return self._fold(np_tree_sub(variables['params'], self.state.params), num_examples,
                          client_id, variables.get('batch_stats'), bn_moments, 1.0)

    def add_delta(self, delta: PyTree, num_examples, client_id, *,
                  batch_stats: Optional[PyTree] = None, bn_moments: Optional[tuple] = None,
                  scale: float = 1.0, upload: Optional[PyTree] = None) -> Optional[str]:
        """Fold one client's params delta (``client_params - params it started from``)
        in; None if accepted, else why it was rejected.

        batch_stats: the client's final BatchNorm statistics (required when the model
        has them). scale: multiplies the delta in the aggregate (asynchronous
        aggregation's staleness weight, in (0, 1]); the norm guard sees the unscaled norm.
        upload: the client algorithm's upload (SCAFFOLD's ``dc_i``, FedNova's ``a_i``),
        folded into its own mean; it also sets the delta's factor (``delta_scale``).
        """
        self.num_reported += 1
        item = {'params': delta} if batch_stats is None else \
            {'params': delta, 'batch_stats': batch_stats}
        reason = _weight_reason(num_examples) or validate_update(item, self._template) \
            or _upload_reason(upload)
        if reason is not None:
            self.rejected.append((client_id, reason))
            return reason
        if upload is not None:
            scale = scale * float(self._client.delta_scale(upload))
        reason = self._fold(delta, num_examples, client_id, batch_stats, bn_moments, scale)
        if reason is None and upload is not None:
            w = float(num_examples) if self._client.upload_weighting == 'examples' else 1.0
            if self._up_state is None:
                self._up_state = self._up_agg.init(upload)
            self._up_state = self._up_agg.update(self._up_state, upload, w)
        return reason

    def _fold(self, delta, num_examples, client_id, batch_stats, bn_moments,
              scale: float) -> Optional[str]:
        """Moments and norm-guard checks, then the delta (x scale) into the aggregate."""
        reason = None
        if self._has_bn and self._pool and bn_moments is not None:
            reason = _moments_reason(bn_moments, self._moments_template)
        norm = np_tree_l2_norm(delta)
        if reason is None and self._guard is not None:
            reason = self._guard.check(self._history, norm)
        if reason is not None:
            self.rejected.append((client_id, reason))
            return reason
        w = float(num_examples)
        self._agg_state = self._agg.update(self._agg_state,
                                           delta if scale == 1.0 else _scaled(delta, scale), w)
        if self._has_bn:
            self._bs_state = self._bs_agg.update(
                self._bs_state, *self._bn_item(batch_stats, w, bn_moments))
        self.accepted.append(client_id)
        self.norms[client_id] = norm
        self.total_weight += w
        return None

    def _bn_item(self, batch_stats, weight: float, bn_moments) -> tuple:
        """(tree, weight) this client adds to the BatchNorm aggregate."""
        if not self._pool:
            return batch_stats, weight
        if bn_moments is None:
            return moments_from_stats(batch_stats), weight
        return bn_moments[0], float(bn_moments[1])

    def _bn_result(self):
        result = self._bs_agg.result(self._bs_state)
        if not self._pool:
            return result
        return stats_from_moments(result, like=self.state.batch_stats)

    def finish(self) -> tuple[ServerState, dict]:
        """The next server state (unchanged but for ``round`` if nothing was accepted)."""
        state = self.state
        diagnostics = {'round': state.round + 1, 'num_reported': self.num_reported,
                       'num_accepted': len(self.accepted), 'num_rejected': len(self.rejected),
                       'accepted': list(self.accepted), 'rejected': list(self.rejected),
                       'update_norms': dict(self.norms), 'total_weight': self.total_weight,
                       'applied': bool(self.accepted), 'mean_delta_norm': float('nan'),
                       'aggregator': self._agg.name}
        if not self.accepted:
            return state._replace(round=state.round + 1), diagnostics
        mean_delta = self._agg.result(self._agg_state)
        diagnostics['mean_delta_norm'] = np_tree_l2_norm(mean_delta)
        new_history = None
        if self._guard is not None:
            new_history = self._history
            for cid in sorted(self.accepted, key=_client_order):
                new_history = self._guard.add(new_history, self.norms[cid])
        mean_upload = None if self._up_state is None else self._up_agg.result(self._up_state)
        algorithm, mean_delta = self._client.server_update(state.algorithm, mean_delta, mean_upload,
                                                           len(self.accepted))
        new_state = server_apply(state, mean_delta, self._opt,
                                 self._bn_result() if self._has_bn else None,
                                 norm_history=new_history, algorithm=algorithm)
        return new_state, diagnostics


def _scaled(tree: PyTree, scale: float) -> PyTree:
    """``scale * tree`` leaf by leaf, keeping each leaf's dtype."""
    import jax
    return jax.tree.map(lambda d: (np.asarray(d) * scale).astype(np.asarray(d).dtype), tree)


def _moments_reason(bn_moments, template) -> Optional[str]:
    """None if ``bn_moments = (moments, count)`` fits ``template`` (batch_stats), else why not."""
    try:
        moments, count = bn_moments
    except (TypeError, ValueError):
        return "bn_moments is not a (moments, count) pair"
    return _weight_reason(count) or validate_update(moments, template)


def _upload_reason(upload) -> Optional[str]:
    """Why a client algorithm's upload is refused (non-finite values), or None."""
    if upload is None:
        return None
    import jax
    if not all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(upload)):
        return "client algorithm upload has non-finite values"
    return None


def _weight_reason(n) -> Optional[str]:
    try:
        w = float(n)
    except (TypeError, ValueError):
        return f"num_examples={n!r} is not a number"
    if not (math.isfinite(w) and w > 0):
        return f"num_examples={n!r} is invalid; allowed: a finite number > 0"
    return None


def make_algorithm(aggregator: Union[str, Mapping, Aggregator] = 'mean',
                   server_optimizer: Union[str, Mapping, optax.GradientTransformation] = 'fedavg',
                   *, bn_mode: str = 'pooled', norm_guard: Optional[NormGuard] = None,
                   aggregator_kw: Optional[dict] = None,
                   server_kw: Optional[dict] = None,
                   client_algorithm: Union[str, Mapping, ClientAlgorithm] = 'fedavg',
                   num_clients: int = 1) -> FederatedAlgorithm:
    """Build a :class:`FederatedAlgorithm`.

    aggregator: an :class:`Aggregator`, or a name / ``'name(v)'`` shorthand / mapping
      ``{name: ..., **params}`` / Choice for :func:`make_aggregator` (with ``aggregator_kw``).
    server_optimizer: an optax transformation, or a name / shorthand / mapping / Choice
      for :func:`make_server_optimizer` (with ``server_kw``: lr, momentum, b1, b2, eps).
    bn_mode: 'pooled' | 'local' | 'aggregate' | 'recalibrate' (see the module docstring).
    norm_guard: optional :class:`NormGuard` rejecting outsized deltas.
    client_algorithm: a :class:`~fedjax_grid.federated.client_algorithms.ClientAlgorithm`
      or its spec (``'scaffold'``), for a federation of ``num_clients`` clients.
    """
    agg = aggregator if isinstance(aggregator, Aggregator) else \
        make_aggregator(aggregator, **(aggregator_kw or {}))
    opt = make_server_optimizer(server_optimizer, **(server_kw or {})) \
        if isinstance(server_optimizer, (str, Mapping, Choice)) else server_optimizer
    if bn_mode not in BN_MODES:
        raise UserError(f"bn_mode {bn_mode!r} is not supported; allowed: {', '.join(BN_MODES)}")
    guard = norm_guard.validate() if norm_guard is not None else None
    bs_agg = mean()
    client = make_client_algorithm(client_algorithm, num_clients)

    def init(variables: PyTree) -> ServerState:
        return server_init(variables, opt, guard.init() if guard is not None else None,
                           algorithm=client.server_init(variables['params']))

    def begin(state: ServerState) -> RoundFold:
        return RoundFold(state, agg, opt, guard, bs_agg, bn_mode, client)

    def apply(state: ServerState, client_results: Iterable) -> tuple[ServerState, dict]:
        fold = begin(state)
        for index, item in enumerate(client_results):
            if not isinstance(item, tuple) or len(item) not in (2, 3, 4):
                fold.num_reported += 1
                fold.rejected.append((index, f"client result of type {type(item).__name__} is "
                                             f"not a (variables, num_examples[, client_id"
                                             f"[, bn_moments]]) tuple"))
                continue
            fold.add(item[0], item[1], item[2] if len(item) >= 3 else index,
                     item[3] if len(item) == 4 else None)
            del item  # keep O(model): drop the reference before the next item
        return fold.finish()

    return FederatedAlgorithm(init, apply, begin, client)
