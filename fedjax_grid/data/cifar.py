"""CIFAR-10 and CIFAR-100 from the official archives (binary and python versions).

Accepted inputs (``path=``): the official ``.tar.gz`` file, its extracted folder
(the ``cifar-10-batches-bin`` / ``cifar-100-python`` ... folder or a folder
above it), or ``download=True`` to fetch the official archive from
``https://www.cs.toronto.edu/~kriz/`` into ``<data_dir>/downloads`` with md5
verification. The records are parsed with numpy (no per-record loops) and
stored once as tfds array_record (see ``store``).

Binary layout: records of ``label bytes`` (1 for CIFAR-10; coarse + fine for
CIFAR-100) then 1024 R, 1024 G, 1024 B bytes, row-major 32x32. Python layout:
pickled dicts with ``data`` (N, 3072) uint8 in the same order and ``labels`` /
``fine_labels`` / ``coarse_labels``; they are unpickled with a restricted
unpickler that only reconstructs numpy arrays.
"""
from __future__ import annotations

import importlib
import io
import os
import pathlib
import pickle

import numpy as np

from fedjax_grid.data import archive as archive_lib
from fedjax_grid.data import store
from fedjax_grid.data.paths import resolve_data_dir
from fedjax_grid.errors import DataError, UserError

URL_BASE = "https://www.cs.toronto.edu/~kriz/"
# Official archives and their md5 sums (as published with the data sets).
ARCHIVES = {
    "cifar10": {"binary": ("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530"),
                "python": ("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")},
    "cifar100": {"binary": ("cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8"),
                 "python": ("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85")},
}
# Files of each layout, relative to the layout's root folder.
_LAYOUT = {
    ("cifar10", "binary"): {"train": [f"data_batch_{i}.bin" for i in range(1, 6)],
                            "test": ["test_batch.bin"], "meta": "batches.meta.txt"},
    ("cifar10", "python"): {"train": [f"data_batch_{i}" for i in range(1, 6)],
                            "test": ["test_batch"], "meta": "batches.meta"},
    ("cifar100", "binary"): {"train": ["train.bin"], "test": ["test.bin"],
                             "meta": {"fine": "fine_label_names.txt", "coarse": "coarse_label_names.txt"}},
    ("cifar100", "python"): {"train": ["train"], "test": ["test"], "meta": "meta"},
}
_NUM_CLASSES = {("cifar10", "fine"): 10, ("cifar100", "fine"): 100, ("cifar100", "coarse"): 20}
IMAGE_SHAPE = (32, 32, 3)
_PIXELS = 32 * 32 * 3
LABEL_MODES = ("fine", "coarse")


def _what(name: str) -> str:
    files = " or ".join(f for f, _ in ARCHIVES[name].values())
    return f"the official {name} archive ({files}) or its extracted folder"


def detect_layout(arch: archive_lib.Archive, name: str) -> str:
    """'binary' or 'python', from the member names; DataError when neither."""
    for layout in ("binary", "python"):
        first = _LAYOUT[(name, layout)]["test"][0]
        if arch.find(first, required=False) is not None:
            return layout
    raise arch.fail(f"neither '{_LAYOUT[(name, 'binary')]['test'][0]}' nor "
                    f"'{_LAYOUT[(name, 'python')]['test'][0]}' inside")


def planes_to_nhwc(data: np.ndarray) -> np.ndarray:
    """(N, 3072) uint8 in R,G,B planes of 32x32 row-major -> (N, 32, 32, 3)."""
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def parse_binary(raw: bytes, *, label_bytes: int, label_index: int, where: str):
    """Parse binary records -> (images uint8 (N,32,32,3), labels int64 (N,)).

    label_bytes: 1 (CIFAR-10) or 2 (CIFAR-100: coarse, fine); label_index picks one.
    """
    rec = label_bytes + _PIXELS
    if len(raw) == 0 or len(raw) % rec:
        raise DataError(f"{where}: {len(raw)} bytes is not a whole number of "
                        f"{rec}-byte records ({label_bytes} label byte(s) + {_PIXELS} pixels)")
    arr = np.frombuffer(raw, dtype=np.uint8).reshape(-1, rec)
    return planes_to_nhwc(arr[:, label_bytes:]), arr[:, label_index].astype(np.int64)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays, dtypes and bytes (never arbitrary globals)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes in protocol-2 pickles
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")
        if module.startswith("numpy.core."):
            module = "numpy._core." + module[len("numpy.core."):]
        return getattr(importlib.import_module(module), name)


