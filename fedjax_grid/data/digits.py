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


#: The test split's members as a bit mask (``np.packbits``, 1797 bits, hex): scikit-learn's
#: ``train_test_split(np.arange(1797), test_size=0.2, stratify=target, random_state=0)``,
#: stored so that loading the digits needs no scikit-learn import (~165 MiB and 2-8 s here,
#: most of a run's "data" stage; tests/data/test_digits.py checks it against scikit-learn).
TEST_MASK_HEX = (
    "000004883524104000064100934205001a00080100240028062c12001000940a009019120420f8a0028110a000"
    "080a8820441524494240a00a0000004004d80000818020004805c400104008a0100005404800301000020ec409"
    "000224840083a8013c20a6980a0000000b08400804a0184802024041c1008004404684376a8102160044800040"
    "42a0a4180a5000840b8561c608108008004c80c02004068e00010882008100380803c008190000100e01008410"
    "a0210033282904c044c080680e0102830082008822a6402c24042108a860809081a00c02820242120138a41500")
NUM_IMAGES = 1797


def digits_file() -> pathlib.Path:
    """scikit-learn's ``datasets/data/digits.csv.gz``, found without importing scikit-learn."""
    import importlib.util
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.origin:
        raise UserError("the digits need scikit-learn installed (its bundled digits.csv.gz); "
                        "allowed: `pip install scikit-learn`")
    return pathlib.Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"


@functools.lru_cache(maxsize=1)
def raw_digits() -> tuple[np.ndarray, np.ndarray]:
    """``(images float64 (1797, 8, 8) in 0..16, target int (1797,))`` as ``load_digits``
    returns them: the same file read the same way (``np.loadtxt``, ``delimiter=','``)."""
    import gzip
    path = digits_file()
    if not path.is_file():  # another scikit-learn layout: ask it (slower import)
        from sklearn.datasets import load_digits
        bunch = load_digits()
        return bunch.images, bunch.target
    with gzip.open(path, mode="rt", encoding="utf-8") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int, copy=False)


@functools.lru_cache(maxsize=8)
def _arrays(image_size: int, channels: int, interpolation: str):
    images8, target = raw_digits()
    raw = np.rint(images8 * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)  # (1797, 8, 8)
    images = upsample(raw, image_size, interpolation)[..., None]
    if channels == 3:
        images = np.repeat(images, 3, axis=-1)
    images.setflags(write=False)
    return images, target.astype(np.int32)


@functools.lru_cache(maxsize=1)
def split_indices() -> dict[str, np.ndarray]:
    """{'train': int64 indices, 'test': ...}: stratified 80/20, seed 0, sorted
    (``TEST_MASK_HEX``)."""
    mask = np.unpackbits(np.frombuffer(bytes.fromhex(TEST_MASK_HEX), np.uint8))[:NUM_IMAGES]
    idx = np.arange(NUM_IMAGES, dtype=np.int64)
    return {"train": idx[mask == 0], "test": idx[mask == 1]}


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
