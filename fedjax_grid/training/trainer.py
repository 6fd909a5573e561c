"""Jit-compiled local training and evaluation of Flax image classifiers.

Compiled functions are built once per key and kept in module-level caches:

* train step: (model, optimizer name, clipping on/off, augment, preprocess, devices)
* eval step:  (model, preprocess, devices)
* init:       (model, input shape)

``jax.jit`` then caches per input shape/dtype. Every batch has the fixed shape
``(batch_size, H, W, C)`` (short batches are padded and masked, see
``batching``), and learning rate, momentum, weight decay, clip norm and the
FedProx mu are runtime values, so clients of any size and a whole
hyper-parameter sweep share one compiled step per model and optimizer.

Data parallelism: the batch axis is sharded over ``devices`` (default
``jax.local_devices()``) with a ``NamedSharding`` and parameters are
replicated; XLA's SPMD partitioner inserts the cross-device all-reduces, so
gradients and BatchNorm batch statistics are means over the whole global
batch (synchronised BN) -- numerically the single-device computation.

Shapes: images uint8 (N, H, W, C) (mapped to float32 by ``preprocess``,
default ``Standardize()``) or float32 (used as given); labels int (N,).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from fedjax_grid.errors import UserError
from fedjax_grid.models.precision import with_precision
from fedjax_grid.training import batching
from fedjax_grid.training.augment import Standardize, random_crop_flip
from fedjax_grid.training.compile_cache import AotFunction, source_digest
from fedjax_grid.training.hparams import HParams, optimizer_factory

DEFAULT_PREPROCESS = Standardize()

_INIT_CACHE: dict = {}
_OPT_INIT_CACHE: dict = {}
_TRAIN_CACHE: dict = {}
_EVAL_CACHE: dict = {}


# ----------------------------------------------------------------- helpers

def hash_key(obj) -> Any:
    """``obj`` if hashable (Flax modules are hashable dataclasses), else a stable stand-in."""
    try:
        hash(obj)
        return obj
    except TypeError:
        return ("repr", type(obj).__qualname__, repr(obj))


def describe(kind: str, model, preprocess=None, *parts, devs: tuple = ()) -> str:
    """Text naming a compiled function exactly, for ``compile_cache.AotFunction``: its kind,
    the reprs of model and preprocessing, other static ``parts``, the devices and the
    digests of the source files defining the model's and preprocessing's classes."""
    return repr((kind, repr(model), repr(preprocess), parts,
                 [(d.platform, d.id) for d in devs], source_digest(model, preprocess)))


def device_tuple(devices: Optional[Sequence]) -> tuple:
    """The devices to shard over: ``devices``, or all local devices when None."""
    devs = tuple(jax.local_devices() if devices is None else devices)
    if not devs:
        raise UserError("devices must name at least one device, got an empty list")
    return devs


def shardings(devs: tuple) -> tuple[NamedSharding, NamedSharding]:
    """(replicated, batch-sharded) shardings over a 1-D 'data' mesh of ``devs``."""
    mesh = Mesh(np.array(devs, dtype=object), ("data",))
    return NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))


def _check_divisible(batch_size: int, devs: tuple) -> None:
    if batch_size % len(devs):
        raise UserError(f"batch_size {batch_size} must be divisible by the number of "
                        f"devices ({len(devs)})")


def as_key(rng):
    """A JAX PRNG key from an int seed, a raw uint32 key or a typed key."""
    if isinstance(rng, (int, np.integer)):
        return jax.random.PRNGKey(int(rng))
    return rng


def key_words(rng) -> list[int]:
    """The key's bits as Python ints (to seed host-side numpy permutations)."""
    arr = jnp.asarray(rng)
    if jnp.issubdtype(arr.dtype, jax.dtypes.prng_key):
        arr = jax.random.key_data(arr)
    return [int(v) for v in np.asarray(arr).ravel()]


def split_collections(variables) -> tuple[Any, dict]:
    """``(params, other collections)`` of Flax ``variables``."""
    if "params" not in variables:
        raise UserError(f"variables must contain 'params', got collections {sorted(variables)}")
    extra = {k: v for k, v in variables.items() if k != "params"}
    return variables["params"], extra


