"""Small pure helpers for arithmetic over pytrees of arrays.

Every function accepts trees whose leaves are numpy or JAX arrays (or Python
scalars) and returns a new tree; nothing is modified in place. Host-side
helpers (``np_*``) compute in numpy so they never trigger an XLA compilation.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np

PyTree = Any


def np_tree_sub(a: PyTree, b: PyTree) -> PyTree:
    """Leaf-wise ``a - b`` on host numpy arrays, keeping ``a``'s dtype."""
    return jax.tree_util.tree_map(
        lambda x, y: np.subtract(np.asarray(x), np.asarray(y), dtype=np.asarray(x).dtype), a, b)


#: Elements per float64 block of ``np_tree_l2_norm`` (256 KiB: stays in cache).
_NORM_CHUNK = 1 << 15


def np_tree_l2_norm(tree: PyTree) -> float:
    """Global L2 norm over every leaf of ``tree`` (float64 on host, a Python float).

    Non-finite leaves give ``nan`` / ``inf`` rather than raising.
    """
    total, buf = 0.0, None
    for leaf in jax.tree_util.tree_leaves(tree):
        x = np.asarray(leaf).reshape(-1)
        if x.dtype == np.float64:
            total += float(np.dot(x, x))
            continue
        if buf is None:  # one float64 block, reused: no full-size copy per leaf
            buf = np.empty(_NORM_CHUNK, np.float64)
        for a in range(0, x.size, _NORM_CHUNK):
            block = buf[:min(_NORM_CHUNK, x.size - a)]
            np.copyto(block, x[a:a + _NORM_CHUNK], casting="unsafe")
            total += float(np.dot(block, block))
    return float(np.sqrt(total))


def leaf_dtype(x: Any) -> np.dtype:
    """The numpy dtype of one leaf (JAX array, numpy array or Python scalar)."""
    return np.dtype(x.dtype) if hasattr(x, 'dtype') else np.asarray(x).dtype


def cast_like(value: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast a float64 host result back to ``dtype``; integer dtypes are rounded."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer) or dtype == np.bool_:
        return np.rint(value).astype(dtype)
    return np.asarray(value).astype(dtype)
