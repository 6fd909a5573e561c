"""Source registry: ``load_source(name, split, ...)``, ``prepare_source``, ``list_sources``.

Every source module of ``fedjax_grid.data`` registers itself in ``SOURCES``
(a :class:`~fedjax_grid.registry.Registry`) with a :class:`Source` (its loader and
preparer) and the typed options it takes (``SOURCES.schema(name)``, what the
config's ``data.options`` are checked against; ``image_size`` is set through
``data.image_size``). The modules are imported the first time the registry is
read, so importing this module stays cheap and a new source is one file.

Loader contract: ``load(split, *, path=None, data_dir=None, **opts) -> ImageDataset``;
preparer: ``prepare(*, path=None, data_dir=None, **opts) -> Path`` of the prepared
version folder (None when a source needs no preparing).

Names ``'tfds:<catalogue name>'`` (e.g. ``'tfds:cifar10'``) open tfds
catalogue data sets through ``tfds.data_source``; that needs TensorFlow.
"""
from __future__ import annotations

import os
import pathlib
from typing import Callable, NamedTuple, Optional

from fedjax_grid.data.base import ImageDataset
from fedjax_grid.errors import UserError, show
from fedjax_grid.registry import Registry


class Source(NamedTuple):
    """A registered data source: its loader and (optional) preparer."""
    load: Callable[..., ImageDataset]
    prepare: Optional[Callable[..., pathlib.Path]] = None


#: Data sources by name (modules of ``fedjax_grid.data`` register on first read).
SOURCES = Registry("data source", package="fedjax_grid.data")
SPLITS = ("train", "test")
CATALOG_PREFIX = "tfds:"


def list_sources() -> list[str]:
    """Names accepted by ``load_source`` (besides ``'tfds:<name>'``)."""
    return list(SOURCES)


def _source(name: str) -> Source:
    if name not in SOURCES:
        raise UserError(f"unknown data source {show(name)}; allowed: {', '.join(SOURCES)} "
                        f"or 'tfds:<catalogue name>'")
    return SOURCES.get(name).obj


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
    return _source(name).load(split, path=path, data_dir=data_dir, **opts)


def prepare_source(name: str, *, path: str | os.PathLike | None = None,
                   data_dir: str | os.PathLike | None = None, **opts) -> pathlib.Path:
    """Write the tfds array_record copy of a source once; return its version folder.

    Idempotent: an existing complete copy from the same source files is reused.
    """
    source = _source(name)
    if source.prepare is None:
        raise UserError(f"source {name!r} cannot be prepared")
    return source.prepare(path=path, data_dir=data_dir, **opts)
