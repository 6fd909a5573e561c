"""Several clients' local training in one compiled step: ``vmap`` over clients.

``local_train_many`` is ``local_train`` for a list of clients (as FedJAX's
``for_each_client``): clients whose step counts agree (``epochs x ceil(n / batch_size)``
steps; local sets of different sizes agree when they need as many batches) train
together, each step of all of them one call of a jitted ``vmap`` of the very step
``local_train`` runs (``trainer.train_step_fn``). Every client keeps its own
permutations, masks, dropout and augmentation keys (derived from its rng exactly as
``local_train`` derives them), its own optimizer state and metrics.

Equality with ``local_train``: the same function of the same inputs, computed by other
kernels -- a vmapped conv with per-client kernels is one grouped conv, a vmapped matmul
a batched one -- so results agree up to float32 summation order, not bitwise
(tests/training/test_batched.py: after 6 momentum steps at lr 0.05 the updated
parameters differ by up to 1.6e-4 on values of 0.2, i.e. 1e-3 relative). Where the engine must stay bitwise
equal to per-client training, keep ``local_train``.

Shapes: each client's data is an ``(images, labels)`` pair or an ``ImageDataset`` read
at its ``indices``; images (N, H, W, C) uint8 or float32, all clients the same
(H, W, C). Returns one ``(variables, metrics)`` per client, in order, as ``local_train``.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import jax
import numpy as np

from fedjax_grid.errors import UserError
from fedjax_grid.models.precision import with_precision
from fedjax_grid.training import batching, trainer
from fedjax_grid.training.compile_cache import AotFunction
from fedjax_grid.training.hparams import HParams

_BATCHED_CACHE: dict = {}


def _get_batched_step(model, name: str, clip: bool, augment: bool, preprocess):
    """jit(vmap(train step)) over a leading client axis (``mu`` and ``step_idx`` shared)."""
    key = (trainer.hash_key(model), name, clip, augment, trainer.hash_key(preprocess))
    entry = _BATCHED_CACHE.get(key)
    if entry is None:
        step = trainer.train_step_fn(model, name, clip, augment, preprocess)
        fn = AotFunction(jax.jit(jax.vmap(step, in_axes=(0, 0, 0, 0, 0, None, 0, 0, 0, 0, None))),
                         trainer.describe("train_vmap", model, preprocess, name, clip, augment),
                         tuple(jax.local_devices()[:1]))
        entry = _BATCHED_CACHE[key] = (fn, model, preprocess)
    return entry[0]


def _stack(trees):
    return jax.tree.map(lambda *a: np.stack([np.asarray(x) for x in a]), *trees)


def _unstack(tree, g: int) -> list:
    tree = jax.device_get(tree)
    return [jax.tree.map(lambda a, i=i: np.asarray(a[i]), tree) for i in range(g)]


class _Client:
    """One client's arrays, key and step plan."""

    def __init__(self, data, indices, rng, batch_size: int):
        self.images, self.labels = batching.as_arrays(data, indices)
        self.n = len(self.labels)
        self.key = trainer.as_key(rng)
        self.words = trainer.key_words(self.key)
        self.per_epoch = batching.num_batches(self.n, batch_size) if self.n else 0

    def epoch_batches(self, epoch: int, batch_size: int) -> list:
        order = np.random.default_rng(self.words + [epoch]).permutation(self.n)
        return list(batching.padded_batches(order, batch_size))


