"""Exact BatchNorm statistics of a model over a data set, and the collapse check.

Running averages (``batch_stats``) lag the model they describe: they start at
mean 0 / variance 1 and move by ``1 - momentum`` per step, so after the few
local steps of a federated round they can be far from the true statistics
(MobileNetV3's depthwise variances are ~0.003-0.03; eleven evaluation-mode
BatchNorms that divide by sqrt(0.6) instead then shrink the signal until every
image gets the same logits). :func:`bn_moments` measures the statistics exactly
("precise BN"): one pass in training mode over the data, every BatchNorm layer
normalising with its batch statistics (padded rows masked out), accumulating per
layer and channel the example-weighted mean of the batch means ``E[x]`` and of
the batch second moments ``E[x^2]`` in float64.

Moments use the tree structure of ``batch_stats`` with the ``'var'`` leaf holding
``E[x^2]`` (see :mod:`fedjax_grid.federated.bn_pooling`), so the server pools
several clients' moments with the ordinary streaming weighted mean and turns
them into statistics with ``var = E[x^2] - E[x]^2``.

:func:`logit_spread` is the evaluation's check for the collapse: the spread of
evaluation-mode logits across a batch next to that of training-mode logits.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_grid import streams
from fedjax_grid.federated.bn_pooling import layer_map, stats_from_moments
from fedjax_grid.training.compile_cache import AotFunction
from fedjax_grid.training.trainer import (DEFAULT_PREPROCESS, describe, device_tuple, eval_batches,
                                          hash_key, shardings, split_collections, to_input)

_MOMENTS_CACHE: dict = {}
_SPREAD_CACHE: dict = {}

#: A batch's evaluation-mode logits count as collapsed when their spread is below
#: this fraction of the training-mode spread (healthy models: ratio ~0.3-3).
COLLAPSE_RATIO = 1e-2


def _stats_model(model):
    """``model`` with BatchNorm momentum 0: its 'batch_stats' after one training-mode
    call are that batch's mean and (biased) variance."""
    return model.clone(bn_momentum=0.0)


def _get_moments_step(model, preprocess, devs: tuple):
    key = (hash_key(model), hash_key(preprocess), devs)
    entry = _MOMENTS_CACHE.get(key)
    if entry is not None:
        return entry[0]
    rep, dat = shardings(devs)
    stats_model = _stats_model(model)

    def step(params, extra, images, mask):
        x = to_input(images, preprocess)
        bn_mask = mask.astype(bool)[:, None, None, None]
        _, new = stats_model.apply({"params": params, **extra}, x, train=True,
                                   bn_mask=bn_mask, rngs={"dropout": jax.random.PRNGKey(0)},
                                   mutable=["batch_stats"])
        return new["batch_stats"]  # per layer: mean and variance of this batch's real rows

    fn = AotFunction(jax.jit(step, in_shardings=(rep, rep, dat, dat), out_shardings=rep),
                     describe("bn_moments", model, preprocess, devs=devs), devs)
    _MOMENTS_CACHE[key] = (fn, model, preprocess)
    return fn


