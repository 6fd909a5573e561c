"""``textures`` source: a folder (or .zip) of large images, one sub-folder per class.

The layout is that of the Describable Textures Dataset (``dtd/images/<class>/*.jpg``)
but any ``<root>/.../<class>/<image>`` tree works: the class of an image is the
name of the folder that holds it. Images are listed in (class, file name) order;
class ids follow the sorted class names. Nothing is decoded until asked for.

* :class:`TextureFolder` - the listed images of a folder or zip: ``read(i)`` decodes
  image ``i`` to uint8 (H, W, 3) RGB, ``sizes()`` reads (H, W) of all images from
  their headers only. Picklable (the open zip handle is dropped and reopened), so
  a data set can be shipped to Dask workers.
* :func:`split_images` - the seeded train/test split of image ids per class, shared
  with the fragment pipeline (``data.fragments``) so that a photo and all its
  fragments sit on one side only.
* :class:`TexturesDataset` / :func:`load` - the plain source: whole images, center
  cropped to a square and resized to ``image_size`` (an ``ImageDataset``), read
  from the folder/zip, or (``storage='array_record'``) from the tfds copy that
  :func:`prepare` writes once into ``data_dir``.
"""
from __future__ import annotations

import io
import os
import pathlib
import threading
import zipfile
from typing import Sequence

import numpy as np
from PIL import Image

from fedjax_grid.data.base import DatasetInfo
from fedjax_grid.errors import DataError, UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
SPLITS = ("train", "test", "all")


def _is_image_member(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    if len(parts) < 2 or any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return False
    return parts[-1].lower().endswith(IMAGE_EXTENSIONS)


class TextureFolder:
    """Images of a class-per-folder tree, given as a directory or a .zip archive.

    files: member names (relative paths) in (class, file name) order.
    class_names: sorted class folder names. image_labels: int32 (N,) class ids.
    """

    def __init__(self, path: "str | os.PathLike"):
        self.path = pathlib.Path(path).expanduser()
        if not self.path.exists():
            raise DataError(f"textures: {self.path} does not exist; give a folder with one "
                            "sub-folder per class or a .zip of one")
        self.is_zip = self.path.is_file()
        self._zip = None
        self._lock = threading.Lock()
        if self.is_zip:
            names = [n for n in self._open_zip().namelist() if _is_image_member(n)]
        else:
            names = [p.relative_to(self.path).as_posix() for p in self.path.rglob("*")
                     if p.is_file() and _is_image_member(p.relative_to(self.path).as_posix())]
        if not names:
            raise DataError(f"textures: {self.path} holds no images in class sub-folders "
                            f"(expected <class>/<image> with extension {'/'.join(IMAGE_EXTENSIONS)})")
        keyed = sorted((n.split("/")[-2], n.split("/")[-1], n) for n in names)
        self.files: tuple[str, ...] = tuple(k[2] for k in keyed)
        self.class_names: tuple[str, ...] = tuple(sorted({k[0] for k in keyed}))
        ids = {c: i for i, c in enumerate(self.class_names)}
        self.image_labels = np.array([ids[k[0]] for k in keyed], dtype=np.int32)
        self._sizes: np.ndarray | None = None

    # -- pickling: drop the open zip handle and the lock ------------------------
    def __getstate__(self):
        state = dict(self.__dict__)
        state["_zip"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.files)

    def _open_zip(self) -> zipfile.ZipFile:
        if self._zip is None:
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError) as e:
                raise DataError(f"textures: {self.path} is not a readable zip archive ({e})") from None
        return self._zip

    def _bytes(self, i: int) -> bytes:
        name = self.files[i]
        try:
            if self.is_zip:
                with self._lock:
                    return self._open_zip().read(name)
            return (self.path / name).read_bytes()
        except (zipfile.BadZipFile, OSError, EOFError, KeyError) as e:
            raise DataError(f"textures: cannot read {self.where(i)} ({e})") from None

    def where(self, i: int) -> str:
        """Human-readable location of image ``i`` (for error messages)."""
        return f"{self.path}:{self.files[i]}" if self.is_zip else str(self.path / self.files[i])

    def read(self, i: int) -> np.ndarray:
        """Decode image ``i`` -> uint8 (H, W, 3) RGB (no EXIF rotation applied)."""
        try:
            with Image.open(io.BytesIO(self._bytes(i))) as im:
                return np.asarray(im.convert("RGB"), dtype=np.uint8)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise DataError(f"textures: {self.where(i)} is not a readable image ({e})") from None

    def size(self, i: int) -> tuple[int, int]:
        """(H, W) of image ``i`` from its header, without decoding the pixels."""
        try:
            if self.is_zip:
                with self._lock:
                    with self._open_zip().open(self.files[i]) as f:
                        with Image.open(f) as im:
                            w, h = im.size
            else:
                with Image.open(self.path / self.files[i]) as im:
                    w, h = im.size
        except (OSError, SyntaxError, ValueError, zipfile.BadZipFile, KeyError) as e:
            raise DataError(f"textures: {self.where(i)} is not a readable image ({e})") from None
        return int(h), int(w)

    def sizes(self) -> np.ndarray:
        """int64 (N, 2): (H, W) of every image, read from headers once and cached."""
        if self._sizes is None:
            self._sizes = np.array([self.size(i) for i in range(len(self))], dtype=np.int64).reshape(-1, 2)
        return self._sizes