def unpickle(raw: bytes, where: str) -> dict:
    """Restricted unpickle of an official CIFAR python file -> dict with str keys."""
    try:
        obj = RestrictedUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except Exception as e:  # noqa: BLE001 - any failure is a bad file
        raise DataError(f"{where}: not a CIFAR python pickle ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: pickle holds {type(obj).__name__}, expected a dict")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _names(values) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _parse_python_batch(raw: bytes, label_key: str, where: str):
    d = unpickle(raw, where)
    if "data" not in d or label_key not in d:
        raise DataError(f"{where}: pickle lacks 'data' or '{label_key}'")
    data = np.asarray(d["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        raise DataError(f"{where}: 'data' is {data.dtype} {data.shape}, expected uint8 (N, {_PIXELS})")
    labels = np.asarray(d[label_key], dtype=np.int64)
    if labels.shape != (len(data),):
        raise DataError(f"{where}: {labels.size} labels for {len(data)} images")
    return planes_to_nhwc(data), labels


def read_cifar(name: str, path: str | os.PathLike, *, label_mode: str = "fine"):
    """Read an official CIFAR archive/folder fully into memory.

    Returns (splits, class_names, layout) with splits = {'train': (images uint8
    (N,32,32,3), labels int64 (N,)), 'test': (...)}.
    """
    _check(name, label_mode)
    arch = archive_lib.open_archive(path, _what(name))
    layout = detect_layout(arch, name)
    spec = _LAYOUT[(name, layout)]
    meta = spec["meta"][label_mode] if isinstance(spec["meta"], dict) else spec["meta"]
    members = {key: arch.find(rel) for key, rel in
               [(f, f) for f in spec["train"] + spec["test"]] + [("meta", meta)]}
    raw = arch.read_many(members.values())

    def where(key):
        return f"{arch.path}:{members[key]}"

    if layout == "binary":
        names = [s.strip() for s in raw[members["meta"]].decode("utf-8", "replace").splitlines()]
        class_names = [s for s in names if s]
        label_bytes = 1 if name == "cifar10" else 2
        label_index = 0 if (name == "cifar10" or label_mode == "coarse") else 1

        def parse(f):
            return parse_binary(raw[members[f]], label_bytes=label_bytes,
                                label_index=label_index, where=where(f))
    else:
        meta_d = unpickle(raw[members["meta"]], where("meta"))
        meta_key = "label_names" if name == "cifar10" else f"{label_mode}_label_names"
        if meta_key not in meta_d:
            raise DataError(f"{where('meta')}: no '{meta_key}' in the meta pickle")
        class_names = _names(meta_d[meta_key])
        label_key = "labels" if name == "cifar10" else f"{label_mode}_labels"

        def parse(f):
            return _parse_python_batch(raw[members[f]], label_key, where(f))

    expected = _NUM_CLASSES[(name, label_mode)]
    if len(class_names) != expected:
        raise DataError(f"{where('meta')}: {len(class_names)} class names, expected {expected}")
    splits = {}
    for split in ("train", "test"):
        parts = [parse(f) for f in spec[split]]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        if labels.size and labels.max() >= expected:
            raise DataError(f"{arch.path}: {split} label {labels.max()} >= {expected} classes")
        splits[split] = (images, labels)
    return splits, class_names, layout


def _check(name, label_mode):
    if name not in ARCHIVES:
        raise UserError(f"CIFAR source {name!r} is not one of {', '.join(ARCHIVES)}")
    if label_mode not in LABEL_MODES or (name == "cifar10" and label_mode != "fine"):
        allowed = "fine" if name == "cifar10" else ", ".join(LABEL_MODES)
        raise UserError(f"label_mode={label_mode!r} is not allowed for {name}; allowed: {allowed}")


def _config(label_mode: str) -> str | None:
    return None if label_mode == "fine" else label_mode


def find_local_archive(name: str, data_dir: pathlib.Path) -> pathlib.Path | None:
    """An official archive or extracted folder already in ``data_dir`` or its downloads/."""
    folders = {"cifar10": ["cifar-10-batches-bin", "cifar-10-batches-py"],
               "cifar100": ["cifar-100-binary", "cifar-100-python"]}[name]
    for base in (data_dir, data_dir / "downloads"):
        for c in [base / f for f, _ in ARCHIVES[name].values()] + [base / f for f in folders]:
            if c.exists():
                return c
    return None


def download_archive(name: str, data_dir: os.PathLike, *, archive_format: str = "binary") -> pathlib.Path:
    """Fetch the official archive into ``<data_dir>/downloads`` (md5-verified)."""
    if archive_format not in ("binary", "python"):
        raise UserError(f"archive_format={archive_format!r} is not one of binary, python")
    fname, md5 = ARCHIVES[name][archive_format]
    return archive_lib.download(URL_BASE + fname, pathlib.Path(data_dir) / "downloads" / fname, md5=md5)


def prepare(name: str, *, path=None, data_dir=None, download: bool = False, label_mode: str = "fine",
            image_format: str = "raw", archive_format: str = "binary", force: bool = False) -> pathlib.Path:
    """Prepare CIFAR ``name`` once into ``<data_dir>/<name>/<version>``; return that folder."""
    _check(name, label_mode)
    data_dir = resolve_data_dir(data_dir)
    config = _config(label_mode)
    if path is None:
        found = store.find_prepared(name, data_dir, config)
        if found is not None and not force:
            return found
        path = find_local_archive(name, data_dir)
        if path is None:
            if not download:
                raise DataError(f"no prepared {name} in {data_dir} and no official archive there; "
                                f"pass path= to {_what(name)}, or download=True")
            path = download_archive(name, data_dir, archive_format=archive_format)

    def make():
        splits, class_names, _ = read_cifar(name, path, label_mode=label_mode)
        return store.SourceData(
            splits={s: store.SplitData(lab, (lambda im=im: iter(im))) for s, (im, lab) in splits.items()},
            class_names=class_names, image_shape=IMAGE_SHAPE)

    return store.write_prepared(
        name, data_dir=data_dir, make=make, config=config, image_format=image_format, force=force,
        fingerprint={"source": archive_lib.source_fingerprint(path), "label_mode": label_mode})


def load(name: str, split: str, *, path=None, data_dir=None, **opts):
    """``load_source`` entry for cifar10/cifar100: prepare once, then open the split."""
    vdir = prepare(name, path=path, data_dir=data_dir, **opts)
    return store.open_prepared(vdir, split, name=name)


def load_cifar10(split, *, path=None, data_dir=None, **opts):
    return load("cifar10", split, path=path, data_dir=data_dir, **opts)


def load_cifar100(split, *, path=None, data_dir=None, **opts):
    return load("cifar100", split, path=path, data_dir=data_dir, **opts)


def prepare_cifar10(*, path=None, data_dir=None, **opts):
    return prepare("cifar10", path=path, data_dir=data_dir, **opts)


def prepare_cifar100(*, path=None, data_dir=None, **opts):
    return prepare("cifar100", path=path, data_dir=data_dir, **opts)


# ---------------------------------------------------------------- registration

from typing import Literal  # noqa: E402

from pydantic import Field  # noqa: E402

from fedjax_grid.data.registry import SOURCES, Source  # noqa: E402
from fedjax_grid.registry import Params  # noqa: E402


class Cifar10Options(Params):
    download: bool = Field(False, description="download the official archive when data.path is not given")
    image_format: Literal["raw", "png"] = Field("raw", description="prepared copy: raw pixels or PNG")
    archive_format: Literal["binary", "python"] = Field("binary", description="official archive flavour")


class Cifar100Options(Cifar10Options):
    label_mode: Literal["fine", "coarse"] = Field("fine", description="100 fine or 20 coarse classes")


SOURCES.register("cifar10", Cifar10Options, doc="CIFAR-10 (official archive): 32x32, 10 classes"
                 )(Source(load_cifar10, prepare_cifar10))
SOURCES.register("cifar100", Cifar100Options, doc="CIFAR-100 (official archive): 32x32, 100/20 classes"
                 )(Source(load_cifar100, prepare_cifar100))