def to_input(images, preprocess):
    """The model input of a batch: uint8 images preprocessed, others cast to float32."""
    if images.dtype == jnp.uint8:
        return preprocess(images).astype(jnp.float32)
    return images.astype(jnp.float32)


def _apply(model, params, extra, x, train, rng=None):
    """Logits (and updated non-param collections when training)."""
    variables = {"params": params, **extra}
    if not train:
        return model.apply(variables, x, train=False), extra
    mutable = sorted(extra) if extra else False
    out = model.apply(variables, x, train=True, rngs={"dropout": rng}, mutable=mutable)
    if mutable:
        logits, new_extra = out
        return logits, {**extra, **new_extra}
    return out, extra


def _masked_sums(logits, labels, mask):
    """float32 (3,): [sum of masked CE loss, masked correct count, mask sum]; and per-row CE."""
    ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    sums = jnp.stack([jnp.sum(ce * mask), jnp.sum(correct * mask), jnp.sum(mask)])
    return sums, ce


# ------------------------------------------------------------------- init

#: XLA options of the init program: LLVM's level 2 instead of XLA:CPU's default 3. An init
#: is the weights' random draws (threefry) and their scaling, which level 3 spends long on
#: and which level 2 computes bitwise equal (tests/training/test_init_compile.py, every
#: registered model). Compile of the init of VGG-11 (width 0.125, ImageNet head) 18.5 ->
#: 3.4 s, VGG-16 (width 0.25) 10.5 -> 2.7 s, MobileNetV3-Small (0.5, 64 px) 26.9 -> 12.0 s
#: on this 2-core machine; paid once per model and shape by each coordinator with a cold
#: compilation cache. A train step is not compiled so: level 2 is not bitwise equal there
#: (MobileNetV3-Small) and saves no compile time (VGG-11). CPU only: on a GPU neither the
#: slow compile nor the equality was measured, so XLA's defaults stay.
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 2}


def _init_options() -> Optional[dict]:
    return INIT_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None


def init_variables(model, input_shape: Sequence[int], rng) -> dict:
    """Initial ``{'params', 'batch_stats'?}`` of ``model`` for inputs of ``input_shape``.

    input_shape: (H, W, C) or (N, H, W, C); rng: int seed or PRNG key. Jitted
    and cached per (model, shape).
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1,) + shape
    if len(shape) != 4:
        raise UserError(f"input_shape must be (H, W, C) or (N, H, W, C), got {tuple(input_shape)}")
    key = (hash_key(model), shape)
    fn = _INIT_CACHE.get(key)
    if fn is None:
        def init(rng):
            p_rng, d_rng = jax.random.split(rng)
            return model.init({"params": p_rng, "dropout": d_rng},
                              jnp.zeros(shape, jnp.float32), train=False)
        fn = _INIT_CACHE[key] = AotFunction(jax.jit(init), describe("init", model, None, shape),
                                            compiler_options=_init_options())
    return dict(fn(as_key(rng)))


# ------------------------------------------------------------ train step

def opt_hparams(hp: HParams) -> tuple:
    """The optimizer's injected hyper-parameters of ``hp`` (float32: lr, momentum, weight
    decay[, grad clip]), the second argument of ``get_opt_init``'s function."""
    vals = [hp.learning_rate, hp.momentum, hp.weight_decay]
    if hp.grad_clip is not None:
        vals.append(hp.grad_clip)
    return tuple(np.float32(v) for v in vals)


def _inject(name: str, clip: bool, vals):
    names = ["learning_rate", "momentum", "weight_decay"] + (["grad_clip"] if clip else [])
    return optax.inject_hyperparams(optimizer_factory(name, clip))(**dict(zip(names, vals)))


