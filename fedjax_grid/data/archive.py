"""Uniform read access to an official archive given as .tar(.gz), .zip or a folder.

``open_archive(path)`` returns an ``Archive`` whose member names are relative
POSIX paths (``'cifar-10-batches-bin/data_batch_1.bin'``). Every failure to
read (missing file, truncated or corrupt archive, missing member) is raised as
``DataError`` naming the file and what was expected. Also holds the checksum
check and the download helper used by sources with an official address.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import tarfile
import urllib.request
import zipfile
import zlib
from typing import Callable, Iterable

from fedjax_grid.errors import DataError


class Archive:
    """Read-only view of an archive or folder; ``what`` describes the expected content."""

    def __init__(self, path: pathlib.Path, what: str):
        self.path = path
        self.what = what

    def names(self) -> list[str]:
        """All member file names (relative POSIX paths)."""
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        """Bytes of one member (a name from ``names()``)."""
        raise NotImplementedError

    def read_many(self, names: Iterable[str]) -> dict[str, bytes]:
        """Bytes of several members, read in one pass where the format needs it."""
        return {n: self.read(n) for n in names}

    def find(self, relpath: str, *, required: bool = True) -> str | None:
        """Member name equal to ``relpath`` or ending in ``/relpath`` (shortest wins)."""
        hits = [n for n in self.names() if n == relpath or n.endswith("/" + relpath)]
        if not hits:
            if required:
                raise DataError(f"{self.path}: no '{relpath}' inside; expected {self.what}")
            return None
        return min(hits, key=len)

    def fail(self, detail: str) -> DataError:
        return DataError(f"{self.path}: {detail}; expected {self.what}")


class FolderArchive(Archive):
    def __init__(self, path, what):
        super().__init__(path, what)
        self._names = None

    def names(self):
        if self._names is None:
            names = []
            for root, _, files in os.walk(self.path):
                rel = pathlib.Path(root).relative_to(self.path).as_posix()
                prefix = "" if rel == "." else rel + "/"
                names.extend(prefix + f for f in files)
            self._names = sorted(names)
        return self._names

    def read(self, name):
        try:
            return (self.path / name).read_bytes()
        except OSError as e:
            raise self.fail(f"cannot read '{name}' ({e.strerror})") from None


class TarArchive(Archive):
    """A tar or tar.gz; members are read in one sequential pass (gzip cannot seek back)."""

    def __init__(self, path, what):
        super().__init__(path, what)
        self._names = None

    def _open(self):
        try:
            return tarfile.open(self.path, "r:*")
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            raise self.fail(f"not a readable tar archive ({type(e).__name__}: {e})") from None

    def names(self):
        if self._names is None:
            try:
                with self._open() as tar:
                    self._names = sorted(m.name for m in tar.getmembers() if m.isfile())
            except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
                raise self.fail(f"truncated or corrupt tar archive ({type(e).__name__}: {e})") from None
        return self._names

    def read_many(self, names):
        wanted = set(names)
        out = {}
        try:
            with self._open() as tar:
                for member in tar:
                    if member.name in wanted:
                        out[member.name] = tar.extractfile(member).read()
                        if len(out) == len(wanted):
                            break
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            raise self.fail(f"truncated or corrupt tar archive ({type(e).__name__}: {e})") from None
        missing = sorted(wanted - set(out))
        if missing:
            raise self.fail(f"no '{missing[0]}' inside")
        return out

    def read(self, name):
        return self.read_many([name])[name]


class ZipArchive(Archive):
    def __init__(self, path, what):
        super().__init__(path, what)
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise self.fail(f"not a readable zip archive ({type(e).__name__}: {e})") from None
        self._names = sorted(i.filename for i in self._zip.infolist() if not i.is_dir())

    def names(self):
        return self._names

    def read(self, name):
        try:
            return self._zip.read(name)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, KeyError) as e:
            raise self.fail(f"cannot read member '{name}' ({type(e).__name__}: {e})") from None

    def __getstate__(self):  # zip handles do not pickle; reopen on the other side
        return {"path": self.path, "what": self.what}

    def __setstate__(self, state):
        self.__init__(state["path"], state["what"])


def open_archive(path: str | os.PathLike, what: str) -> Archive:
    """Open ``path`` (folder, .zip, .tar, .tar.gz/.tgz) as an ``Archive``.

    what: one phrase naming the expected content, used in error messages.
    """
    path = pathlib.Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder; expected {what}")
    if path.is_dir():
        return FolderArchive(path, what)
    if zipfile.is_zipfile(path):
        return ZipArchive(path, what)
    name = path.name.lower()
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")) or _looks_like_gzip(path):
        return TarArchive(path, what)
    raise DataError(f"{path}: not a folder, .zip or .tar.gz; expected {what}")


def _looks_like_gzip(path: pathlib.Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest (``'md5'`` or ``'sha256'``) of a file, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_checksum(path: str | os.PathLike, *, md5: str | None = None,
                    sha256: str | None = None) -> None:
    """Raise ``DataError`` unless the file matches every checksum given."""
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        if expected is None:
            continue
        got = file_digest(path, algorithm)
        if got.lower() != expected.lower():
            raise DataError(f"{path}: {algorithm} is {got}, expected {expected} "
                            f"(a corrupt or different file; delete it and download again)")


def download(url: str, dest: str | os.PathLike, *, md5: str | None = None,
             sha256: str | None = None,
             opener: Callable[[str], object] = urllib.request.urlopen) -> pathlib.Path:
    """Download ``url`` to ``dest`` (via ``dest.part``) and verify the checksums.

    An existing ``dest`` that passes the checksum is reused without a download.
    """
    dest = pathlib.Path(dest)
    if dest.exists():
        verify_checksum(dest, md5=md5, sha256=sha256)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with opener(url) as response, open(part, "wb") as f:
            shutil.copyfileobj(response, f, 1 << 20)
    except OSError as e:
        part.unlink(missing_ok=True)
        raise DataError(f"{url}: download failed ({e}); give path= to a local copy instead") from None
    try:
        verify_checksum(part, md5=md5, sha256=sha256)
    except DataError:
        part.unlink(missing_ok=True)
        raise
    part.replace(dest)
    return dest


def source_fingerprint(path: str | os.PathLike) -> dict:
    """Identifies the source files a prepared copy was made from.

    A file: its name and size in bytes; a folder: its resolved path and
    modification time. A different fingerprint makes a prepared copy stale.
    """
    path = pathlib.Path(path).expanduser()
    try:
        st = path.stat()
    except OSError:
        raise DataError(f"{path}: no such file or folder") from None
    if path.is_dir():
        return {"folder": str(path.resolve()), "mtime_ns": st.st_mtime_ns}
    return {"file": path.name, "bytes": st.st_size}