def split_images(image_labels: np.ndarray, split: str, *, test_fraction: float = 0.2,
                 seed: int = 0) -> np.ndarray:
    """Sorted int64 ids of the images in ``split`` ('train' | 'test' | 'all').

    Per class, a seeded permutation of its images puts ``round(test_fraction*n)``
    of them (at least 1 and at most n-1 when n >= 2 and test_fraction > 0) in
    'test' and the rest in 'train'; the two sides never share an image.
    """
    if split not in SPLITS:
        raise UserError(f"split {split!r} is unknown; allowed: {', '.join(SPLITS)}")
    if not 0.0 <= float(test_fraction) < 1.0:
        raise UserError(f"test_fraction={test_fraction!r} is outside [0, 1)")
    image_labels = np.asarray(image_labels)
    if split == "all":
        return np.arange(len(image_labels), dtype=np.int64)
    rng = np.random.default_rng(seed)
    test = []
    for k in np.unique(image_labels):
        ids = np.flatnonzero(image_labels == k)
        n_test = int(round(test_fraction * len(ids)))
        if test_fraction > 0 and len(ids) >= 2:
            n_test = min(max(n_test, 1), len(ids) - 1)
        test.append(rng.permutation(ids)[:n_test])
    test_ids = np.sort(np.concatenate(test)).astype(np.int64) if test else np.zeros(0, np.int64)
    if split == "test":
        return test_ids
    return np.setdiff1d(np.arange(len(image_labels)), test_ids).astype(np.int64)