def get_opt_init(name: str, clip: bool, devs: tuple):
    """The cached, jitted ``(params, opt_hparams) -> optimizer state`` of optimizer ``name``
    (``clip``: with gradient clipping), replicated over ``devs``."""
    key = (name, clip, devs)
    fn = _OPT_INIT_CACHE.get(key)
    if fn is None:
        rep, _ = shardings(devs)

        def opt_init(params, vals):
            return _inject(name, clip, vals).init(params)
        fn = _OPT_INIT_CACHE[key] = AotFunction(jax.jit(opt_init, out_shardings=rep),
                                                describe("opt_init", None, None, name, clip, devs=devs),
                                                devs)
    return fn


def train_step_fn(model, name: str, clip: bool, augment: bool, preprocess,
                  linear: bool = False) -> Callable:
    """The (un-jitted) train step of ``local_train``: one masked batch, pure.

    ``step(params, extra, opt_state, sums, anchor, mu, images, labels, mask, rng, step_idx)
    -> (params, extra, opt_state, sums + [loss sum, correct, count])``; images (B, H, W, C),
    labels (B,), mask float32 (B,); the step's dropout and augmentation keys are
    ``split(fold_in(rng, step_idx))``. Optimizer hyper-parameters are read from
    ``opt_state`` (``optax.inject_hyperparams``). ``linear``: the step takes one more
    argument, ``offset`` (a tree like the params), and its loss has the linear term
    ``<offset, params>`` (a client algorithm's gradient correction, e.g. SCAFFOLD's
    ``c - c_i``).
    """
    n_dummy = 4 if clip else 3
    tx = _inject(name, clip, (0.0,) * n_dummy)  # update() reads hyper-params from the state

    def body(params, extra, opt_state, sums, anchor, mu, images, labels, mask, rng, step_idx,
             offset):
        k_drop, k_aug = jax.random.split(jax.random.fold_in(rng, step_idx))
        x = to_input(images, preprocess)
        if augment:
            x = random_crop_flip(k_aug, x)

        def loss_fn(p):
            logits, new_extra = _apply(model, p, extra, x, True, k_drop)
            batch_sums, ce = _masked_sums(logits, labels, mask)
            loss = jnp.sum(ce * mask) / jnp.maximum(jnp.sum(mask), 1.0)
            sq = sum(jnp.sum(jnp.square(a - b)) for a, b in
                     zip(jax.tree.leaves(p), jax.tree.leaves(anchor)))
            loss = loss + 0.5 * mu * sq
            if offset is not None:  # decided when tracing: no term at all without an offset
                loss = loss + sum(jnp.sum(o * q) for o, q in
                                  zip(jax.tree.leaves(offset), jax.tree.leaves(p)))
            return loss, (new_extra, batch_sums)

        grads, (new_extra, batch_sums) = jax.grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, new_extra, opt_state, sums + batch_sums

    if linear:
        def step(params, extra, opt_state, sums, anchor, mu, images, labels, mask, rng, step_idx,
                 offset):
            return body(params, extra, opt_state, sums, anchor, mu, images, labels, mask, rng,
                        step_idx, offset)
    else:
        def step(params, extra, opt_state, sums, anchor, mu, images, labels, mask, rng, step_idx):
            return body(params, extra, opt_state, sums, anchor, mu, images, labels, mask, rng,
                        step_idx, None)
    return step


def get_train_step(model, name: str, clip: bool, augment: bool, preprocess, devs: tuple,
                    linear: bool = False):
    """The jitted ``train_step_fn`` (with ``linear``: its ``offset`` argument too), its
    compiled program persisted whole (``compile_cache.AotFunction``)."""
    key = (hash_key(model), name, clip, augment, hash_key(preprocess), devs) + \
        (("linear",) if linear else ())
    entry = _TRAIN_CACHE.get(key)
    if entry is not None:
        return entry[0]
    rep, dat = shardings(devs)
    fn = jax.jit(train_step_fn(model, name, clip, augment, preprocess, linear),
                 in_shardings=(rep, rep, rep, rep, rep, rep, dat, dat, dat, rep, rep)
                 + ((rep,) if linear else ()), out_shardings=(rep, rep, rep, rep))
    fn = AotFunction(fn, describe("train", model, preprocess, name, clip, augment,
                                  *(("linear",) if linear else ()), devs=devs), devs)
    _TRAIN_CACHE[key] = (fn, model, preprocess)  # keep key objects alive
    return fn


