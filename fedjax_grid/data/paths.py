"""Where data lives: the one place that resolves the default directories.

* ``default_data_dir()``: prepared (array_record) copies and downloads.
  ``$FEDJAX_GRID_DATA_DIR``, else ``<repo>/data`` when running from a source
  checkout, else ``~/.fedjax_grid/data``.
* ``shared_data_dir()``: the real data slices of the official archives.
  ``$FEDJAX_GRID_SHARED_DATA``, else ``<repo>/../shared/data``.
"""
from __future__ import annotations

import os
import pathlib

DATA_DIR_ENV = "FEDJAX_GRID_DATA_DIR"
SHARED_DATA_ENV = "FEDJAX_GRID_SHARED_DATA"

_REPO = pathlib.Path(__file__).resolve().parents[2]


def _in_checkout() -> bool:
    return (_REPO / "pyproject.toml").is_file() and (_REPO / ".git").exists()


def default_data_dir() -> pathlib.Path:
    """Directory for prepared copies and downloads (not created here)."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return pathlib.Path(env).expanduser()
    if _in_checkout():
        return _REPO / "data"
    return pathlib.Path.home() / ".fedjax_grid" / "data"


def shared_data_dir() -> pathlib.Path:
    """Directory holding the real data slices (may not exist)."""
    env = os.environ.get(SHARED_DATA_ENV)
    if env:
        return pathlib.Path(env).expanduser()
    return _REPO.parent / "shared" / "data"


def resolve_data_dir(data_dir: str | os.PathLike | None) -> pathlib.Path:
    """``data_dir`` as a Path, or the default when None."""
    return pathlib.Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
