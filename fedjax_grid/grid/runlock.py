"""An exclusive lock on a run folder: one run writes a folder at a time.

``RunFolderLock(out_dir)`` wraps ``filelock.FileLock`` on ``out_dir/.fedjax_grid.lock``
(an ``fcntl`` lock on POSIX: the operating system drops it when the holding process
dies, so a lock left by a ``kill -9``ed run never blocks the next one). A second run on
a held folder -- another process, or another ``FederatedRun`` in this one (a notebook
and a widget) -- is refused with ``RunFolderBusy``, a one-line ``UserError``, before it
writes anything there.

A run that wrote nothing leaves nothing: when the lock is released and the folder holds
nothing new but the lock file this lock created, the file is unlinked while still held (a process
waiting on the old file then fails to take it, as if it were held) and the folders
``acquire`` created are removed -- a start that could not reach its scheduler leaves
``--out`` as it found it.
"""
from __future__ import annotations

import os
import pathlib
from typing import Optional

from filelock import FileLock, Timeout

from fedjax_grid.errors import UserError, show_path

LOCK_NAME = ".fedjax_grid.lock"


class RunFolderBusy(UserError):
    """Another run holds the run folder's lock."""


def check_folder(out_dir) -> pathlib.Path:
    """``out_dir`` as a Path; ``UserError`` when it, or a folder above it, is not a folder,
    or when it holds a control character (``names.check_path``)."""
    from fedjax_grid.names import check_path
    path = pathlib.Path(check_path(out_dir, "--out"))
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            what = "is a file" if p == path else f"lies under {show_path(p)}, which is a file"
            raise UserError(f"--out {show_path(path)} {what}; allowed: a folder (new or "
                            "one this command wrote before)")
    return path


class RunFolderLock:
    """Exclusive, process-death-safe lock on one run folder (see the module docstring)."""

    def __init__(self, out_dir):
        self.folder = check_folder(out_dir)
        self.path = self.folder / LOCK_NAME
        self._lock: Optional[FileLock] = None
        #: what acquire() created: missing folders (outermost first) and the lock file
        self._created: list[pathlib.Path] = []
        self._found: set[str] = set()  # the folder's entries when acquire() took the lock

    def _busy(self) -> RunFolderBusy:
        return RunFolderBusy(f"--out {show_path(self.folder)} is in use by another run (it holds "
                             f"{LOCK_NAME}); allowed: a folder no other run is writing -- wait for "
                             "that run or choose another --out")

    @property
    def held(self) -> bool:
        return self._lock is not None and self._lock.is_locked

    def probe(self) -> None:
        """Raise ``RunFolderBusy`` if another run holds the lock now (creates nothing)."""
        if self.held or not self.path.exists():
            return
        lock = FileLock(str(self.path), timeout=0, thread_local=False, preserve_lock_file=True)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise self._busy() from None
        lock.release()

    def acquire(self) -> None:
        """Take the lock (creating the folder); ``RunFolderBusy`` if another run holds it."""
        if self.held:
            return
        missing = [p for p in (self.folder, *self.folder.parents) if not p.exists()][::-1]
        lock_is_new = not self.path.exists()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"--out {show_path(self.folder)} cannot be created "
                            f"({type(e).__name__}: {e.strerror or e}); allowed: a writable folder") from None
        lock = FileLock(str(self.path), timeout=0, thread_local=False, preserve_lock_file=True)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise self._busy() from None
        except OSError as e:
            raise UserError(f"--out {show_path(self.folder)}: cannot lock it "
                            f"({type(e).__name__}: {e.strerror or e}); allowed: a writable folder") from None
        self._lock = lock
        self._created = missing + ([self.path] if lock_is_new else [])
        self._found = set(self._entries())

    def release(self) -> None:
        """Release the lock; a folder left holding only the lock file this lock created
        is put back as it was (the file, then the folders acquire() created, removed)."""
        if self._lock is None:
            return
        try:
            if self.path in self._created and set(self._entries()) - self._found <= {LOCK_NAME}:
                os.unlink(self.path)  # while held: nobody can take the old file meanwhile
        except OSError:
            pass
        finally:
            self._lock.release(force=True)
            self._lock = None
        for folder in reversed([p for p in self._created if p != self.path]):
            try:
                folder.rmdir()  # only when empty
            except OSError:
                break
        self._created = []

    def _entries(self) -> list[str]:
        """Names in the folder ([LOCK_NAME, '?'] when it cannot be read: keep the lock)."""
        try:
            return [p.name for p in self.folder.iterdir()]
        except OSError:
            return [LOCK_NAME, "?"]
