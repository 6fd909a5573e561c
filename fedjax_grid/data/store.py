"""tensorflow-datasets as the storage layer, without TensorFlow.

A source is *prepared* once into ``<data_dir>/<name>[/<config>]/<version>/`` as
tfds ``array_record`` shards (written by a ``GeneratorBasedBuilder`` with
``disable_shuffling=True``, so record ``i`` is example ``i`` in the official
order), and read back through ``tfds.builder_from_directory(...)
.as_data_source(split)``: random access, no TensorFlow.

Features: ``image`` is ``tfds.features.Tensor(shape=(H, W, C), dtype=uint8)``
(``image_format='raw'``, the default: fastest reads) or
``tfds.features.Image(shape=(H, W, C))`` fed PIL images (``image_format='png'``:
smaller on disk, PNG decoded by PIL on every read); ``label`` is a
``ClassLabel``. Neither needs TensorFlow to encode or decode.

Next to the shards the store writes ``labels-<split>.npy`` (int32, so
``ds.labels`` never decodes images) and, last, the completion marker
``fedjax_grid_source.json`` (class names, image shape, split sizes, the
fingerprint of the source files). tfds itself writes into an ``incomplete.*``
folder and renames it when done; a version folder without the marker is
treated as half-written and rebuilt, so a half-written copy is never read.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from fedjax_grid.atomic_write import write_atomic
from fedjax_grid.data.base import DatasetInfo
from fedjax_grid.errors import DataError, UserError

STORE_VERSION = "1.0.0"
MARKER = "fedjax_grid_source.json"
IMAGE_FORMATS = ("raw", "png")


def _tfds():
    import tensorflow_datasets as tfds  # heavy-ish import, only when storing/reading
    return tfds


def tensorflow_available() -> bool:
    """True when TensorFlow can be imported (needed only for tfds catalogue names)."""
    import importlib.util
    return importlib.util.find_spec("tensorflow") is not None


@dataclasses.dataclass(frozen=True)
class SplitData:
    """One split to store.

    labels: int (N,), in example order.
    images: zero-argument callable returning an iterable of N uint8 (H, W, C)
      arrays in the same order (called once, while writing; may decode lazily).
    """
    labels: np.ndarray
    images: Callable[[], Iterable[np.ndarray]]


@dataclasses.dataclass(frozen=True)
class SourceData:
    """Everything ``write_prepared`` stores for one source.

    splits: split name -> ``SplitData``; class_names: display names, index =
    label; image_shape: (H, W, C); label_names: unique names for the tfds
    ClassLabel (default class_names).
    """
    splits: Mapping[str, SplitData]
    class_names: Sequence[str]
    image_shape: Sequence[int]
    label_names: Sequence[str] | None = None


def _builder_class():
    tfds = _tfds()

    class ArrayRecordBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """Writes given splits of (image, label) examples; one instance per prepare."""

        def __init__(self, *, name: str, features, splits: Mapping[str, SplitData],
                     config: str | None, data_dir: os.PathLike):
            self.name = name
            self.VERSION = tfds.core.Version(STORE_VERSION)  # pylint: disable=invalid-name
            if config:
                config = tfds.core.BuilderConfig(name=config, version=STORE_VERSION)
                self.BUILDER_CONFIGS = [config]  # pylint: disable=invalid-name
            self._features = features
            self._splits = splits
            super().__init__(data_dir=os.fspath(data_dir), config=config,
                             version=STORE_VERSION, file_format="array_record")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=self._features,
                                         supervised_keys=("image", "label"),
                                         disable_shuffling=True)

        def _split_generators(self, dl_manager):
            del dl_manager
            return {split: self._generate_examples(split) for split in self._splits}

        def _generate_examples(self, split):
            data = self._splits[split]
            n = len(data.labels)
            count = 0
            for count, (image, label) in enumerate(zip(data.images(), data.labels), start=1):
                yield count - 1, {"image": image, "label": int(label)}
            if count != n:
                raise DataError(f"split '{split}' of {self.name}: {count} images for {n} labels")

    return ArrayRecordBuilder


def version_dir(name: str, data_dir: os.PathLike, config: str | None = None) -> pathlib.Path:
    """``<data_dir>/<name>[/<config>]/<version>``: where a prepared copy lives."""
    d = pathlib.Path(data_dir) / name
    if config:
        d = d / config
    return d / STORE_VERSION


def read_marker(vdir: os.PathLike) -> dict | None:
    """The completion marker of a prepared copy, or None when absent/unreadable."""
    try:
        return json.loads((pathlib.Path(vdir) / MARKER).read_text())
    except (OSError, ValueError):
        return None


def find_prepared(name: str, data_dir: os.PathLike, config: str | None = None,
                  fingerprint: Mapping | None = None) -> pathlib.Path | None:
    """The complete prepared copy (matching ``fingerprint`` when given), or None."""
    vdir = version_dir(name, data_dir, config)
    marker = read_marker(vdir)
    if marker is None:
        return None
    if fingerprint is not None and marker.get("fingerprint") != _jsonable(fingerprint):
        return None
    return vdir


def _jsonable(obj):
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


@contextlib.contextmanager
def _lock(path: pathlib.Path):
    """Exclusive advisory file lock (no-op where fcntl is unavailable, e.g. Windows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _quiet(tfds, progress: bool):
    """Silence tfds progress bars, banners (stdout) and info/warning logs unless ``progress``."""
    if progress:
        yield
        return
    import io
    import logging
    previous = tfds.core.utils.tqdm_utils._active  # pylint: disable=protected-access
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    tfds.display_progress_bar(False)
    absl_logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        absl_logger.setLevel(level)
        tfds.display_progress_bar(previous)


def _features(image_shape, label_names, image_format):
    tfds = _tfds()
    if image_format == "raw":
        image = tfds.features.Tensor(shape=tuple(image_shape), dtype=np.uint8, encoding="bytes")
    elif image_format == "png":
        image = tfds.features.Image(shape=tuple(image_shape), encoding_format="png")
    else:
        raise UserError(f"image_format={image_format!r} is not one of {', '.join(IMAGE_FORMATS)}")
    if len(set(label_names)) == len(label_names):
        label = tfds.features.ClassLabel(names=list(label_names))
    else:
        label = tfds.features.ClassLabel(num_classes=len(label_names))
    return tfds.features.FeaturesDict({"image": image, "label": label})


def _as_png_images(images: Callable[[], Iterable[np.ndarray]]):
    from PIL import Image

    def gen():
        for img in images():
            img = np.asarray(img)
            yield Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
    return gen


def write_prepared(name: str, *, data_dir: os.PathLike, make: Callable[[], SourceData],
                   fingerprint: Mapping | None = None, config: str | None = None,
                   image_format: str = "raw", force: bool = False,
                   progress: bool = False) -> pathlib.Path:
    """Prepare a source once; return its version folder.

    Idempotent: a complete copy whose marker holds the same ``fingerprint``
    (a JSON-able dict naming the source files and options) is returned as is;
    a copy with another fingerprint, or without marker (half-written), is
    removed and rebuilt. ``make`` (reads the source) is only called when writing.
    """
    if image_format not in IMAGE_FORMATS:
        raise UserError(f"image_format={image_format!r} is not one of {', '.join(IMAGE_FORMATS)}")
    data_dir = pathlib.Path(data_dir)
    vdir = version_dir(name, data_dir, config)
    fingerprint = _jsonable(dict(fingerprint or {}, image_format=image_format))
    with _lock(data_dir / f".{name}{'-' + config if config else ''}.lock"):
        if not force and find_prepared(name, data_dir, config, fingerprint) is not None:
            return vdir
        if vdir.exists():
            shutil.rmtree(vdir)
        source = make()
        splits, class_names, image_shape = dict(source.splits), source.class_names, source.image_shape
        for split, data in splits.items():
            labels = np.asarray(data.labels)
            if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
                raise DataError(f"{name} split '{split}': labels span {labels.min()}..{labels.max()}, "
                                f"expected 0..{len(class_names) - 1}")
        written = splits
        if image_format == "png":
            written = {s: SplitData(d.labels, _as_png_images(d.images)) for s, d in splits.items()}
        tfds = _tfds()
        builder = _builder_class()(
            name=name, features=_features(image_shape, source.label_names or class_names, image_format),
            splits=written, config=config, data_dir=data_dir)
        try:
            with _quiet(tfds, progress):
                builder.download_and_prepare(download_dir=data_dir / "downloads")
        except ValueError as e:  # e.g. an image of the wrong shape
            raise DataError(f"{name}: cannot store an example ({' '.join(str(e).split())[:300]})") from None
        if pathlib.Path(builder.data_dir) != vdir:  # pragma: no cover - guards a tfds layout change
            raise RuntimeError(f"tfds wrote to {builder.data_dir}, expected {vdir}")
        for split, data in splits.items():
            np.save(vdir / f"labels-{split}.npy", np.asarray(data.labels, dtype=np.int32))
        marker = {
            "name": name, "config": config, "class_names": list(class_names),
            "image_shape": [int(x) for x in image_shape],
            "split_sizes": {s: int(len(d.labels)) for s, d in splits.items()},
            "fingerprint": fingerprint, "image_format": image_format,
        }
        write_atomic(vdir / MARKER, json.dumps(marker, indent=1))
    return vdir


class TfdsDataset:
    """``ImageDataset`` over one split of a tfds data source (array_record).

    ``ds[i] -> {'image': uint8 (H, W, C), 'label': int}``;
    ``ds.__getitems__(idx) -> {'image': uint8 (n, H, W, C), 'label': int32 (n,)}``;
    ``ds.labels``: int32 (N,), loaded once and cached. Pickles by reopening
    the source (for Dask workers).
    """

    def __init__(self, open_source: Callable[[], Any], info: DatasetInfo,
                 load_labels: Callable[[Any], np.ndarray], *, image_key: str = "image",
                 label_key: str = "label"):
        self._open_source = open_source
        self._load_labels = load_labels
        self.info = info
        self._image_key = image_key
        self._label_key = label_key
        self._source = None
        self._labels = None

    @property
    def source(self):
        """The underlying tfds data source (opened on first use)."""
        if self._source is None:
            self._source = self._read(self._open_source)
        return self._source

    def _read(self, fn, *args):
        """``fn(*args)``; a damaged file (truncated, garbage) becomes one-line ``DataError``."""
        try:
            return fn(*args)
        except (RuntimeError, OSError, ValueError, KeyError, EOFError) as e:
            where = getattr(self._open_source, "vdir", None) or self.info.name
            first = str(e).splitlines()[0][:200] if str(e) else ""
            raise DataError(f"prepared data {str(where)!r} cannot be read ({type(e).__name__}: "
                            f"{first}); allowed: a complete prepared copy -- delete that folder "
                            "and prepare the source again (`fedjax-grid prepare`)") from None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_source"] = None
        return state

    def __len__(self) -> int:
        return self._read(len, self.source)

    def _image(self, rec) -> np.ndarray:
        img = np.asarray(rec[self._image_key], dtype=np.uint8)
        return img.reshape(self.info.image_shape)

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} examples")
        rec = self._read(self.source.__getitem__, index % n)
        return {"image": self._image(rec), "label": int(rec[self._label_key])}

    def __getitems__(self, indices: Sequence[int]) -> dict:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"indices out of range for {n} examples")
        idx = idx % max(n, 1)
        if idx.size == 0:
            return {"image": np.zeros((0, *self.info.image_shape), np.uint8),
                    "label": np.zeros((0,), np.int32)}
        recs = self._read(self.source.__getitems__, idx.tolist())
        images = np.stack([self._image(r) for r in recs])
        labels = np.fromiter((r[self._label_key] for r in recs), dtype=np.int32, count=len(recs))
        return {"image": images, "label": labels}

    @property
    def labels(self) -> np.ndarray:
        if self._labels is None:
            labels = np.asarray(self._read(self._load_labels, self.source), dtype=np.int32)
            labels.setflags(write=False)
            self._labels = labels
        return self._labels

    def __repr__(self) -> str:
        return (f"TfdsDataset({self.info.name!r}, n={len(self)}, "
                f"image_shape={self.info.image_shape}, classes={self.info.num_classes})")


