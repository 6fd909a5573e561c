"""Default output folders: one new folder per run, and a stable ``latest`` link.

Without an explicit output folder (``--out`` or ``config.out_dir``) every run gets
its own folder ``<root>/<name>/<YYYYmmdd-HHMMSS>`` (local time; ``-2``, ``-3`` ...
appended when two runs start in the same second), so running the same command
twice just works. ``<root>/<name>/latest`` is a relative symbolic link to the
newest such folder that holds a checkpoint (where symbolic links are not
allowed, a text file ``latest`` holding the folder's name plays its part);
``fedjax-grid run --resume`` without ``--out`` continues that run.

Names and paths (``check_name``, ``check_path``): an experiment name is one folder
name -- no path separator, not ``.``/``..``, no control character -- so
``<root>/<name>/...`` never leaves ``<root>``; a path (``--out``, ``out_dir``, the data
and cache folders) may be relative, absolute or use ``..`` (the user chose it) but holds
no control character (a NUL byte cannot name a file; a newline or escape sequence makes
the folder's name lie when printed). Both are refused in one line, never rewritten.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import time
import unicodedata
from typing import Optional

from fedjax_grid.errors import UserError, show

DEFAULT_ROOT = pathlib.Path("runs")
LATEST = "latest"


#: Longest experiment name (characters): a folder name, with room for the time stamp.
MAX_NAME = 100
#: Longest path accepted (characters; Linux's PATH_MAX is 4096 bytes).
MAX_PATH = 4096


def _control(text: str) -> Optional[str]:
    """The first control or format character in ``text`` (NUL, newline, ESC, U+202E ...)."""
    for c in text:
        if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp"):
            return c
    return None


def check_name(name, what: str = "name") -> str:
    """``name`` if it can be one folder name inside the runs folder, else a one-line
    ``UserError`` (refused, not rewritten: the folder is the name the user gave)."""
    rule = (f"one folder name of 1-{MAX_NAME} characters (no '/' or '\\', not '.' or '..', "
            "no control characters, no leading or trailing space) is required")
    if not isinstance(name, str):
        raise UserError(f"{what}={show(name)} is invalid: {rule}", path=what)
    bad = _control(name)
    why = (f"it holds the control character {bad!r}" if bad is not None else
           "it holds a path separator" if ("/" in name or "\\" in name) else
           "it names a parent or the current folder" if name in (".", "..") else
           "it is empty" if not name else
           "it starts or ends with a space" if name != name.strip() else
           f"it is longer than {MAX_NAME} characters" if len(name) > MAX_NAME else None)
    if why is not None:
        raise UserError(f"{what}={show(name)} is refused ({why}): {rule}", path=what)
    return name


def check_path(path, what: str):
    """``path`` (a str or Path) unless it holds a control character or is empty / too
    long: then a one-line ``UserError`` naming ``what`` (``--out``, ``out_dir`` ...)."""
    text = str(path) if isinstance(path, (str, os.PathLike)) else None
    if text is None:
        raise UserError(f"{what}={show(path)} is invalid: a folder or file path is required")
    bad = _control(text)
    why = (f"it holds the control character {bad!r}" if bad is not None else
           "it is empty" if not text.strip() else
           f"it is longer than {MAX_PATH} characters" if len(text) > MAX_PATH else None)
    if why is not None:
        raise UserError(f"{what}={show(text)} is refused ({why}): a path without control "
                        f"characters, at most {MAX_PATH} characters, is required", path=what)
    return path


class FolderState:
    """What an output folder held before a command used it, to put it back after a start
    that failed: ``restore()`` removes the folder (and the parents) when they did not
    exist, else only the entries that appeared since -- never one that was there."""

    def __init__(self, path):
        self.path = pathlib.Path(path)
        self.missing = [p for p in (self.path, *self.path.parents)
                        if not (p.exists() or p.is_symlink())][::-1]
        self.entries = set(os.listdir(self.path)) if not self.missing and self.path.is_dir() \
            else set()

    def restore(self) -> None:
        if self.missing:
            shutil.rmtree(self.missing[0], ignore_errors=True)
            return
        try:
            new = set(os.listdir(self.path)) - self.entries
        except OSError:
            return
        for name in new:
            p = self.path / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def new_run_dir(name: str, root=DEFAULT_ROOT, now: Optional[float] = None) -> pathlib.Path:
    """A folder path ``root/name/YYYYmmdd-HHMMSS[-k]`` that does not exist yet (not created).

    now: seconds since the epoch (default: the current time). ``name`` must be one
    folder name (``check_name``): the folder is always inside ``root``.
    """
    base = pathlib.Path(check_path(root, "runs folder")) / check_name(name)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if now is None else now))
    path, k = base / stamp, 1
    while path.exists() or path.is_symlink():
        k += 1
        path = base / f"{stamp}-{k}"
    return path


def claim(path: pathlib.Path) -> pathlib.Path:
    """Create the run folder ``path`` (its parents too); UserError if it already exists."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir()
    except FileExistsError:
        raise UserError(f"output folder {str(path)!r} appeared while starting; run again") from None
    return path


def point_latest(run_dir: pathlib.Path) -> pathlib.Path:
    """Make ``run_dir.parent / 'latest'`` refer to ``run_dir``; returns the link's path."""
    run_dir = pathlib.Path(run_dir)
    link = run_dir.parent / LATEST
    tmp = run_dir.parent / f".{LATEST}.tmp-{os.getpid()}"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        try:
            tmp.symlink_to(run_dir.name, target_is_directory=True)
        except OSError:  # no symbolic links here (some Windows set-ups): a pointer file
            tmp.write_text(run_dir.name + "\n")
        os.replace(tmp, link)  # atomic: readers see the old or the new target
    finally:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
    return link


def latest_run_dir(name: str, root=DEFAULT_ROOT) -> Optional[pathlib.Path]:
    """The folder ``root/name/latest`` refers to (a link or a pointer file), or None."""
    link = pathlib.Path(check_path(root, "runs folder")) / check_name(name) / LATEST
    if link.is_symlink():
        target = link.parent / os.readlink(link)
    elif link.is_file():
        target = link.parent / link.read_text().strip()
    else:
        return None
    return target if target.is_dir() else None


def notebook_dir(root, name: str) -> pathlib.Path:
    """A notebook's output folder ``root/name-YYYYmmdd-HHMMSS`` (absolute; created), printed."""
    out = pathlib.Path(check_path(root, "runs folder")).expanduser().resolve() / (
        check_name(name) + time.strftime("-%Y%m%d-%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    print("outputs in", out)
    return out