def square_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Center crop uint8 (H, W, 3) to a square and resize to (size, size, 3) (bilinear,
    antialiased when shrinking)."""
    h, w = image.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    crop = image[y:y + s, x:x + s]
    if s == size:
        return np.ascontiguousarray(crop)
    return np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.BILINEAR))


class TexturesDataset:
    """Whole texture images of one split as an ``ImageDataset``.

    ``ds[i] -> {'image': uint8 (S, S, 3), 'label': int}`` with S = image_size;
    image_ids: ids into ``folder`` of the images in this split.
    """

    def __init__(self, folder: TextureFolder, image_ids: np.ndarray, image_size: int,
                 info: DatasetInfo):
        self.folder = folder
        self.image_ids = np.asarray(image_ids, dtype=np.int64)
        self.image_size = int(image_size)
        self._labels = folder.image_labels[self.image_ids].astype(np.int32)
        self.info = info

    def __len__(self) -> int:
        return len(self.image_ids)

    def _image(self, i: int) -> np.ndarray:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        return square_resize(self.folder.read(int(self.image_ids[i])), self.image_size)

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        return {"image": self._image(index), "label": int(self._labels[index])}

    def __getitems__(self, indices: Sequence[int]) -> dict:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        s = self.image_size
        images = np.empty((len(idx), s, s, 3), np.uint8)
        for j, i in enumerate(idx):
            images[j] = self._image(int(i))
        return {"image": images, "label": self._labels[idx]}

    @property
    def labels(self) -> np.ndarray:
        return self._labels


def reject_options(name: str, unknown: dict, allowed: str) -> None:
    """UserError naming the first option a source does not take."""
    if unknown:
        key = sorted(unknown)[0]
        raise UserError(f"source {name!r} has no option {key!r}; allowed: {allowed}")


def resolve_path(name: str, path, data_dir=None) -> pathlib.Path:
    """The photo folder/zip ``path``; UserError when it is not given.

    (``data_dir`` is where prepared copies live, never the photos.)
    """
    del data_dir
    if path is None:
        raise UserError(f"source {name!r} needs path= (a folder with one sub-folder per class, "
                        "or a .zip of one, e.g. the DTD archive)")
    return pathlib.Path(path)


def _fingerprint(folder: TextureFolder) -> dict:
    st = folder.path.stat()
    return {"path": str(folder.path.resolve()), "mtime_ns": st.st_mtime_ns,
            "size": st.st_size if folder.is_zip else len(folder)}


def _split_sizes(folder: TextureFolder, test_fraction: float, seed: int) -> dict:
    return {s: len(split_images(folder.image_labels, s, test_fraction=test_fraction, seed=seed))
            for s in ("train", "test")}


def prepare(*, path=None, data_dir=None, image_size: int = 128, test_fraction: float = 0.2,
            seed: int = 0, image_format: str = "raw", force: bool = False) -> pathlib.Path:
    """Store the resized train/test images as tfds array_record once; return the
    version folder ``<data_dir>/textures/s<S>_t<test_fraction>_seed<seed>/<version>``."""
    from fedjax_grid.data import store
    from fedjax_grid.data.paths import resolve_data_dir

    if int(image_size) < 1:
        raise UserError(f"image_size={image_size!r} must be >= 1")
    folder = TextureFolder(resolve_path("textures", path))

    def make():
        splits = {}
        for split in ("train", "test"):
            ids = split_images(folder.image_labels, split, test_fraction=test_fraction, seed=seed)
            splits[split] = store.SplitData(
                folder.image_labels[ids],
                lambda ids=ids: (square_resize(folder.read(int(i)), int(image_size)) for i in ids))
        return store.SourceData(splits=splits, class_names=folder.class_names,
                                image_shape=(int(image_size), int(image_size), 3))

    return store.write_prepared(
        "textures", data_dir=resolve_data_dir(data_dir), make=make, image_format=image_format,
        force=force, config=f"s{int(image_size)}_t{float(test_fraction):g}_seed{int(seed)}",
        fingerprint=dict(_fingerprint(folder), image_size=int(image_size),
                         test_fraction=float(test_fraction), seed=int(seed)))


def load(split: str = "train", *, path=None, data_dir=None, image_size: int = 128,
         test_fraction: float = 0.2, seed: int = 0, storage: str = "folder", **unknown):
    """The ``textures`` source.

    split: 'train' | 'test' | 'all' (seeded split by image per class, see
    :func:`split_images`). path: folder or .zip of the photos. image_size: side S
    of the yielded uint8 (S, S, 3) images. storage: 'folder' (decode from the
    folder/zip on every read, :class:`TexturesDataset`) or 'array_record' (the
    copy written once by :func:`prepare` into ``data_dir``, read through
    ``tfds.data_source``; splits 'train' | 'test').
    """
    reject_options("textures", unknown, "image_size, test_fraction, seed, storage")
    if int(image_size) < 1:
        raise UserError(f"image_size={image_size!r} must be >= 1")
    if storage == "array_record":
        from fedjax_grid.data import store
        vdir = prepare(path=path, data_dir=data_dir, image_size=image_size,
                       test_fraction=test_fraction, seed=seed)
        return store.open_prepared(vdir, split, name="textures")
    if storage != "folder":
        raise UserError(f"textures storage={storage!r} is unknown; allowed: folder, array_record")
    folder = TextureFolder(resolve_path("textures", path))
    ids = split_images(folder.image_labels, split, test_fraction=test_fraction, seed=seed)
    info = DatasetInfo(name="textures", num_classes=len(folder.class_names),
                       class_names=folder.class_names, image_shape=(int(image_size), int(image_size), 3),
                       split_sizes=_split_sizes(folder, test_fraction, seed))
    return TexturesDataset(folder, ids, image_size, info)


# ---------------------------------------------------------------- registration

from typing import Literal  # noqa: E402

from pydantic import Field  # noqa: E402

from fedjax_grid.data.registry import SOURCES, Source  # noqa: E402
from fedjax_grid.registry import Params  # noqa: E402


class TexturesOptions(Params):
    """Options of ``textures`` (the side length is ``data.image_size``)."""
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="photos per class held out for test")
    seed: int = Field(0, ge=0, le=2 ** 32 - 1, description="seed of the train/test split by photo")
    storage: Literal["folder", "array_record"] = Field(
        "folder", description="decode the photos on every read, or a prepared array_record copy")


SOURCES.register("textures", TexturesOptions,
                 doc="texture photos (folder or zip of class folders), resized"
                 )(Source(load, prepare))
