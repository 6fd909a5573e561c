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
optimizer gets the aggregated delta. ``batch_stats`` (if the model has them) are
always combined with the streaming weighted mean (robust statistics are not
meaningful for running variances) and become the server's ``batch_stats`` in
both bn modes (see :mod:`fedjax_grid.federated.server`: in ``'local'`` mode the
engine additionally keeps each client's own statistics).

The norm guard checks each delta against the norms accepted in *previous*
rounds only, so the decision does not depend on the order clients report in
(the first round, without history, is unguarded); the state's
``norm_history`` is updated after the round.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, NamedTuple, Optional, Union

import numpy as np
import optax

from fedjax_grid.errors import UserError
from fedjax_grid.federated.aggregators import Aggregator, make_aggregator, mean
from fedjax_grid.federated.server import (BN_MODES, ServerState, make_server_optimizer,
                                          server_apply, server_init, server_variables)
from fedjax_grid.federated.tree_math import np_tree_l2_norm, np_tree_sub
from fedjax_grid.federated.validation import NormGuard, validate_update

PyTree = Any


class FederatedAlgorithm(NamedTuple):
    """``init(variables) -> ServerState``;
    ``apply(state, client_results) -> (state, diagnostics)``."""
    init: Callable[[PyTree], ServerState]
    apply: Callable[[ServerState, Iterable], tuple[ServerState, dict]]


def _weight_reason(n) -> Optional[str]:
    try:
        w = float(n)
    except (TypeError, ValueError):
        return f"num_examples={n!r} is not a number"
    if not (math.isfinite(w) and w > 0):
        return f"num_examples={n!r} is invalid; allowed: a finite number > 0"
    return None


def make_algorithm(aggregator: Union[str, Aggregator] = 'mean',
                   server_optimizer: Union[str, optax.GradientTransformation] = 'fedavg',
                   *, bn_mode: str = 'aggregate', norm_guard: Optional[NormGuard] = None,
                   aggregator_kw: Optional[dict] = None,
                   server_kw: Optional[dict] = None) -> FederatedAlgorithm:
    """Build a :class:`FederatedAlgorithm`.

    aggregator: an :class:`Aggregator` or a name for :func:`make_aggregator`
      (with ``aggregator_kw``).
    server_optimizer: an optax transformation or a name for
      :func:`make_server_optimizer` (with ``server_kw``: lr, momentum, b1, b2, eps).
    bn_mode: 'aggregate' | 'local' (see the module docstring).
    norm_guard: optional :class:`NormGuard` rejecting outsized deltas.
    """
    agg = aggregator if isinstance(aggregator, Aggregator) else \
        make_aggregator(aggregator, **(aggregator_kw or {}))
    opt = make_server_optimizer(server_optimizer, **(server_kw or {})) \
        if isinstance(server_optimizer, str) else server_optimizer
    if bn_mode not in BN_MODES:
        raise UserError(f"bn_mode {bn_mode!r} is not supported; allowed: {', '.join(BN_MODES)}")
    guard = norm_guard.validate() if norm_guard is not None else None
    bs_agg = mean()

    def init(variables: PyTree) -> ServerState:
        return server_init(variables, opt, guard.init() if guard is not None else None)

    def apply(state: ServerState, client_results: Iterable) -> tuple[ServerState, dict]:
        template = server_variables(state)
        has_bn = state.batch_stats is not None
        agg_state = agg.init(state.params)
        bs_state = bs_agg.init(state.batch_stats) if has_bn else None
        history = state.norm_history if state.norm_history is not None else \
            (guard.init() if guard is not None else None)
        accepted, rejected, norms = [], [], {}
        total_weight, num_reported = 0.0, 0
        for index, item in enumerate(client_results):
            num_reported += 1
            if not isinstance(item, tuple) or len(item) not in (2, 3):
                rejected.append((index, f"client result of type {type(item).__name__} is not a "
                                        f"(variables, num_examples[, client_id]) tuple"))
                continue
            variables, n = item[0], item[1]
            cid = item[2] if len(item) == 3 else index
            reason = _weight_reason(n) or validate_update(variables, template)
            delta = norm = None
            if reason is None:
                delta = np_tree_sub(variables['params'], state.params)
                norm = np_tree_l2_norm(delta)
                if guard is not None:
                    reason = guard.check(history, norm)
            if reason is not None:
                rejected.append((cid, reason))
                continue
            agg_state = agg.update(agg_state, delta, float(n))
            if has_bn:
                bs_state = bs_agg.update(bs_state, variables['batch_stats'], float(n))
            accepted.append(cid)
            norms[cid] = norm
            total_weight += float(n)
            del delta, variables, item      # keep O(model): drop references before the next item

        diagnostics = {'round': state.round + 1, 'num_reported': num_reported,
                       'num_accepted': len(accepted), 'num_rejected': len(rejected),
                       'accepted': accepted, 'rejected': rejected, 'update_norms': norms,
                       'total_weight': total_weight, 'applied': bool(accepted),
                       'mean_delta_norm': float('nan'), 'aggregator': agg.name}
        if not accepted:
            return state._replace(round=state.round + 1), diagnostics
        mean_delta = agg.result(agg_state)
        diagnostics['mean_delta_norm'] = np_tree_l2_norm(mean_delta)
        new_history = None
        if guard is not None:
            new_history = history
            for cid in accepted:
                new_history = guard.add(new_history, norms[cid])
        new_state = server_apply(state, mean_delta, opt,
                                 bs_agg.result(bs_state) if has_bn else None,
                                 norm_history=new_history)
        return new_state, diagnostics

    return FederatedAlgorithm(init, apply)