def local_train(model, variables: dict, data, hparams: HParams, rng, *,
                anchor_params=None, indices: Optional[Sequence[int]] = None,
                preprocess: Optional[Callable] = None,
                devices: Optional[Sequence] = None, grad_offset=None,
                interrupt: Optional[Callable[[], None]] = None) -> tuple[dict, dict]:
    """Train ``variables`` for ``hparams.epochs`` local epochs on one client's data.

    data: ``(images, labels)`` arrays or an ``ImageDataset`` read at ``indices``.
    rng: int seed or PRNG key; it fixes every epoch's permutation, dropout and
        augmentation, so equal inputs give bitwise-equal results.
    anchor_params: FedProx anchor w_anchor (default: the incoming params).
    grad_offset: a tree like the params added to every step's gradient (the loss gets the
        linear term ``<grad_offset, params>``; a client algorithm's correction such as
        SCAFFOLD's ``c - c_i``); None: plain local training, compiled as without it.
    preprocess: traceable ``uint8 (B,H,W,C) -> float32`` (default ``Standardize()``);
        pass an equal/hashable object to reuse compilations.
    devices: devices to shard each batch over (default ``jax.local_devices()``).
    interrupt: called before every step; it may raise to abandon the training (a grid
        task cancelled by the coordinator stops within one step).
    ``hparams.precision`` picks the compute precision of the train step
    (``models.precision.with_precision``); the returned variables are float32.

    The optimizer state starts fresh on each call. Returns ``(variables,
    metrics)`` with metrics ``{'loss', 'accuracy'}`` (means over the real
    examples of the last epoch, train mode) and ``{'num_examples',
    'num_steps'}`` (steps over all epochs). A client without examples gets its
    variables back unchanged with loss/accuracy NaN and 0 steps.
    """
    if not isinstance(hparams, HParams):
        raise UserError(f"hparams must be an HParams, got {type(hparams).__name__}")
    devs = device_tuple(devices)
    _check_divisible(hparams.batch_size, devs)
    preprocess = DEFAULT_PREPROCESS if preprocess is None else preprocess
    images, labels = batching.as_arrays(data, indices)
    n = len(labels)
    if n == 0:
        return variables, {"loss": math.nan, "accuracy": math.nan,
                           "num_examples": 0, "num_steps": 0}
    rep, _ = shardings(devs)
    params, extra = split_collections(variables)
    params = jax.device_put(params, rep)
    extra = jax.device_put(extra, rep)
    anchor = _placed_anchor(anchor_params, params, rep)
    clip = hparams.grad_clip is not None
    opt_state = get_opt_init(hparams.optimizer, clip, devs)(params, opt_hparams(hparams))
    step = get_train_step(with_precision(model, hparams.precision), hparams.optimizer, clip,
                           hparams.augment, preprocess, devs, linear=grad_offset is not None)
    offset = () if grad_offset is None else (_placed_anchor(grad_offset, params, rep),)
    params, extra, sums, steps = _run_epochs(step, (params, extra, opt_state), anchor, hparams,
                                             images, labels, as_key(rng), offset, interrupt)
    loss_sum, correct, count = (float(v) for v in jax.device_get(sums))
    metrics = {"loss": loss_sum / count, "accuracy": correct / count,
               "num_examples": int(n), "num_steps": int(steps)}
    return {"params": params, **extra}, metrics


def _placed_anchor(anchor_params, params, rep):
    """The FedProx anchor on the devices: ``anchor_params``, or the incoming ``params``."""
    if anchor_params is None:
        return params
    if jax.tree.structure(anchor_params) != jax.tree.structure(params):
        raise UserError("anchor_params must have the same tree structure as variables['params']")
    return jax.device_put(anchor_params, rep)


