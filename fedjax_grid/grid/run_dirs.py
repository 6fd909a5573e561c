"""Default output folders: one new folder per run, and a stable ``latest`` link.

Without an explicit output folder (``--out`` or ``config.out_dir``) every run gets
its own folder ``<root>/<name>/<YYYYmmdd-HHMMSS>`` (the name as ``slug(name)``: no
spaces or commas) (local time; ``-2``, ``-3`` ...
appended when two runs start in the same second), so running the same command
twice just works. ``<root>/<name>/latest`` is a relative symbolic link to the
newest such folder that holds a checkpoint (where symbolic links are not
allowed, a text file ``latest`` holding the folder's name plays its part);
``fedjax-grid run --resume`` without ``--out`` continues that run.

Names and paths (``check_name``, ``check_path``, in ``fedjax_grid.names``): an experiment name is one folder
name -- no path separator, not ``.``/``..``, no control character -- so
``<root>/<name>/...`` never leaves ``<root>``; a path (``--out``, ``out_dir``, the data
and cache folders) may be relative, absolute or use ``..`` (the user chose it) but holds
no control character (a NUL byte cannot name a file; a newline or escape sequence makes
the folder's name lie when printed). Both are refused in one line, never rewritten.
"""
from __future__ import annotations

import os
import pathlib
import re
import shutil
import time
from typing import Optional

from fedjax_grid.errors import UserError
from fedjax_grid.names import MAX_NAME, MAX_PATH, check_name, check_path  # noqa: F401 (re-exported)

DEFAULT_ROOT = pathlib.Path("runs")
LATEST = "latest"
#: What a run folder's name may hold; anything else (spaces, commas, slashes) becomes '-'.
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]+")


def slug(name: str) -> str:
    """``name`` as a folder name without spaces, commas or other shell-unfriendly
    characters: 'slow, no deadline' -> 'slow-no-deadline' (never empty)."""
    return _UNSAFE.sub("-", str(name)).strip("-.") or "run"


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
    base = pathlib.Path(check_path(root, "runs folder")) / slug(check_name(name))
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
    link = pathlib.Path(check_path(root, "runs folder")) / slug(check_name(name)) / LATEST
    if link.is_symlink():
        target = link.parent / os.readlink(link)
    elif link.is_file():
        target = link.parent / link.read_text().strip()
    else:
        return None
    return target if target.is_dir() else None


def notebook_dir(root, name: str) -> pathlib.Path:
    """A notebook's output folder ``root/name-YYYYmmdd-HHMMSS`` (absolute; created), printed.

    Called by every notebook first, it also turns XLA's C++ log lines off for the kernel and
    the workers it starts (``quiet_xla``), saying so once."""
    quiet_xla()
    out = pathlib.Path(check_path(root, "runs folder")).expanduser().resolve() / (
        slug(check_name(name)) + time.strftime("-%Y%m%d-%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    print("outputs in", out)
    return out


XLA_NOTE = ("XLA's own log lines (e.g. 'slow compile' alarms, printed in red) are off here "
            "(TF_CPP_MIN_LOG_LEVEL=3): compiling a model on a CPU takes seconds to minutes, once "
            "per process, and the start-up stages show that time; errors still raise in Python.")


def quiet_xla() -> bool:
    """Set ``TF_CPP_MIN_LOG_LEVEL=3`` (XLA's C++ logging off) before JAX starts in this
    process, unless set already; prints ``XLA_NOTE`` once. True when it was set here."""
    import sys
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ or "jaxlib" in sys.modules:
        return False
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    print(XLA_NOTE)
    return True