class _OpenPrepared:
    """Picklable opener of one split of a prepared folder."""

    def __init__(self, vdir: pathlib.Path, split: str):
        self.vdir, self.split = pathlib.Path(vdir), split

    def __call__(self):
        return _tfds().builder_from_directory(os.fspath(self.vdir)).as_data_source(self.split)


class _PreparedLabels:
    def __init__(self, vdir: pathlib.Path, split: str):
        self.path = pathlib.Path(vdir) / f"labels-{split}.npy"

    def __call__(self, source):
        return np.load(self.path)


def open_prepared(vdir: os.PathLike, split: str, name: str | None = None) -> TfdsDataset:
    """Open ``split`` of a complete prepared copy as an ``ImageDataset``."""
    vdir = pathlib.Path(vdir)
    marker = read_marker(vdir)
    if marker is None:
        raise DataError(f"{vdir}: not a complete prepared copy (no {MARKER}); prepare the source again")
    sizes = marker["split_sizes"]
    if split not in sizes:
        raise UserError(f"split={split!r} is not one of {', '.join(sorted(sizes))}")
    info = DatasetInfo(name=name or marker["name"], num_classes=len(marker["class_names"]),
                       class_names=tuple(marker["class_names"]),
                       image_shape=tuple(marker["image_shape"]),
                       split_sizes={k: int(v) for k, v in sizes.items()})
    return TfdsDataset(_OpenPrepared(vdir, split), info, _PreparedLabels(vdir, split))


