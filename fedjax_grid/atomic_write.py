"""Atomic file writes: readers see the old file or the complete new one, never a part.

Data goes to a temporary file beside the target (``.<name>.tmp-<pid>-<hex>``, which
listings of real files ignore), is flushed and -- with ``fsync=True`` -- fsync'ed, then
``os.replace``'d over the target; with ``fsync=True`` the directory is fsync'ed too,
so the rename survives a power cut. When the writer raises, the temporary file is
removed and the target is left as it was.

* ``write_atomic(path, data)``: bytes or text (UTF-8).
* ``with atomic_path(path) as tmp: writer(tmp)``: for writers that want a path
  (``DataFrame.to_parquet``, ``Figure.savefig``, ``np.savez``, ...).
* ``write_if_changed(path, data, memo)``: ``write_atomic`` unless this writer already
  wrote exactly ``data`` there (files rewritten after every round: the records).

``mode`` is the new file's permission bits before the umask (0o666: as ``open``
gives; 0o600 for private keys).
"""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Iterator


def temp_name(path: Path) -> Path:
    """A fresh temporary path beside ``path`` (hidden, unique per process and call)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def fsync_dir(directory: os.PathLike | str) -> None:
    """Flush a directory's entries (a rename in it) to disk; a no-op where unsupported."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: os.PathLike | str, *, fsync: bool = True,
                mode: int = 0o666) -> Iterator[Path]:
    """Yield a temporary path to write; on a normal exit it replaces ``path``.

    The temporary file already exists (empty, with ``mode``) so its permissions do
    not depend on the writer. On an exception it is removed and ``path`` is untouched.
    """
    path = Path(path)
    tmp = temp_name(path)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    if fsync:
        fsync_dir(path.parent)


def write_atomic(path: os.PathLike | str, data: bytes | str, *, fsync: bool = True,
                 mode: int = 0o666) -> Path:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` atomically; returns the Path."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_path(path, fsync=fsync, mode=mode) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return Path(path)


def write_if_changed(path: os.PathLike | str, data: bytes | str, memo: dict) -> bool:
    """``write_atomic(path, data)`` unless ``memo`` (the writer's own dict) says this
    writer last wrote exactly ``data`` there and the file is still there; True when
    written. Saves the temporary file, fsync and rename of files that did not change."""
    import hashlib
    if isinstance(data, str):
        data = data.encode("utf-8")
    path = Path(path)
    key, digest = str(path.resolve()), hashlib.blake2b(data, digest_size=16).digest()
    if memo.get(key) == digest and path.is_file():
        return False
    write_atomic(path, data)
    memo[key] = digest
    return True
