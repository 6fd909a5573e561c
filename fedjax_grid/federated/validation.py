"""Validation of client updates before they reach an aggregator.

``validate_update(update, template)`` returns ``None`` for a good update, or a
one-line reason string for a bad one (recorded in the task table's ``reason``
column, status ``'rejected'``). Checks, in order:

1. tree structure (same keys / containers as the template),
2. per-leaf shape and dtype,
3. finiteness (no NaN / Inf in any floating leaf),
4. optionally the update's global L2 norm against a :class:`NormGuard`: reject
   when it exceeds ``max_norm_ratio`` times the median norm of recently accepted
   updates (pass *deltas*, ``client_params - global_params``, for this check).
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional

import jax
import numpy as np

from fedjax_grid.errors import UserError
from fedjax_grid.federated.tree_math import leaf_dtype, np_tree_l2_norm

PyTree = Any


def _paths(tree: PyTree) -> list[str]:
    return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _short(items: list[str], limit: int = 3) -> str:
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def check_structure(update: PyTree, template: PyTree) -> Optional[str]:
    """Reason string if ``update`` and ``template`` differ in tree structure, else None."""
    try:
        if jax.tree_util.tree_structure(update) == jax.tree_util.tree_structure(template):
            return None
    except Exception as e:  # exotic objects that cannot even be flattened
        return f"tree structure differs: cannot flatten update ({type(e).__name__})"
    got, want = _paths(update), _paths(template)
    missing = [p for p in want if p not in set(got)]
    extra = [p for p in got if p not in set(want)]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {_short(missing)}")
        if extra:
            parts.append(f"unexpected {_short(extra)}")
        return "tree structure differs: " + "; ".join(parts)
    return "tree structure differs: same leaf paths but different container types"


def check_leaves(update: PyTree, template: PyTree) -> Optional[str]:
    """Shape, dtype and finiteness of every leaf (structures must already match)."""
    flat_u = jax.tree_util.tree_flatten_with_path(update)[0]
    flat_t = jax.tree_util.tree_leaves(template)
    for (path, u), t in zip(flat_u, flat_t):
        where = jax.tree_util.keystr(path)
        if np.shape(u) != np.shape(t):
            return f"shape mismatch at {where}: {tuple(np.shape(u))} != expected {tuple(np.shape(t))}"
        du, dt = leaf_dtype(u), leaf_dtype(t)
        if du != dt:
            return f"dtype mismatch at {where}: {du.name} != expected {dt.name}"
    for path, u in flat_u:
        if np.issubdtype(leaf_dtype(u), np.inexact):
            x = np.asarray(u)
            if not np.isfinite(x).all():
                nan = int(np.isnan(x).sum())
                inf = int(np.isinf(x).sum())
                return f"non-finite values at {jax.tree_util.keystr(path)}: {nan} NaN, {inf} Inf"
    return None


class NormGuard(NamedTuple):
    """Rejects updates whose norm is far above the recent accepted ones (pure helper).

    The guard's state is a float64 numpy array of fixed shape ``(window,)``: the
    last accepted update norms, newest last, ``NaN`` in slots not filled yet. The
    fixed shape keeps a ServerState's tree stable across rounds (checkpoint
    templates); :func:`norm_history_values` gives the filled part.
    ``check`` is silent until ``min_history`` norms are known, and when their
    median is 0. Usage::

        guard = NormGuard(max_norm_ratio=10.0)
        state = guard.init()
        reason = guard.check(state, norm)          # None or a reason string
        if reason is None: state = guard.add(state, norm)
    """
    max_norm_ratio: float = 10.0
    window: int = 50
    min_history: int = 3

    def validate(self) -> 'NormGuard':
        """Return self, or raise ``UserError`` for bad settings."""
        r = self.max_norm_ratio
        if not (isinstance(r, (int, float)) and math.isfinite(r) and r > 1):
            raise UserError(f"max_norm_ratio={r!r} is invalid; allowed: a finite number > 1")
        if not (isinstance(self.window, int) and self.window >= 1):
            raise UserError(f"norm guard window={self.window!r} is invalid; allowed: an integer >= 1")
        if not (isinstance(self.min_history, int) and 1 <= self.min_history <= self.window):
            raise UserError(f"norm guard min_history={self.min_history!r} is invalid; "
                            f"allowed: an integer in [1, window={self.window}]")
        return self

    def init(self) -> np.ndarray:
        return np.full((self.window,), np.nan, np.float64)

    def check(self, state: np.ndarray, norm: float) -> Optional[str]:
        if not math.isfinite(norm):
            return f"update norm {norm} is not finite"
        known = norm_history_values(state)
        if len(known) < self.min_history:
            return None
        med = float(np.median(known))
        if med > 0 and norm > self.max_norm_ratio * med:
            return (f"update norm {norm:.4g} is {norm / med:.1f}x the median {med:.4g} of "
                    f"recent accepted updates; allowed: <= {self.max_norm_ratio:g}x")
        return None

    def add(self, state: np.ndarray, norm: float) -> np.ndarray:
        state = np.asarray(state, np.float64)
        if state.shape != (self.window,):       # e.g. a history from a guard with another window
            known = norm_history_values(state)[-self.window:]
            state = np.concatenate([np.full(self.window - len(known), np.nan), known])
        return np.concatenate([state[1:], [float(norm)]])


def norm_history_values(state: Optional[np.ndarray]) -> np.ndarray:
    """The filled (non-NaN) entries of a NormGuard state, oldest first."""
    if state is None:
        return np.zeros((0,), np.float64)
    state = np.asarray(state, np.float64)
    return state[~np.isnan(state)]


def validate_update(update: PyTree, template: PyTree, *,
                    guard: Optional[NormGuard] = None,
                    guard_state: Optional[np.ndarray] = None) -> Optional[str]:
    """``None`` if ``update`` is acceptable, else a one-line reason.

    update, template: pytrees (numpy or JAX leaves). With ``guard`` (and its
    ``guard_state``), also checks the global L2 norm of ``update`` itself, so
    pass the delta tree when using the guard.
    """
    reason = check_structure(update, template) or check_leaves(update, template)
    if reason is None and guard is not None:
        reason = guard.check(guard.init() if guard_state is None else guard_state,
                             np_tree_l2_norm(update))
    return reason
