"""scikit-learn's bundled 8x8 handwritten digits: the offline default source.

1797 images, values 0..16 scaled to uint8 0..255 (``round(v * 255 / 16)``),
upsampled to ``image_size`` x ``image_size`` (``'bilinear'`` or ``'nearest'``)
with ``channels`` = 3 (gray copied to RGB, so VGG/MobileNet work unchanged)
or 1. Split: stratified 80/20 with a fixed seed (1437 train / 360 test), each
split in ascending original index order. In memory by default
(``ArrayDataset``); ``storage='array_record'`` prepares and reads a tfds copy.
"""
from __future__ import annotations

import functools
import pathlib

import numpy as np

from fedjax_grid.data import store
from fedjax_grid.data.base import ArrayDataset, DatasetInfo
from fedjax_grid.data.paths import resolve_data_dir
from fedjax_grid.errors import UserError

NAME = "digits"
CLASS_NAMES = tuple(str(d) for d in range(10))
INTERPOLATIONS = ("bilinear", "nearest")
STORAGES = ("memory", "array_record")
TEST_FRACTION = 0.2
SPLIT_SEED = 0


def _check(image_size, channels, interpolation):
    if not isinstance(image_size, (int, np.integer)) or not 8 <= image_size <= 512:
        raise UserError(f"image_size={image_size!r} must be an integer in 8..512")
    if channels not in (1, 3):
        raise UserError(f"channels={channels!r} must be 1 or 3")
    if interpolation not in INTERPOLATIONS:
        raise UserError(f"interpolation={interpolation!r} is not one of {', '.join(INTERPOLATIONS)}")


def upsample(images8: np.ndarray, size: int, interpolation: str) -> np.ndarray:
    """uint8 (N, h, w) -> uint8 (N, size, size) with PIL nearest/bilinear resampling."""
    from PIL import Image
    resample = Image.Resampling.BILINEAR if interpolation == "bilinear" else Image.Resampling.NEAREST
    if images8.shape[1] == size:
        return images8.copy()
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), resample)) for im in images8])


@functools.lru_cache(maxsize=8)
def _arrays(image_size: int, channels: int, interpolation: str):
    from sklearn.datasets import load_digits
    bunch = load_digits()
    raw = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)  # (1797, 8, 8)
    images = upsample(raw, image_size, interpolation)[..., None]
    if channels == 3:
        images = np.repeat(images, 3, axis=-1)
    images.setflags(write=False)
    return images, bunch.target.astype(np.int32)


@functools.lru_cache(maxsize=1)
def split_indices() -> dict[str, np.ndarray]:
    """{'train': int64 indices, 'test': ...}: stratified 80/20, seed 0, sorted."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    labels = load_digits().target
    train, test = train_test_split(np.arange(len(labels)), test_size=TEST_FRACTION,
                                   stratify=labels, random_state=SPLIT_SEED)
    return {"train": np.sort(train), "test": np.sort(test)}


def _info(image_size, channels):
    sizes = {k: int(len(v)) for k, v in split_indices().items()}
    return DatasetInfo(name=NAME, num_classes=10, class_names=CLASS_NAMES,
                       image_shape=(image_size, image_size, channels), split_sizes=sizes)


def _check_split(split):
    if split not in ("train", "test"):
        raise UserError(f"split={split!r} is not one of train, test")


def prepare(*, path=None, data_dir=None, image_size: int = 32, channels: int = 3,
            interpolation: str = "bilinear", image_format: str = "raw",
            force: bool = False) -> pathlib.Path:
    """Write the digits to ``<data_dir>/digits/s<size>_c<channels>_<interp>/<version>``."""
    del path  # bundled with scikit-learn
    _check(image_size, channels, interpolation)

    def make():
        images, labels = _arrays(image_size, channels, interpolation)
        splits = {s: store.SplitData(labels[idx], (lambda idx=idx: iter(images[idx])))
                  for s, idx in split_indices().items()}
        return store.SourceData(splits=splits, class_names=CLASS_NAMES,
                                image_shape=(image_size, image_size, channels))

    return store.write_prepared(
        NAME, data_dir=resolve_data_dir(data_dir), make=make, image_format=image_format, force=force,
        config=f"s{image_size}_c{channels}_{interpolation}",
        fingerprint={"source": "sklearn.datasets.load_digits", "split_seed": SPLIT_SEED})


def load(split: str, *, path=None, data_dir=None, image_size: int = 32, channels: int = 3,
         interpolation: str = "bilinear", storage: str = "memory", **opts):
    """``load_source`` entry: the digits ``split`` as an ImageDataset.

    storage: 'memory' (ArrayDataset, default) or 'array_record' (prepared tfds copy).
    """
    _check_split(split)
    _check(image_size, channels, interpolation)
    if storage == "array_record":
        vdir = prepare(data_dir=data_dir, image_size=image_size, channels=channels,
                       interpolation=interpolation, **opts)
        return store.open_prepared(vdir, split, name=NAME)
    if storage != "memory":
        raise UserError(f"storage={storage!r} is not one of {', '.join(STORAGES)}")
    if opts:
        raise UserError(f"unknown digits option(s) {', '.join(sorted(opts))}; allowed: image_size, "
                        f"channels, interpolation, storage")
    images, labels = _arrays(image_size, channels, interpolation)
    idx = split_indices()[split]
    return ArrayDataset(images[idx], labels[idx], _info(image_size, channels))


# ---------------------------------------------------------------- registration

from typing import Literal  # noqa: E402

from pydantic import Field  # noqa: E402

from fedjax_grid.data.registry import SOURCES, Source  # noqa: E402
from fedjax_grid.registry import Params  # noqa: E402


class DigitsOptions(Params):
    """Options of ``digits`` (the side length is ``data.image_size``)."""
    channels: Literal[1, 3] = Field(3, description="grey (1) or repeated to RGB (3)")
    interpolation: Literal["bilinear", "nearest"] = Field("bilinear", description="upsampling filter")
    storage: Literal["memory", "array_record"] = Field(
        "memory", description="arrays in memory, or the prepared tfds array_record copy")
    image_format: Literal["raw", "png"] = Field("raw", description="array_record copy: raw pixels or PNG")


SOURCES.register("digits", DigitsOptions,
                 doc="scikit-learn's 8x8 handwritten digits (bundled), upsampled; 10 classes"
                 )(Source(load, prepare))
