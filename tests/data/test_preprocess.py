"""Jitted preprocessing: shapes, dtypes, determinism, and that crops keep content."""
import jax
import numpy as np
import pytest

from fedjax_grid.data import ArrayDataset, DatasetInfo
from fedjax_grid.data import preprocess


def _images(n=6, h=8, w=8, c=3, seed=0):
    return np.random.default_rng(seed).integers(1, 256, (n, h, w, c), dtype=np.uint8)


def test_normalize_values_and_shape():
    x = _images()
    mean, std = np.array([0.5, 0.4, 0.3], np.float32), np.array([0.2, 0.25, 0.5], np.float32)
    y = preprocess.normalize(x, mean, std)
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_allclose(np.asarray(y), (x / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)


def test_augment_shape_dtype_determinism_and_variety():
    x = _images(n=32)
    k = jax.random.key(3)
    a, b = preprocess.augment(k, x), preprocess.augment(k, x)
    assert a.shape == x.shape and a.dtype == x.dtype
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    c = preprocess.augment(jax.random.key(4), x)
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    np.testing.assert_array_equal(np.asarray(preprocess.augment(k, x, pad=0, flip=False)), x)


def _window_matches(out, img, pad):
    """All (dy, dx, flipped) such that out is that crop of the zero-padded img."""
    h, w, _ = img.shape
    padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)))
    hits = []
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            win = padded[dy:dy + h, dx:dx + w]
            for flipped, cand in ((False, win), (True, win[:, ::-1])):
                if np.array_equal(cand, out):
                    hits.append((dy, dx, flipped))
    return hits


@pytest.mark.parametrize("flip", [False, True])
def test_crop_keeps_content(flip):
    x = _images(n=16, h=10, w=9)  # pixels are >= 1, so padding (0) is recognisable
    out = np.asarray(preprocess.augment(jax.random.key(0), x, pad=3, flip=flip))
    offsets, flips = set(), set()
    for o, img in zip(out, x):
        hits = _window_matches(o, img, 3)
        assert hits, "output is not a (flipped) crop of the zero-padded input"
        offsets.add(hits[0][:2])
        flips.add(hits[0][2])
        assert (o > 0).sum() >= (10 - 3) * (9 - 3) * 3  # most content is kept
    assert len(offsets) > 3  # offsets differ per example
    assert flips == ({False, True} if flip else {False})


def test_channel_stats_matches_numpy():
    x = _images(n=50, seed=1)
    ds = ArrayDataset(x, np.zeros(50), DatasetInfo("t", 1, ("a",), (8, 8, 3), {"train": 50}))
    mean, std = preprocess.channel_stats(ds, batch_size=16)
    ref = x.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(mean, ref.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, ref.std(0), rtol=1e-4)
    y = np.asarray(preprocess.normalize(x, mean, std)).reshape(-1, 3)
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(y.std(0), 1, atol=1e-3)
