"""Host-side batching with fixed shapes: permutations, padding rows and masks.

Every batch has exactly ``batch_size`` rows so the compiled step never sees a
new shape. A short last batch is filled by repeating real rows of the same
epoch (so BatchNorm statistics stay those of real images) and its ``mask``
marks them 0; losses, gradients and metrics weight rows by the mask.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from fedjax_grid.errors import UserError


def num_batches(n: int, batch_size: int) -> int:
    """ceil(n / batch_size): steps per epoch for n examples."""
    return -(-int(n) // int(batch_size))


def padded_batches(order: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(rows int64 (B,), mask float32 (B,))`` covering ``order`` in chunks of B.

    The last chunk is padded with rows taken cyclically from the start of
    ``order`` and mask 0. ``order`` must be non-empty.
    """
    order = np.asarray(order, dtype=np.int64)
    n = len(order)
    for start in range(0, n, batch_size):
        rows = order[start:start + batch_size]
        mask = np.ones(batch_size, np.float32)
        if len(rows) < batch_size:
            real = len(rows)
            fill = order[np.arange(batch_size - real) % n]
            rows = np.concatenate([rows, fill])
            mask[real:] = 0.0
        yield rows, mask


def as_arrays(data, indices: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, H, W, C) uint8|float32, labels int32 (N,))`` from either data form.

    ``data`` is an ``(images, labels)`` pair of arrays, or an ``ImageDataset``
    (anything with ``__getitems__``) read at ``indices`` (default: all).
    ``indices`` also selects rows of an array pair.
    """
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise UserError(f"data must be an (images, labels) pair or an ImageDataset, got a "
                            f"{type(data).__name__} of length {len(data)}")
        images, labels = np.asarray(data[0]), np.asarray(data[1])
        if indices is not None:
            idx = np.asarray(indices, dtype=np.int64)
            images, labels = images[idx], labels[idx]
    elif hasattr(data, "__getitems__"):
        idx = np.arange(len(data)) if indices is None else np.asarray(indices, dtype=np.int64)
        if len(idx) == 0:
            shape = tuple(getattr(getattr(data, "info", None), "image_shape", (0, 0, 0)))
            return np.zeros((0,) + shape, np.uint8), np.zeros((0,), np.int32)
        batch = data.__getitems__(idx)
        images, labels = np.asarray(batch["image"]), np.asarray(batch["label"])
    else:
        raise UserError(f"data must be an (images, labels) pair or an ImageDataset, "
                        f"got {type(data).__name__}")
    if images.ndim != 4:
        raise UserError(f"images must have shape (N, H, W, C), got {images.shape}")
    if labels.shape != (len(images),):
        raise UserError(f"labels must have shape ({len(images)},), got {labels.shape}")
    if images.dtype != np.uint8:
        images = images.astype(np.float32, copy=False)
    return images, labels.astype(np.int32, copy=False)