def local_train_many(model, variables, data: Sequence, hparams: HParams, rngs: Sequence, *,
                     indices: Optional[Sequence] = None, anchor_params=None,
                     preprocess: Optional[Callable] = None,
                     max_group: Optional[int] = None) -> list[tuple[dict, dict]]:
    """Train G clients as G calls of ``local_train(model, variables[i], data[i], hparams,
    rngs[i], indices=indices[i])`` would, several clients per compiled step.

    variables: one variables dict for every client (the round's global model) or a list
    of G. anchor_params: the FedProx anchor (default: each client's incoming params).
    max_group: at most this many clients per vmapped step (default: all that agree); a
    smaller group is padded to it with copies of its last client (their results dropped),
    so every group of a step count runs one compiled program.
    """
    if not isinstance(hparams, HParams):
        raise UserError(f"hparams must be an HParams, got {type(hparams).__name__}")
    g = len(data)
    if len(rngs) != g or (indices is not None and len(indices) != g):
        raise UserError(f"data, rngs and indices must name the same clients: got {g}, "
                        f"{len(rngs)} and {g if indices is None else len(indices)}")
    if max_group is not None and (isinstance(max_group, bool) or int(max_group) < 1):
        raise UserError(f"max_group must be an integer >= 1 or None, got {max_group!r}")
    starts = list(variables) if isinstance(variables, (list, tuple)) else [variables] * g
    preprocess = trainer.DEFAULT_PREPROCESS if preprocess is None else preprocess
    clients = [_Client(data[i], None if indices is None else indices[i], rngs[i],
                       hparams.batch_size) for i in range(g)]
    results: list = [None] * g
    groups: dict[int, list[int]] = {}
    for i, c in enumerate(clients):
        if c.n == 0:
            results[i] = (starts[i], {"loss": math.nan, "accuracy": math.nan,
                                      "num_examples": 0, "num_steps": 0})
        else:
            groups.setdefault(c.per_epoch, []).append(i)
    size = max_group or g
    for members in groups.values():
        for at in range(0, len(members), size):
            chunk = members[at:at + size]
            padded = chunk + chunk[-1:] * ((max_group or len(chunk)) - len(chunk))
            for i, out in zip(chunk, _train_group(model, [starts[i] for i in padded],
                                                  [clients[i] for i in padded], hparams,
                                                  anchor_params, preprocess)):
                results[i] = out
    return results


def _train_group(model, starts: list, clients: list, hparams: HParams, anchor_params,
                 preprocess) -> list[tuple[dict, dict]]:
    """Clients with equal step counts, every step of all of them one vmapped call."""
    g = len(clients)
    params, extra = zip(*(trainer.split_collections(v) for v in starts))
    params, extra = _stack(params), _stack(extra)
    anchor = params if anchor_params is None else _stack([anchor_params] * g)
    clip = hparams.grad_clip is not None
    single = jax.tree.map(lambda a: a[0], params)
    opt_one = trainer.get_opt_init(hparams.optimizer, clip, trainer.device_tuple(None)[:1])(
        single, trainer.opt_hparams(hparams))
    opt_state = jax.tree.map(lambda a: np.broadcast_to(np.asarray(a), (g,) + a.shape).copy(),
                             opt_one)
    step = _get_batched_step(with_precision(model, hparams.precision), hparams.optimizer, clip,
                             hparams.augment, preprocess)
    keys = np.stack([np.asarray(c.key) for c in clients])
    mu = np.float32(hparams.prox_mu)
    steps, sums = 0, None
    for epoch in range(hparams.epochs):
        plans = [c.epoch_batches(epoch, hparams.batch_size) for c in clients]
        sums = np.zeros((g, 3), np.float32)
        for j in range(clients[0].per_epoch):
            images = np.stack([c.images[plan[j][0]] for c, plan in zip(clients, plans)])
            labels = np.stack([c.labels[plan[j][0]] for c, plan in zip(clients, plans)])
            mask = np.stack([plan[j][1] for plan in plans])
            params, extra, opt_state, sums = step(params, extra, opt_state, sums, anchor, mu,
                                                  images, labels, mask, keys, np.int32(steps))
            steps += 1
    sums = np.asarray(jax.device_get(sums), np.float64)
    out = []
    for i, (p, e) in enumerate(zip(_unstack(params, g), _unstack(extra, g))):
        loss_sum, correct, count = sums[i]
        out.append(({"params": p, **e}, {"loss": loss_sum / count, "accuracy": correct / count,
                                         "num_examples": clients[i].n, "num_steps": steps}))
    return out
