"""BatchNorm statistics pooled exactly across clients (pure numpy).

A client reports the *moments* of its data under its model, per BatchNorm layer
and channel: ``E[x]`` and ``E[x^2]`` with its example count ``n`` (see
:func:`fedjax_grid.training.bn_stats.bn_moments`). Moments use the tree
structure of ``batch_stats`` with the ``'var'`` leaf holding ``E[x^2]``, so the
streaming weighted mean (weights ``n``) pools them, and the statistics of the
union of the clients' data follow exactly::

    mean = sum_c n_c E_c[x] / sum_c n_c
    var  = sum_c n_c E_c[x^2] / sum_c n_c - mean^2

Averaging the clients' *variances* instead (``bn_mode='aggregate'``) drops the
spread of the client means, and averaging running averages adds their lag.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

PyTree = Any


def layer_map(fn: Callable, batch_stats: PyTree) -> PyTree:
    """Apply ``fn(mean, var) -> (mean', var')`` to every BatchNorm layer (a mapping
    with exactly the keys 'mean' and 'var') of a ``batch_stats`` tree."""
    if hasattr(batch_stats, "keys") and set(batch_stats.keys()) == {"mean", "var"}:
        m, v = fn(batch_stats["mean"], batch_stats["var"])
        return {"mean": m, "var": v}
    return {k: layer_map(fn, v) for k, v in batch_stats.items()}


def is_bn_layout(batch_stats: PyTree) -> bool:
    """True when every leaf of ``batch_stats`` sits in a layer mapping of exactly 'mean'
    and 'var' (Flax ``BatchNorm``); other statistics cannot be pooled as moments."""
    if not hasattr(batch_stats, "keys"):
        return False
    if set(batch_stats.keys()) == {"mean", "var"}:
        return True
    return bool(batch_stats) and all(is_bn_layout(v) for v in batch_stats.values())


def moments_from_stats(batch_stats: PyTree) -> PyTree:
    """Statistics ``(mean, var)`` -> moments ``(E[x], E[x^2])``, float64."""
    def fn(m, v):
        m = np.asarray(m, np.float64)
        return m, np.asarray(v, np.float64) + np.square(m)
    return layer_map(fn, batch_stats)


def stats_from_moments(moments: PyTree, like: PyTree = None) -> PyTree:
    """Moments ``(E[x], E[x^2])`` -> statistics ``(mean, var)``, ``var = E[x^2] - E[x]^2``
    clipped at 0; leaves cast to the dtypes of ``like`` (a ``batch_stats`` tree) if given."""
    def fn(m, sq):
        m = np.asarray(m, np.float64)
        return m, np.maximum(np.asarray(sq, np.float64) - np.square(m), 0.0)
    stats = layer_map(fn, moments)
    if like is None:
        return stats
    return _cast_like(stats, like)


def _cast_like(tree: PyTree, like: PyTree) -> PyTree:
    if hasattr(tree, "keys"):
        return {k: _cast_like(tree[k], like[k]) for k in tree}
    return np.asarray(tree, dtype=np.asarray(like).dtype)


def pool_moments(items) -> tuple[PyTree, int]:
    """Pool ``[(moments, count), ...]`` into the moments of the union and its count."""
    total, n = None, 0
    for moments, count in items:
        w = float(count)
        scaled = layer_map(lambda m, sq: (w * np.asarray(m, np.float64),
                                          w * np.asarray(sq, np.float64)), moments)
        total = scaled if total is None else layer_map2(np.add, total, scaled)
        n += int(count)
    if total is None:
        return None, 0
    return layer_map(lambda m, sq: (m / n, sq / n), total), n


def layer_map2(op: Callable, a: PyTree, b: PyTree) -> PyTree:
    """Leaf-wise ``op(a, b)`` of two trees of the same structure."""
    if hasattr(a, "keys"):
        return {k: layer_map2(op, a[k], b[k]) for k in a}
    return op(a, b)
