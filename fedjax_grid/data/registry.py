"""Source registry: ``load_source(name, split, ...)``, ``prepare_source``, ``list_sources``.

Sources are registered by import path (``'module:function'``) and imported on
first use, so a source module can land later and importing this registry
stays cheap. Loader contract: ``load(split, *, path=None, data_dir=None,
**opts) -> ImageDataset``; preparer: ``prepare(*, path=None, data_dir=None,
**opts) -> Path`` of the prepared version folder.

Names ``'tfds:<catalogue name>'`` (e.g. ``'tfds:cifar10'``) open tfds
catalogue data sets through ``tfds.data_source``; that needs TensorFlow.
"""
from __future__ import annotations

import importlib
import os
import pathlib

from fedjax_grid.data.base import ImageDataset
from fedjax_grid.errors import UserError

# name -> (loader, preparer) import paths
_SOURCES: dict[str, tuple[str, str | None]] = {
    "digits": ("fedjax_grid.data.digits:load", "fedjax_grid.data.digits:prepare"),
    "cifar10": ("fedjax_grid.data.cifar:load_cifar10", "fedjax_grid.data.cifar:prepare_cifar10"),
    "cifar100": ("fedjax_grid.data.cifar:load_cifar100", "fedjax_grid.data.cifar:prepare_cifar100"),
    "tiny_imagenet": ("fedjax_grid.data.tiny_imagenet:load", "fedjax_grid.data.tiny_imagenet:prepare"),
    "textures": ("fedjax_grid.data.textures:load", "fedjax_grid.data.textures:prepare"),
    "texture_fragments": ("fedjax_grid.data.fragments:load", "fedjax_grid.data.fragments:prepare"),
}
SPLITS = ("train", "test")
CATALOG_PREFIX = "tfds:"


def list_sources() -> list[str]:
    """Names accepted by ``load_source`` (besides ``'tfds:<name>'``)."""
    return list(_SOURCES)


def _resolve(spec: str, name: str):
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            raise UserError(f"source {name!r} is registered but its module {module_name} "
                            f"is not installed in this version") from None
        raise
    try:
        return getattr(module, attr)
    except AttributeError:
        raise UserError(f"source {name!r}: {module_name} has no {attr}") from None


def _check_name(name: str):
    if not isinstance(name, str) or name not in _SOURCES:
        raise UserError(f"unknown data source {name!r}; allowed: {', '.join(_SOURCES)} "
                        f"or 'tfds:<catalogue name>'")


def load_source(name: str, split: str, *, path: str | os.PathLike | None = None,
                data_dir: str | os.PathLike | None = None, **opts) -> ImageDataset:
    """One split ('train' or 'test') of a source as an ``ImageDataset``.

    path: the official archive/folder (prepared once into ``data_dir``);
    data_dir: where prepared copies live (default ``paths.default_data_dir()``);
    opts: source options (e.g. digits ``image_size``, cifar100 ``label_mode``,
    ``download=True`` for CIFAR, ``image_format='raw'|'png'``).
    """
    if split not in SPLITS:
        raise UserError(f"split={split!r} is not one of {', '.join(SPLITS)}")
    if isinstance(name, str) and name.startswith(CATALOG_PREFIX):
        from fedjax_grid.data import store
        return store.open_catalog(name[len(CATALOG_PREFIX):], split, data_dir=data_dir, **opts)
    _check_name(name)
    loader = _resolve(_SOURCES[name][0], name)
    return loader(split, path=path, data_dir=data_dir, **opts)


def prepare_source(name: str, *, path: str | os.PathLike | None = None,
                   data_dir: str | os.PathLike | None = None, **opts) -> pathlib.Path:
    """Write the tfds array_record copy of a source once; return its version folder.

    Idempotent: an existing complete copy from the same source files is reused.
    """
    _check_name(name)
    spec = _SOURCES[name][1]
    if spec is None:
        raise UserError(f"source {name!r} cannot be prepared")
    return _resolve(spec, name)(path=path, data_dir=data_dir, **opts)