def _run_epochs(step, state: tuple, anchor, hparams: HParams, images, labels, key,
                offset: tuple = (), interrupt: Optional[Callable[[], None]] = None):
    """``hparams.epochs`` passes of ``step`` over the examples, each in the order of a
    permutation keyed by (``key``, epoch); ``state`` is ``(params, extra, opt_state)``;
    ``interrupt()`` before every step (it may raise).

    Returns ``(params, extra, sums of the last epoch, number of steps)``.
    """
    params, extra, opt_state = state
    words = key_words(key)
    mu = np.float32(hparams.prox_mu)
    n = len(labels)
    steps = 0
    sums = None
    for epoch in range(hparams.epochs):
        order = np.random.default_rng(words + [epoch]).permutation(n)
        sums = np.zeros(3, np.float32)
        for rows, mask in batching.padded_batches(order, hparams.batch_size):
            if interrupt is not None:
                interrupt()
            params, extra, opt_state, sums = step(
                params, extra, opt_state, sums, anchor, mu,
                images[rows], labels[rows], mask, key, np.int32(steps), *offset)
            steps += 1
    return params, extra, sums, steps


# ------------------------------------------------------------- evaluation

def _get_eval_step(model, preprocess, devs: tuple):
    key = (hash_key(model), hash_key(preprocess), devs)
    entry = _EVAL_CACHE.get(key)
    if entry is not None:
        return entry[0]
    rep, dat = shardings(devs)

    def step(params, extra, sums, images, labels, mask):
        logits, _ = _apply(model, params, extra, to_input(images, preprocess), False)
        batch_sums, _ = _masked_sums(logits, labels, mask)
        return sums + batch_sums

    fn = AotFunction(jax.jit(step, in_shardings=(rep, rep, rep, dat, dat, dat), out_shardings=rep),
                     describe("eval", model, preprocess, devs=devs), devs)
    _EVAL_CACHE[key] = (fn, model, preprocess)
    return fn


def eval_batches(data, indices, batch_size):
    """Yield fixed-size (images, labels, mask) batches; datasets are read batch by batch."""
    if hasattr(data, "__getitems__") and not isinstance(data, (tuple, list)):
        idx = np.arange(len(data)) if indices is None else np.asarray(indices, np.int64)
        for rows, mask in batching.padded_batches(idx, batch_size) if len(idx) else ():
            images, labels = batching.as_arrays(data, rows)
            yield images, labels, mask
        return
    images, labels = batching.as_arrays(data, indices)
    if len(labels):
        for rows, mask in batching.padded_batches(np.arange(len(labels)), batch_size):
            yield images[rows], labels[rows], mask


def evaluate(model, variables: dict, data, batch_size: int, *,
             indices: Optional[Sequence[int]] = None,
             preprocess: Optional[Callable] = None,
             devices: Optional[Sequence] = None,
             interrupt: Optional[Callable[[], None]] = None) -> dict:
    """Mean loss and accuracy of ``variables`` on ``data`` (inference mode).

    data/indices/preprocess/devices as in ``local_train``; batches of
    ``batch_size`` rows are padded and masked. Returns ``{'loss', 'accuracy'}``
    as floats (NaN for no data) and ``num_examples`` as int. ``interrupt()`` is
    called before every batch (it may raise); with it, at most one batch runs ahead
    of the check (without it, batches are dispatched as fast as JAX queues them).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise UserError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    batch_size = int(batch_size)
    devs = device_tuple(devices)
    _check_divisible(batch_size, devs)
    preprocess = DEFAULT_PREPROCESS if preprocess is None else preprocess
    rep, _ = shardings(devs)
    params, extra = split_collections(variables)
    params, extra = jax.device_put(params, rep), jax.device_put(extra, rep)
    step = _get_eval_step(model, preprocess, devs)
    sums = np.zeros(3, np.float32)
    for images, labels, mask in eval_batches(data, indices, batch_size):
        if interrupt is not None:
            interrupt()
        before, sums = sums, step(params, extra, sums, images, labels, mask)
        if interrupt is not None and hasattr(before, "block_until_ready"):
            before.block_until_ready()  # the batch before this one: checks keep pace
    loss_sum, correct, count = (float(v) for v in jax.device_get(sums))
    if count == 0:
        return {"loss": math.nan, "accuracy": math.nan, "num_examples": 0}
    return {"loss": loss_sum / count, "accuracy": correct / count, "num_examples": int(count)}