def _catalog_labels(label_key):
    def load(source):
        out = np.empty(len(source), np.int64)
        step = 1024
        for start in range(0, len(source), step):
            recs = source.__getitems__(list(range(start, min(start + step, len(source)))))
            out[start:start + len(recs)] = [r[label_key] for r in recs]
        return out
    return load


class _OpenCatalog:
    def __init__(self, name, split, data_dir, download):
        self.name, self.split, self.data_dir, self.download = name, split, data_dir, download

    def __call__(self):
        return _tfds().data_source(self.name, split=self.split, data_dir=self.data_dir,
                                   download=self.download)


def open_catalog(name: str, split: str, *, data_dir: os.PathLike | None = None,
                 download: bool = True, image_key: str = "image",
                 label_key: str = "label") -> TfdsDataset:
    """A tfds catalogue data set (e.g. ``'cifar10'``) through ``tfds.data_source``.

    Needs TensorFlow (tfds catalogue builders prepare with it); raises
    ``UserError`` when it is absent. Labels are read once by decoding records.
    """
    if not tensorflow_available():
        raise UserError(f"tfds catalogue data set {name!r} needs TensorFlow, which is not installed; "
                        f"use the fedjax_grid source with path= to the official archive instead")
    tfds = _tfds()
    split_tfds = {"test": "test", "train": "train"}.get(split, split)
    opener = _OpenCatalog(name, split_tfds, None if data_dir is None else os.fspath(data_dir), download)
    builder = tfds.builder(name, data_dir=opener.data_dir)
    if download:
        builder.download_and_prepare(file_format="array_record")
    feats = builder.info.features
    label = feats[label_key]
    shape = tuple(int(x) for x in feats[image_key].shape)
    info = DatasetInfo(name=name, num_classes=label.num_classes, class_names=tuple(label.names),
                       image_shape=shape,
                       split_sizes={k: int(v.num_examples) for k, v in builder.info.splits.items()})
    return TfdsDataset(opener, info, _catalog_labels(label_key), image_key=image_key, label_key=label_key)