def bn_moments(model, variables: dict, data, batch_size: int, *,
               indices: Optional[Sequence[int]] = None, preprocess: Optional[Callable] = None,
               devices: Optional[Sequence] = None) -> tuple[dict, int]:
    """Exact per-layer BatchNorm moments of ``variables`` over ``data``.

    data/indices/preprocess/devices as in ``trainer.local_train``; batches of
    ``batch_size`` rows (the last one padded; padded rows do not count). Returns
    ``(moments, count)``: ``moments`` has the tree structure of
    ``variables['batch_stats']`` with float64 leaves, ``'mean'`` = E[x] and ``'var'``
    = E[x^2] per channel, each the example-weighted mean over the batches; ``count``
    is the number of examples; ``(None, 0)`` without data. The model must take a
    ``bn_mask`` call argument and have a ``bn_momentum`` attribute (VGG and
    MobileNetV3 do).
    """
    devs = device_tuple(devices)
    preprocess = DEFAULT_PREPROCESS if preprocess is None else preprocess
    rep, _ = shardings(devs)
    params, extra = split_collections(variables)
    params, extra = jax.device_put(params, rep), jax.device_put(extra, rep)
    step = _get_moments_step(model, preprocess, devs)
    total = None
    count = 0
    for images, _, mask in eval_batches(data, indices, batch_size):
        stats = jax.device_get(step(params, extra, images, mask))
        r = float(np.sum(mask))
        moments = layer_map(lambda m, v: (r * np.asarray(m, np.float64),
                                           r * (np.asarray(v, np.float64)
                                                + np.square(np.asarray(m, np.float64)))), stats)
        total = moments if total is None else jax.tree.map(np.add, total, moments)
        count += int(r)
    if total is None:
        return None, 0
    return jax.tree.map(lambda a: a / count, total), count


def calibration_indices(n: int, k: int, seed: int) -> np.ndarray:
    """``min(k, n)`` sorted indices of a data set of ``n`` examples, drawn without
    replacement by ``seed`` (the same calibration subset every round)."""
    return np.sort(streams.rng(seed, streams.BN_CALIBRATION).permutation(n)[:min(int(k), n)])


def recalibrated_stats(model, variables: dict, data, batch_size: int, **kw) -> dict:
    """``variables['batch_stats']`` re-estimated exactly over ``data`` (``bn_moments``
    then ``var = E[x^2] - E[x]^2``), with the dtypes of the current statistics; kw as
    in :func:`bn_moments`. This is ``server.bn_mode='recalibrate'``."""
    moments, _ = bn_moments(model, variables, data, batch_size, **kw)
    if moments is None:
        return variables["batch_stats"]
    return stats_from_moments(moments, like=variables["batch_stats"])


# ------------------------------------------------------------- collapse check

def _get_spread_step(model, preprocess):
    key = (hash_key(model), hash_key(preprocess))
    entry = _SPREAD_CACHE.get(key)
    if entry is not None:
        return entry[0]

    def spread(params, extra, images):
        x = to_input(images, preprocess)
        variables = {"params": params, **extra}
        eval_logits = model.apply(variables, x, train=False)
        if extra:
            train_logits, _ = model.apply(variables, x, train=True, mutable=sorted(extra),
                                          rngs={"dropout": jax.random.PRNGKey(0)})
        else:
            train_logits = model.apply(variables, x, train=True,
                                       rngs={"dropout": jax.random.PRNGKey(0)})
        s = lambda z: jnp.mean(jnp.std(z.astype(jnp.float32), axis=0))  # noqa: E731
        return jnp.stack([s(eval_logits), s(train_logits)])

    fn = AotFunction(jax.jit(spread), describe("logit_spread", model, preprocess),
                     tuple(jax.local_devices()[:1]))
    _SPREAD_CACHE[key] = (fn, model, preprocess)
    return fn


def logit_spread(model, variables: dict, images, *, preprocess: Optional[Callable] = None
                 ) -> dict:
    """Spread of the logits across ``images`` (uint8 (N, H, W, C), N >= 2).

    Returns ``{'eval': s_eval, 'train': s_train, 'collapsed': bool}`` where ``s`` is
    the mean over classes of the standard deviation of the logits across the batch,
    in evaluation mode (running statistics) and in training mode (the batch's own
    statistics, nothing updated); collapsed when ``s_eval < COLLAPSE_RATIO * s_train``.
    """
    preprocess = DEFAULT_PREPROCESS if preprocess is None else preprocess
    params, extra = split_collections(variables)
    s_eval, s_train = (float(v) for v in jax.device_get(
        _get_spread_step(model, preprocess)(params, extra, jnp.asarray(images))))
    return {"eval": s_eval, "train": s_train,
            "collapsed": bool(s_train > 0 and s_eval < COLLAPSE_RATIO * s_train)}
