"""Jitted JAX preprocessing, the same for every source (NHWC).

* ``normalize(images, mean, std)``: uint8 (N, H, W, C) -> float32
  ``(images / 255 - mean) / std``; mean, std: (C,) in [0, 1] pixel units
  (as returned by ``channel_stats``).
* ``augment(rng, images, pad=4, flip=True)``: per example (vmapped) random
  crop of the zero-padded image back to (H, W) and a horizontal flip with
  probability 1/2. Works on uint8 or float images; apply it after
  ``normalize`` so padding is the mean colour.
* ``channel_stats(ds)``: per-channel mean and std of an ImageDataset in
  [0, 1] units (numpy, streamed in batches).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


@jax.jit
def normalize(images, mean, std):
    """uint8 (N, H, W, C) -> float32 (N, H, W, C): ``(x / 255 - mean) / std``."""
    x = jnp.asarray(images).astype(jnp.float32) * (1.0 / 255.0)
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    return (x - mean) / std


def _augment_one(key, image, pad: int, flip: bool):
    h, w, _ = image.shape
    k_crop, k_flip = jax.random.split(key)
    if pad > 0:
        padded = jnp.pad(image, ((pad, pad), (pad, pad), (0, 0)))
        dy, dx = jax.random.randint(k_crop, (2,), 0, 2 * pad + 1)
        image = jax.lax.dynamic_slice(padded, (dy, dx, 0), (h, w, image.shape[2]))
    if flip:
        image = jnp.where(jax.random.bernoulli(k_flip), image[:, ::-1, :], image)
    return image


@functools.partial(jax.jit, static_argnames=("pad", "flip"))
def augment(rng, images, pad: int = 4, flip: bool = True):
    """Random crop with zero padding ``pad`` (pixels) and horizontal flips, per example.

    rng: a PRNG key; images: (N, H, W, C), any dtype. Returns the same shape
    and dtype; deterministic in ``rng``.
    """
    keys = jax.random.split(rng, images.shape[0])
    return jax.vmap(lambda k, im: _augment_one(k, im, pad, flip))(keys, images)


def channel_stats(ds, *, batch_size: int = 1024, max_examples: int | None = None):
    """Per-channel (mean, std), float32 (C,) each, in [0, 1] units over ``ds`` images.

    Reads the first ``max_examples`` examples (all by default) in batches.
    """
    n = len(ds) if max_examples is None else min(len(ds), int(max_examples))
    if n == 0:
        raise ValueError("channel_stats of an empty data set")
    s = s2 = None
    count = 0
    for start in range(0, n, batch_size):
        x = np.asarray(ds.__getitems__(np.arange(start, min(start + batch_size, n)))["image"],
                       dtype=np.float64) / 255.0
        x = x.reshape(-1, x.shape[-1])
        s = x.sum(0) if s is None else s + x.sum(0)
        s2 = (x * x).sum(0) if s2 is None else s2 + (x * x).sum(0)
        count += len(x)
    mean = s / count
    std = np.sqrt(np.maximum(s2 / count - mean * mean, 0.0))
    return mean.astype(np.float32), std.astype(np.float32)
