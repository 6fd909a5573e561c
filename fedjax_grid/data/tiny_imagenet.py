"""Tiny-ImageNet-200 from the official ``tiny-imagenet-200.zip`` or its folder.

Layout: ``wnids.txt`` (class order = label order), ``words.txt`` (wnid -> names;
the first synonym becomes the class name), ``train/<wnid>/images/*.JPEG``,
``val/images/*.JPEG`` with labels from ``val/val_annotations.txt``. Split
``'test'`` is the official validation set (the official test set has no labels).
JPEGs are decoded once with PIL (``convert('RGB')``: a few official images are
grayscale) into 64x64x3 uint8 and stored as tfds array_record (see ``store``);
reads never decode JPEG again.
"""
from __future__ import annotations

import io
import os
import pathlib
import re

import numpy as np

from fedjax_grid.data import archive as archive_lib
from fedjax_grid.data import store
from fedjax_grid.data.paths import resolve_data_dir
from fedjax_grid.errors import DataError

NAME = "tiny_imagenet"
IMAGE_SHAPE = (64, 64, 3)
WHAT = "the official tiny-imagenet-200.zip or its extracted folder (wnids.txt, words.txt, train/, val/)"
ARCHIVE_NAMES = ("tiny-imagenet-200.zip", "tiny-imagenet-200")


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _lines(raw: bytes) -> list[str]:
    return [line.strip() for line in raw.decode("utf-8", "replace").splitlines() if line.strip()]


def read_index(arch: archive_lib.Archive):
    """Parse the layout without decoding images.

    Returns (wnids, class_names, files) with files = {'train': [(member, label)],
    'test': [(member, label)]} in a deterministic order (class order then file
    number for train; file number for val).
    """
    wnids_member = arch.find("wnids.txt")
    root = wnids_member[: -len("wnids.txt")]
    wnids = _lines(arch.read(wnids_member))
    if not wnids or len(set(wnids)) != len(wnids):
        raise arch.fail(f"'{wnids_member}' lists {len(wnids)} wnids ({len(set(wnids))} distinct)")
    index = {w: i for i, w in enumerate(wnids)}
    words = {}
    words_member = arch.find(root + "words.txt" if root else "words.txt")
    for line in _lines(arch.read(words_member)):
        wnid, _, text = line.partition("\t")
        words[wnid] = text.split(",")[0].strip() or wnid
    class_names = [words.get(w, w) for w in wnids]

    names = set(arch.names())
    train = []
    pattern = re.compile(re.escape(root) + r"train/([^/]+)/images/([^/]+\.jpe?g)$", re.IGNORECASE)
    for member in names:
        m = pattern.match(member)
        if m:
            if m.group(1) not in index:
                raise arch.fail(f"'{member}' is in class folder '{m.group(1)}' not listed in wnids.txt")
            train.append((index[m.group(1)], _natural_key(m.group(2)), member))
    train.sort()
    ann_member = arch.find(root + "val/val_annotations.txt" if root else "val/val_annotations.txt")
    test = []
    for line in _lines(arch.read(ann_member)):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise arch.fail(f"'{ann_member}' line '{line[:60]}' does not name a wnid from wnids.txt")
        member = f"{root}val/images/{fields[0]}"
        if member not in names:
            raise arch.fail(f"'{ann_member}' names '{fields[0]}' but '{member}' is missing")
        test.append((_natural_key(fields[0]), index[fields[1]], member))
    test.sort()
    if not train:
        raise arch.fail(f"no training images under '{root}train/<wnid>/images/'")
    files = {"train": [(m, lab) for lab, _, m in train], "test": [(m, lab) for _, lab, m in test]}
    return wnids, class_names, files


def decode(raw: bytes, where: str) -> np.ndarray:
    """JPEG bytes -> uint8 (64, 64, 3); DataError when unreadable or of another size."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(io.BytesIO(raw)) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"{where}: not a readable JPEG ({type(e).__name__}: {e})") from None
    if arr.shape != IMAGE_SHAPE:
        raise DataError(f"{where}: image is {arr.shape[1]}x{arr.shape[0]}, expected 64x64")
    return arr


def find_local_archive(data_dir: pathlib.Path) -> pathlib.Path | None:
    for base in (data_dir, data_dir / "downloads"):
        for fname in ARCHIVE_NAMES:
            if (base / fname).exists():
                return base / fname
    return None


def prepare(*, path=None, data_dir=None, image_format: str = "raw", force: bool = False,
            progress: bool = False) -> pathlib.Path:
    """Decode the archive once into ``<data_dir>/tiny_imagenet/<version>``; return it."""
    data_dir = resolve_data_dir(data_dir)
    if path is None:
        found = store.find_prepared(NAME, data_dir)
        if found is not None and not force:
            return found
        path = find_local_archive(data_dir)
        if path is None:
            raise DataError(f"no prepared {NAME} in {data_dir} and no tiny-imagenet-200.zip there; "
                            f"pass path= to {WHAT}")

    def make():
        arch = archive_lib.open_archive(path, WHAT)
        wnids, class_names, files = read_index(arch)

        def images(items):
            def gen():
                for member, _ in items:
                    yield decode(arch.read(member), f"{arch.path}:{member}")
            return gen

        splits = {s: store.SplitData(np.array([lab for _, lab in items], np.int64), images(items))
                  for s, items in files.items()}
        return store.SourceData(splits=splits, class_names=class_names, image_shape=IMAGE_SHAPE,
                                label_names=wnids)

    return store.write_prepared(NAME, data_dir=data_dir, make=make, image_format=image_format,
                                force=force, progress=progress,
                                fingerprint={"source": archive_lib.source_fingerprint(path)})


def load(split: str, *, path=None, data_dir=None, **opts):
    """``load_source`` entry: prepare once, then open ``split`` ('train' or 'test' = val)."""
    return store.open_prepared(prepare(path=path, data_dir=data_dir, **opts), split, name=NAME)


def wnids_of(ds_dir: os.PathLike) -> list[str]:
    """wnid of each label of a prepared copy (tfds ClassLabel names)."""
    return _lines((pathlib.Path(ds_dir) / "label.labels.txt").read_bytes())


# ---------------------------------------------------------------- registration

from typing import Literal  # noqa: E402

from pydantic import Field  # noqa: E402

from fedjax_grid.data.registry import SOURCES, Source  # noqa: E402
from fedjax_grid.registry import Params  # noqa: E402


class TinyImageNetOptions(Params):
    image_format: Literal["raw", "png"] = Field("raw", description="prepared copy: raw pixels or PNG")
    progress: bool = Field(False, description="show progress while decoding the archive")


SOURCES.register("tiny_imagenet", TinyImageNetOptions,
                 doc="Tiny-ImageNet-200 (official zip): 64x64, 200 classes, val as test"
                 )(Source(load, prepare))
