"""Traceable image transforms used inside the compiled train step.

``Standardize`` maps uint8 images to float32; ``random_crop_flip`` is the
training augmentation. Both are pure jnp functions of fixed-shape batches.
``Standardize`` is a frozen dataclass, so equal instances hash equal and hit
the same compiled step.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Standardize:
    """``(images / 255 - mean) / std`` per channel: uint8 (N,H,W,C) -> float32.

    mean, std: tuples of length 1 (all channels) or C, in [0, 1] units.
    The default maps [0, 255] to [-2, 2].
    """
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)

    def __call__(self, images):
        x = images.astype(jnp.float32) / 255.0
        mean = jnp.asarray(self.mean, jnp.float32)
        std = jnp.asarray(self.std, jnp.float32)
        return (x - mean) / std


def random_crop_flip(rng, images, pad: int | None = None):
    """Random crop after zero padding by ``pad`` pixels, then a random horizontal flip.

    images: float32 (N, H, W, C); pad defaults to max(1, H // 8). Returns the same shape.
    """
    n, h, w, c = images.shape
    pad = max(1, h // 8) if pad is None else pad
    k_crop, k_flip = jax.random.split(rng)
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = jax.random.randint(k_crop, (n, 2), 0, 2 * pad + 1)

    def crop(img, off):
        return jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, c))

    out = jax.vmap(crop)(padded, offsets)
    flip = jax.random.bernoulli(k_flip, 0.5, (n, 1, 1, 1))
    return jnp.where(flip, out[:, :, ::-1, :], out)
